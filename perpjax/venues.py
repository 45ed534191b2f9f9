"""Venue presets and exact, deterministic calculators (no Monte Carlo).

Presets (``perpjax/presets/*.yaml``) carry each venue's published ladders and
rules with their source and the date they were checked. The calculators follow
the venues' own formulas, in float64 Python, so they can be checked to the cent
against published worked examples:

* Binance USDⓈ-M liquidation price, one-way mode, isolated or cross
  (FAQ "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts"):
  ``LP = (WB - TMM1 + UPNL1 + cum - side*size*EP) / (size*MMR - side*size)``,
  with the bracket (MMR, cum) that contains the notional *at the liquidation
  price*, not at entry.
* Hyperliquid liquidation price (docs, "Liquidations"):
  ``liq = price - side * margin_available / size / (1 - l * side)``, ``l`` = maintenance
  rate of the tier at the liquidation price.
* dYdX v4 liquidation price (docs): ``p' = (e - s p - MMR_other) / (|s| MMF - s)``.
* Bankruptcy price (equity = 0) of one position.
* Funding rate from premium samples as each venue computes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import yaml

from .margin import validate_continuity, validate_tiers

VENUES = ("binance_usdm", "hyperliquid", "dydx_v4")


def load_preset(venue: str) -> dict:
    """The preset of ``venue`` (one of ``VENUES``) as a dict; raises ValueError naming the venue."""
    if venue not in VENUES:
        raise ValueError(f"venue: unknown venue {venue!r} (known: {', '.join(VENUES)})")
    text = (resources.files("perpjax") / "presets" / f"{venue}.yaml").read_text()
    return yaml.safe_load(text)


@dataclass(frozen=True)
class Brackets:
    """One symbol's tiers: floors (USD notional), maintenance rates, max leverage, continuity amounts.

    A venue's published table, kept as published (max leverage, ``cum``) for the venues' own
    formulas; checked on construction by the margin module's rules (``margin.validate_tiers``,
    with IMR = 1 / max leverage, and ``margin.validate_continuity`` for ``cum``), errors naming ``name``.
    """

    floors: np.ndarray
    mmr: np.ndarray
    max_leverage: np.ndarray
    cum: np.ndarray
    max_notional: float = math.inf  # cap of the last bracket (a position above it cannot be opened)
    name: str = field(default="brackets", compare=False)

    def __post_init__(self):
        validate_tiers(self.name, self.floors, self.mmr, self.imr)
        validate_continuity(self.name, self.floors, self.mmr, self.cum)

    @property
    def imr(self) -> np.ndarray:
        return 1.0 / self.max_leverage

    def tier(self, notional: float) -> int:
        return int(np.searchsorted(self.floors, notional, side="right") - 1)

    def maintenance(self, notional: float) -> float:
        k = self.tier(notional)
        return notional * self.mmr[k] - self.cum[k]

    def as_config_tiers(self) -> list[dict]:
        """Tiers in the config's ladder format (floor, mmr, imr)."""
        return [{"floor": float(f), "mmr": float(m), "imr": float(i)}
                for f, m, i in zip(self.floors, self.mmr, self.imr, strict=True)]


def brackets(venue: str, symbol: str) -> Brackets:
    """A symbol's brackets from a preset (checked: tiers, and the published ``cum`` against the recursion)."""
    p = load_preset(venue)
    if venue == "dydx_v4":
        tiers = p["tiers"]
        name = p["symbols"].get(symbol)
        if name is None:
            raise ValueError(f"symbol: {symbol!r} not in the dydx_v4 preset (known: {', '.join(p['symbols'])})")
        t = tiers[name]
        return Brackets(np.array([0.0]), np.array([t["mmf"]]), np.array([1.0 / t["imf"]]), np.array([0.0]),
                        name=f"{venue}.{symbol}")
    rows = p["symbols"].get(symbol)
    if rows is None:
        raise ValueError(f"symbol: {symbol!r} not in the {venue} preset (known: {', '.join(p['symbols'])})")
    cap = float(p.get("max_notional", {}).get(symbol, math.inf))
    return Brackets(*(np.array([float(r[k]) for r in rows]) for k in ("floor", "mmr", "max_leverage", "cum")),
                    max_notional=cap, name=f"{venue}.{symbol}")


def _side(side: str) -> int:
    if side not in ("long", "short"):
        raise ValueError(f"side: must be 'long' or 'short' (got {side!r})")
    return 1 if side == "long" else -1


def _check_position(size: float, entry: float) -> None:
    if not (size > 0 and math.isfinite(size)):
        raise ValueError(f"size: must be a positive number of contracts (got {size})")
    if not (entry > 0 and math.isfinite(entry)):
        raise ValueError(f"entry: must be > 0 (got {entry})")


def binance_liquidation_price_in_bracket(wallet: float, size: float, entry: float, side: str, mmr: float,
                                         cum: float, other_mm: float = 0.0, other_upnl: float = 0.0) -> float:
    """Binance's formula for one bracket (MMR, cum). Isolated: ``other_mm = other_upnl = 0``."""
    _check_position(size, entry)
    s = _side(side)
    return (wallet - other_mm + other_upnl + cum - s * size * entry) / (size * mmr - s * size)


def binance_liquidation_price(wallet: float, size: float, entry: float, side: str, br: Brackets,
                              other_mm: float = 0.0, other_upnl: float = 0.0) -> float:
    """Liquidation price with the bracket that contains the notional at the liquidation price.

    Returns 0.0 when the position cannot be liquidated (Binance shows "--"). Raises if the
    position's notional at entry is above the last bracket's cap (the ladder does not cover it).
    """
    if size * entry > br.max_notional:
        raise ValueError(f"size: notional {size * entry:,.0f} at entry exceeds the last bracket's cap "
                         f"{br.max_notional:,.0f}; the ladder does not cover this position")
    for k in range(len(br.floors)):
        lp = binance_liquidation_price_in_bracket(wallet, size, entry, side, br.mmr[k], br.cum[k], other_mm,
                                                  other_upnl)
        if lp <= 0:
            continue
        if br.tier(size * lp) == k:
            return lp
    return 0.0


def hyperliquid_liquidation_price(margin: float, size: float, entry: float, side: str, br: Brackets,
                                  price: float | None = None) -> float:
    """Hyperliquid's formula: ``liq = price - side * margin_available / size / (1 - l * side)``.

    ``margin`` is the account value (cross) or isolated margin; margin_available = margin -
    maintenance margin at ``price`` (default: entry); ``l`` is the maintenance rate of the tier
    at the liquidation price.
    """
    _check_position(size, entry)
    s = _side(side)
    p = entry if price is None else price
    for k in range(len(br.floors)):
        l_k = br.mmr[k]
        avail = margin - (size * p * l_k - br.cum[k])
        liq = p - s * avail / size / (1.0 - l_k * s)
        if liq > 0 and br.tier(size * liq) == k:
            return liq
    return 0.0


def dydx_liquidation_price(equity: float, size: float, price: float, mmf: float, other_mm: float = 0.0) -> float:
    """dYdX v4 docs: ``p' = (e - s p - MMR_other) / (|s| MMF - s)``, ``size`` signed (short < 0)."""
    if size == 0 or not math.isfinite(size):
        raise ValueError(f"size: must be a non-zero signed size (got {size})")
    return (equity - size * price - other_mm) / (abs(size) * mmf - size)


def bankruptcy_price(wallet: float, size: float, entry: float, side: str) -> float:
    """Price at which an isolated position's equity is zero: ``EP - side * wallet / size``."""
    _check_position(size, entry)
    return entry - _side(side) * wallet / size


def funding_rate(premiums, venue: str, *, interest: float | None = None, clamp: float | None = None,
                 cap: float | None = None, scale: float | None = None, weighting: str | None = None) -> float:
    """Funding rate of one interval from its premium samples, as ``venue`` computes it.

    Binance: linear time weights 1..n, ``F = P + clamp(I - P, +-0.05%)``, capped.
    Hyperliquid: equal weights, ``F = clamp((P + clamp(I - P, +-0.05%)) / 8, +-4%)`` per hour.
    Keyword arguments override the preset's numbers.
    """
    f = load_preset(venue).get("funding")
    if f is None:
        raise ValueError(f"venue: the {venue} preset has no funding rule")
    i = f["interest"] if interest is None else interest
    c = f["clamp"] if clamp is None else clamp
    cp = f["cap"] if cap is None else cap
    sc = f.get("scale", 1.0) if scale is None else scale
    w_kind = f["weighting"] if weighting is None else weighting
    p = np.asarray(premiums, np.float64)
    if p.ndim != 1 or p.size == 0 or not np.all(np.isfinite(p)):
        raise ValueError("premiums: must be a non-empty 1-d array of finite numbers")
    w = np.arange(1, p.size + 1, dtype=np.float64) if w_kind == "linear" else np.ones(p.size)
    avg = float(np.sum(w * p) / np.sum(w))
    rate = avg + min(max(i - avg, -c), c)
    return min(max(sc * rate, -cp), cp)


def preset_ladder(spec: str) -> list[dict]:
    """Config tiers from ``"venue:SYMBOL"`` (e.g. ``"binance_usdm:BTCUSDT"``)."""
    venue, _, symbol = spec.partition(":")
    if not symbol:
        raise ValueError(f"ladder preset: expected 'venue:SYMBOL', got {spec!r}")
    return brackets(venue, symbol).as_config_tiers()
