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
from fractions import Fraction
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


def ladder_file(spec: str) -> tuple[str | None, str | None]:
    """(file, symbol) of a bracket-file ladder source ``"FILE.json[:SYMBOL]"`` / ``"FILE.csv[:SYMBOL]"``;
    (None, None) for a preset ``"venue:SYMBOL"``."""
    path, symbol = spec, None
    if not spec.lower().endswith((".csv", ".json")) and ":" in spec:
        path, symbol = spec.rsplit(":", 1)
    return (path, symbol) if path.lower().endswith((".csv", ".json")) else (None, None)


def ladder_brackets(spec: str) -> Brackets:
    """The brackets of a ladder source: a preset ``"venue:SYMBOL"`` (e.g. ``"binance_usdm:BTCUSDT"``) or a
    bracket file ``"FILE.json[:SYMBOL]"`` / ``"FILE.csv[:SYMBOL]"`` (``read_brackets``). ``max_notional`` is
    the last bracket's cap: the file's last ``notionalCap``, the preset's ``max_notional`` (else inf)."""
    path, symbol = ladder_file(spec)
    if path is not None:
        return read_brackets(path, symbol)
    venue, _, symbol = spec.partition(":")
    if not symbol:
        raise ValueError(f"ladder preset: expected 'venue:SYMBOL' or a bracket file FILE.json[:SYMBOL] / "
                         f"FILE.csv[:SYMBOL], got {spec!r}")
    return brackets(venue, symbol)


# --- A venue's bracket table as a file (Binance's leverage-bracket API) -----------------------------------------

BRACKET_FIELDS = ("bracket", "initialLeverage", "notionalCap", "notionalFloor", "maintMarginRatio", "cum")


def read_brackets(path, symbol: str | None = None) -> Brackets:
    """A bracket table from a file, as Binance publishes it, checked row by row.

    Formats (Binance ``GET /fapi/v1/leverageBracket``,
    https://developers.binance.com/docs/derivatives/usds-margined-futures/account/rest-api/Notional-and-Leverage-Brackets):

    * JSON: the API's response, a list of ``{"symbol", "brackets": [...]}`` (``symbol`` picks one when
      it holds several), one such object, or a bare list of brackets;
    * CSV: one row per bracket with the API's field names as columns,
      ``bracket,initialLeverage,notionalCap,notionalFloor,maintMarginRatio,cum`` (``cum`` and
      ``bracket`` optional; a ``symbol`` column is filtered by ``symbol``).

    ``cum`` is computed by the recursion ``cum_k = cum_{k-1} + floor_k (MMR_k - MMR_{k-1})`` (Binance FAQ
    "Leverage and Margin of USDⓈ-M Futures"); where the file states it, it must agree. Raises ValueError
    naming the file, the row and the field: a gap or overlap between one row's cap and the next row's
    floor, a maintenance rate below the previous row's, a stated cum that disagrees, a missing or
    non-numeric field.
    """
    import csv
    import json
    from pathlib import Path

    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ValueError(f"brackets: {path}: {e.strerror or e}") from None
    name = p.name
    if p.suffix.lower() == ".json" or text.lstrip()[:1] in ("[", "{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{name}: not valid JSON ({e})") from None
        rows, labels = _json_bracket_rows(data, symbol, name), None
    else:
        reader = csv.DictReader(text.splitlines())
        missing = [f for f in ("notionalFloor", "notionalCap", "maintMarginRatio", "initialLeverage")
                   if f not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{name}: missing column(s) {', '.join(missing)} (expected Binance's fields: "
                             f"{','.join(BRACKET_FIELDS)})")
        rows, labels = [], []
        for r in reader:
            if symbol is not None and r.get("symbol") not in (None, "", symbol):
                continue
            rows.append(r)
            labels.append(f"row {len(rows)} (line {reader.line_num})")
        if not rows:
            raise ValueError(f"{name}: no bracket rows" + (f" for symbol {symbol!r}" if symbol else ""))
    return brackets_from_rows(rows, name=name, labels=labels)


def _json_bracket_rows(data, symbol, name):
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data:
        raise ValueError(f"{name}: expected the leverageBracket response (a list of {{symbol, brackets}})")
    if all(isinstance(d, dict) and "brackets" in d for d in data):
        known = [str(d.get("symbol")) for d in data]
        if symbol is not None:
            data = [d for d in data if d.get("symbol") == symbol]
            if not data:
                raise ValueError(f"{name}: symbol {symbol!r} not in the file (it has: {', '.join(known)})")
        elif len(data) > 1:
            raise ValueError(f"{name}: the file holds {len(data)} symbols ({', '.join(known[:8])}"
                             f"{', ...' if len(known) > 8 else ''}); pick one with --symbol")
        rows = data[0]["brackets"]
    else:
        rows = data
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"{name}: 'brackets' must be a non-empty list of objects")
    return rows


def brackets_from_rows(rows, *, name: str = "brackets", labels=None) -> Brackets:
    """Brackets from rows with Binance's field names (dicts; numbers or numeric strings), checked row by row.

    The ladder rules are ``margin.validate_tiers`` / ``margin.validate_continuity`` (run again on the
    result); this states each break with the row and the field, as a user needs to fix a file.
    """
    labels = labels or [f"row {k + 1}" for k in range(len(rows))]

    def num(k, field, required=True):
        v = rows[k].get(field)
        if v is None or (isinstance(v, str) and v.strip() == ""):
            if required:
                raise ValueError(f"{name}: {labels[k]}: {field} is missing")
            return None
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: {labels[k]}: {field} must be a number (got {v!r})") from None
        if not math.isfinite(x):
            raise ValueError(f"{name}: {labels[k]}: {field} must be finite (got {v!r})")
        return x

    n = len(rows)
    floor = [num(k, "notionalFloor") for k in range(n)]
    cap = [num(k, "notionalCap") for k in range(n)]
    mmr = [num(k, "maintMarginRatio") for k in range(n)]
    lev = [num(k, "initialLeverage") for k in range(n)]
    stated = [num(k, "cum", required=False) for k in range(n)]
    if floor[0] != 0:
        raise ValueError(f"{name}: {labels[0]}: notionalFloor must be 0 in the first bracket (got {floor[0]:,.10g})")
    cum = [0.0] * n
    for k in range(n):
        if not cap[k] > floor[k]:
            raise ValueError(f"{name}: {labels[k]}: notionalCap {cap[k]:,.10g} must be above notionalFloor "
                             f"{floor[k]:,.10g}")
        if not 0 <= mmr[k] < 1:
            raise ValueError(f"{name}: {labels[k]}: maintMarginRatio must lie in [0, 1) (got {mmr[k]:.10g})")
        if not lev[k] >= 1:
            raise ValueError(f"{name}: {labels[k]}: initialLeverage must be >= 1 (got {lev[k]:.10g})")
        if not mmr[k] < 1.0 / lev[k]:
            raise ValueError(f"{name}: {labels[k]}: maintMarginRatio {mmr[k]:.10g} must be below the initial "
                             f"margin rate 1/initialLeverage = {1.0 / lev[k]:.10g}")
        if k:
            if floor[k] != cap[k - 1]:
                what = "a gap" if floor[k] > cap[k - 1] else "an overlap"
                raise ValueError(f"{name}: {labels[k]}: notionalFloor {floor[k]:,.10g} does not meet the notionalCap "
                                 f"{cap[k - 1]:,.10g} of {labels[k - 1]} ({what} in the ladder)")
            if mmr[k] < mmr[k - 1]:
                raise ValueError(f"{name}: {labels[k]}: maintMarginRatio {mmr[k]:.10g} is below the "
                                 f"{mmr[k - 1]:.10g} of {labels[k - 1]} (rates must be non-decreasing)")
            cum[k] = cum[k - 1] + floor[k] * (mmr[k] - mmr[k - 1])
        if stated[k] is not None and abs(stated[k] - cum[k]) > 1e-6 + 1e-9 * abs(cum[k]):
            step = f" = cum {cum[k - 1]:,.2f} + {floor[k]:,.10g} x ({mmr[k]:.10g} - {mmr[k - 1]:.10g})" if k else ""
            raise ValueError(f"{name}: {labels[k]}: cum {stated[k]:,.10g} disagrees with the recursion "
                             f"{cum[k]:,.2f}{step}")
    return Brackets(np.array(floor), np.array(mmr), np.array(lev), np.array(cum), max_notional=cap[-1], name=name)


def margin_at(br: Brackets, notional: float) -> dict:
    """MM(N) = N MMR_k - cum_k with the bracket k that contains N, and that bracket's numbers."""
    if not (notional >= 0 and math.isfinite(notional)):
        raise ValueError(f"notional: must be a finite number >= 0 (got {notional})")
    if notional > br.max_notional:
        raise ValueError(f"notional: {notional:,.2f} exceeds the last bracket's cap {br.max_notional:,.2f}")
    k = br.tier(notional)
    return {"bracket": k + 1, "floor": float(br.floors[k]), "mmr": float(br.mmr[k]), "cum": float(br.cum[k]),
            "max_leverage": float(br.max_leverage[k]), "maintenance": float(br.maintenance(notional)),
            "initial": float(notional * br.imr[k])}


# --- dYdX v4 --------------------------------------------------------------------------------------------------


def dydx_fillable_price(oracle, size, quote_balance, mmf, *, other_nc=0, other_mmr=0, bankruptcy_adjustment=1,
                        spread_to_mmr=Fraction(1, 10)) -> Fraction:
    """dYdX v4 liquidation fillable price, exact (rationals, as the chain computes it).

    dydxprotocol/v4-chain ``protocol/x/clob/keeper/liquidations.go`` ``GetFillablePrice``:
    ``(PNNV - ABR * SMMR * PMMR) / PS`` with ``ABR = clamp(BA * (1 - TNC / TMMR), 0, 1)``; PS the signed
    position size (short < 0), PNNV = PS x oracle, PMMR = |PS| x oracle x MMF, TNC = quote balance + PNNV +
    ``other_nc`` (the other positions' net notional), TMMR = PMMR + ``other_mmr``. BA = bankruptcy adjustment,
    SMMR = spread to maintenance-margin ratio (``liquidations_config.fillable_price_config``). Numbers are
    taken as decimals (``Fraction(str(x))``): the result is exact, as the chain's ``big.Rat``.
    """
    q = [as_fraction(k, v) for k, v in (("oracle", oracle), ("size", size), ("quote_balance", quote_balance),
                                  ("mmf", mmf), ("other_nc", other_nc), ("other_mmr", other_mmr),
                                  ("bankruptcy_adjustment", bankruptcy_adjustment), ("spread_to_mmr", spread_to_mmr))]
    px, ps, bal, f, onc, ommr, ba, smmr = q
    if px <= 0:
        raise ValueError(f"oracle: must be > 0 (got {oracle})")
    if ps == 0:
        raise ValueError("size: must be a non-zero signed size (short < 0)")
    if not 0 < f < 1:
        raise ValueError(f"mmf: must lie in (0, 1) (got {mmf})")
    if ba < 0 or smmr < 0 or ommr < 0:
        raise ValueError("bankruptcy_adjustment, spread_to_mmr, other_mmr: must be >= 0")
    pnnv = ps * px
    pmmr = abs(ps) * px * f
    tnc, tmmr = bal + pnnv + onc, pmmr + ommr
    abr = min(max(ba * (1 - tnc / tmmr), Fraction(0)), Fraction(1))
    return (pnnv - abr * smmr * pmmr) / ps


def dydx_funding_index_delta(rate_8h_ppm: int, seconds: int, price_value: int, price_exponent: int,
                             atomic_resolution: int) -> int:
    """dYdX v4 funding-index change, in the chain's integers (ppm of quote quantums per base quantum).

    dydxprotocol/v4-chain ``protocol/x/perpetuals/funding/funding.go`` ``GetFundingIndexDelta``:
    ``trunc(trunc(seconds x rate_ppm x price_value x 10^(price_exponent + atomic_resolution + 6)) / 28800)``
    (``lib.BaseToQuoteQuantums``, quote atomic resolution -6; Go's ``Quo`` truncates toward zero).
    In USD per coin this is ``rate x price x seconds / 8 h``: ``delta x 10^(-12 - atomic_resolution)``.
    """
    for k, v in (("rate_8h_ppm", rate_8h_ppm), ("seconds", seconds), ("price_value", price_value),
                 ("price_exponent", price_exponent), ("atomic_resolution", atomic_resolution)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise ValueError(f"{k}: must be an integer (got {v!r})")
    if seconds < 0 or price_value < 0:
        raise ValueError("seconds, price_value: must be >= 0")
    r = seconds * rate_8h_ppm * price_value
    e = price_exponent + atomic_resolution + 6
    r = r * 10**e if e >= 0 else _quo(r, 10**-e)
    return _quo(r, 8 * 60 * 60)


def _quo(a: int, b: int) -> int:
    """Integer division truncated toward zero (Go's ``big.Int.Quo``)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def as_fraction(name: str, x) -> Fraction:
    """``x`` as an exact decimal (``Fraction(str(x))``); raises ValueError naming ``name``."""
    try:
        v = x if isinstance(x, Fraction) else Fraction(str(x))
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{name}: must be a number (got {x!r})") from None
    return v
