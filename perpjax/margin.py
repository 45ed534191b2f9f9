"""Maintenance-margin ladders and the book of margin units.

Ladder (Binance "brackets", Hyperliquid "margin tiers"): position notional N in
[floor_k, floor_{k+1}) has maintenance rate MMR_k and initial rate IMR_k
(max leverage 1/IMR_k). The continuity amount (Binance "cum", DOMAIN.md §3)

    cum_0 = 0,  cum_k = cum_{k-1} + floor_k (MMR_k - MMR_{k-1}),
    MM(N) = N MMR_k - cum_k,

makes MM continuous in N. With MMR non-decreasing across tiers MM is convex and
piecewise linear, so ``MM(N) = max_k (N MMR_k - cum_k)``: the form used in the
kernels (no gather, and it relaxes smoothly to a log-sum-exp for calibration).

A **margin unit** is what one margin check covers: a cross account (all its
positions share its collateral), or one isolated position with its own margin.
"""

from __future__ import annotations

from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .checks import concrete, finite

# The ladder rules, each implemented once. A rule returns where (..., tiers) arrays break it (True =
# broken; several padded assets at once); ``tol`` forgives rounding in iterates (calibration).
# ``validate_tiers`` (configs, ``Ladder``, venue brackets) and the calibration's ``check_ladder``
# state them with their own messages.


def floor_breaks(floors, *, strict: bool = True, tol: float = 0.0):
    """Floors increasing from 0: index 0 is broken when the first floor is not 0, index k when floor k
    is not above floor k-1 (``strict``) or below it by more than ``tol`` (padded tiers repeat a floor)."""
    f = np.asarray(floors)
    d = np.diff(f, axis=-1)
    return np.concatenate([f[..., :1] != 0, d <= 0 if strict else d < -tol], axis=-1)


def rate_breaks(mmr, *, tol: float = 0.0):
    """Maintenance rates non-decreasing across tiers: index k broken when rate k is below rate k-1 (- tol)."""
    m = np.asarray(mmr)
    return np.concatenate([np.zeros_like(m[..., :1], bool), np.diff(m, axis=-1) < -tol], axis=-1)


def order_breaks(mmr, imr):
    """Maintenance below initial margin: broken where mmr >= imr."""
    return np.asarray(mmr) >= np.asarray(imr)


def imr_cap_breaks(imr, *, tol: float = 0.0):
    """Initial margin rate at most 1 (full collateral): broken where imr > 1 + tol."""
    return np.asarray(imr) > 1 + tol


def bound_breaks(rate, lo, hi, *, tol: float = 0.0):
    """A rate inside its bounds ``[lo, hi]`` (+- tol): broken where outside."""
    r = np.asarray(rate)
    return (r < np.asarray(lo) - tol) | (r > np.asarray(hi) + tol)


def validate_rate_range(name: str, lo: float, hi: float) -> None:
    """Bounds a maintenance rate may take under the rules (rates >= 0, mmr < imr <= 1): 0 <= lo < hi < 1."""
    if not (0 <= lo < hi < 1):
        raise ValueError(f"{name}: need 0 <= min < max < 1 (got {lo}, {hi})")


def validate_tiers(name: str, floors, mmr, imr) -> None:
    """Check one asset's tiers; raises ValueError naming ``name`` and the rule."""
    f, m, i = (np.asarray(x, np.float64) for x in (floors, mmr, imr))
    for lab, a in (("floor", f), ("mmr", m), ("imr", i)):
        finite(f"{name}.{lab}", a)
    if f.size == 0:
        raise ValueError(f"{name}: needs at least one tier")
    fb = floor_breaks(f)
    if fb[0]:
        raise ValueError(f"{name}.floor: the first tier must start at notional 0 (got {f[0]})")
    if np.any(fb):
        raise ValueError(f"{name}.floor: floors must be strictly increasing (got {f.tolist()})")
    if np.any(m < 0) or np.any(i < 0):
        raise ValueError(f"{name}: rates must be >= 0 (mmr {m.tolist()}, imr {i.tolist()})")
    if np.any(rate_breaks(m)):
        raise ValueError(f"{name}.mmr: maintenance rates must be non-decreasing across tiers (got {m.tolist()})")
    bad = np.nonzero(order_breaks(m, i))[0]
    if bad.size:
        k = int(bad[0])
        raise ValueError(f"{name}: tier {k} has mmr {m[k]} >= imr {i[k]}; maintenance must be below initial margin")
    if np.any(imr_cap_breaks(i)):
        raise ValueError(f"{name}.imr: initial margin rate must be <= 1 (got {i.tolist()})")


def continuity_amounts(floors, mmr):
    """cum_k from the recursion in DOMAIN.md §3 (works on numpy or jax arrays, any leading dims)."""
    xp = jnp if isinstance(floors, jax.Array) else np
    d = xp.diff(mmr, axis=-1)
    steps = floors[..., 1:] * d
    zero = xp.zeros(steps.shape[:-1] + (1,), dtype=steps.dtype)
    return xp.cumsum(xp.concatenate([zero, steps], axis=-1), axis=-1)


def validate_continuity(name: str, floors, mmr, cum, *, rtol: float = 1e-9, atol: float = 1e-6) -> None:
    """Check stated continuity amounts (a venue's published ``cum``) against the recursion."""
    f, m, c = (np.asarray(x, np.float64) for x in (floors, mmr, cum))
    derived = continuity_amounts(f, m)
    if c.shape != derived.shape or not np.allclose(derived, c, rtol=rtol, atol=atol):
        raise ValueError(f"{name}: published cum {c.tolist()} disagrees with the recursion {derived.tolist()}")


class Ladder(eqx.Module):
    """Per-asset maintenance ladders, padded to a common number of tiers.

    Attributes:
        floors: tier floors (USD notional), (assets, tiers).
        mmr: maintenance rates (fraction of notional), (assets, tiers).
        imr: initial rates (fraction), (assets, tiers).
        n_tiers: real tiers per asset (padding repeats the last tier).
    """

    floors: jax.Array
    mmr: jax.Array
    imr: jax.Array
    n_tiers: tuple = eqx.field(static=True)

    def __check_init__(self):
        if not concrete(self.floors, self.mmr, self.imr):
            return
        for a, n in enumerate(self.n_tiers):
            validate_tiers(f"ladder[{a}]", np.asarray(self.floors)[a, :n], np.asarray(self.mmr)[a, :n],
                           np.asarray(self.imr)[a, :n])

    @classmethod
    def build(cls, tiers_per_asset, dtype=jnp.float32, names=None):
        """From a list (one per asset) of (floors, mmr, imr) triples; validates each."""
        names = names or [f"ladder[{a}]" for a in range(len(tiers_per_asset))]
        n_max = max(len(t[0]) for t in tiers_per_asset)
        out = {"floors": [], "mmr": [], "imr": []}
        for a, (f, m, i) in enumerate(tiers_per_asset):
            validate_tiers(names[a], f, m, i)
            pad = n_max - len(f)
            out["floors"].append(list(f) + [f[-1]] * pad)
            out["mmr"].append(list(m) + [m[-1]] * pad)
            out["imr"].append(list(i) + [i[-1]] * pad)
        return cls(**{k: jnp.asarray(np.asarray(v, np.float64), dtype) for k, v in out.items()},
                   n_tiers=tuple(len(t[0]) for t in tiers_per_asset))

    @property
    def cum(self):
        return continuity_amounts(self.floors, self.mmr)

    def maintenance(self, notional):
        """MM(N) per position. ``notional`` (..., assets) -> (..., assets), USD."""
        lines = notional[..., None] * self.mmr - self.cum
        return jnp.max(lines, axis=-1)

    def maintenance_and_rate(self, notional, asset=None):
        """MM(N) and its slope dMM/dN (the marginal MMR of the tier N sits in).

        ``notional`` is (..., assets), or (positions,) with ``asset`` (positions,)
        naming each position's ladder.
        """
        mmr, cum = (self.mmr, self.cum) if asset is None else (self.mmr[asset], self.cum[asset])
        # Max over the tiers' lines, unrolled: a reduction over a short minor axis does not vectorise
        # on CPU; a chain of elementwise maxima does (same values: max is exact).
        lines = [notional * mmr[..., k] - cum[..., k] for k in range(mmr.shape[-1])]
        mm = lines[0]
        for line in lines[1:]:
            mm = jnp.maximum(mm, line)
        # Slope of the active line; ties (at a floor) take the higher rate.
        rate = jnp.zeros_like(mm)
        for k, line in enumerate(lines):
            rate = jnp.maximum(rate, jnp.where(line >= mm, mmr[..., k], 0.0))
        return mm, rate

    def tier_index(self, notional):
        """Index of the tier containing ``notional`` (numpy; for reports)."""
        f = np.asarray(self.floors)
        n = np.asarray(notional)
        return np.sum(n[..., None] >= f[..., 1:], axis=-1)

    def initial(self, notional):
        """Initial margin N * IMR_k of the tier containing N (numpy; for books and reports)."""
        k = self.tier_index(notional)
        imr = np.take_along_axis(np.broadcast_to(np.asarray(self.imr), np.shape(notional) + (self.imr.shape[-1],)),
                                 k[..., None], axis=-1)[..., 0]
        return np.asarray(notional) * imr


class Book(eqx.Module):
    """Margin units: collateral and signed positions.

    Attributes:
        collateral: USD collateral of each unit (cross: the account's wallet
            balance; isolated: the position's margin), (units,).
        size: signed position size in base units, (units, assets).
        entry: entry price (USD), (units, assets); ignored where size is 0.
    """

    collateral: jax.Array
    size: jax.Array
    entry: jax.Array
    pairs: tuple = eqx.field(static=True)

    def __init__(self, collateral, size, entry, pairs=None):
        self.collateral, self.size, self.entry = collateral, size, entry
        if pairs is None:
            # The open (unit, asset) pairs, sorted by unit: the kernels work on these only,
            # so a sparse book (most units hold one or two assets) costs what it holds.
            shp = np.shape(size)
            nz = np.nonzero(np.asarray(size)) if concrete(size) else np.nonzero(np.ones(shp, bool))
            pairs = (tuple(int(u) for u in nz[0]), tuple(int(a) for a in nz[1]))
        self.pairs = pairs

    @property
    def n_positions(self) -> int:
        return len(self.pairs[0])

    @property
    def pos_unit(self) -> np.ndarray:
        return np.asarray(self.pairs[0], np.int32)

    @property
    def pos_asset(self) -> np.ndarray:
        return np.asarray(self.pairs[1], np.int32)

    def __check_init__(self):
        if not concrete(self.collateral, self.size, self.entry):
            return
        c = finite("collateral", self.collateral)
        s = finite("size", self.size)
        e = finite("entry", self.entry)
        if c.ndim != 1 or s.ndim != 2 or s.shape != e.shape or s.shape[0] != c.shape[0]:
            raise ValueError(f"book: shapes collateral {c.shape}, size {s.shape}, entry {e.shape} do not agree")
        if np.any((s != 0) & (e <= 0)):
            raise ValueError("entry: entry prices of open positions must be > 0")
        if np.any(c < 0):
            raise ValueError("collateral: must be >= 0")

    @property
    def n_units(self) -> int:
        return self.collateral.shape[0]


@dataclass(frozen=True)
class BookLabels:
    """Who each margin unit belongs to (kept out of the kernels)."""

    account: tuple  # account id per unit
    mode: tuple  # "cross" or "isolated" per unit
    unit: tuple  # unit label, e.g. "acct7" or "acct3:BTC"


def generate_book(n_accounts: int, s0, ladder: Ladder, *, seed: int, leverage=(2.0, 5.0, 10.0, 20.0),
                  leverage_weights=(0.3, 0.3, 0.25, 0.15), long_fraction=0.55, notional_median=50_000.0,
                  notional_sigma=1.5, max_positions=None, isolated_fraction=0.2, asset_weights=None,
                  entry_dispersion=0.02, dtype=jnp.float32):
    """Draw a book from distributions (deterministic given ``seed``).

    Each account picks a leverage bucket, 1..max_positions assets, a log-normal
    notional per position and a side (long with ``long_fraction``); entries are
    dispersed around current prices. Leverage is capped by each tier's max
    leverage (1/IMR) at the drawn notional. Isolated accounts hold one position.
    Returns (Book, BookLabels).
    """
    rng = np.random.default_rng(seed)
    s0 = np.asarray(s0, np.float64)
    n_assets = s0.shape[0]
    max_positions = n_assets if max_positions is None else max_positions
    lw = np.asarray(leverage_weights, np.float64)
    aw = np.ones(n_assets) if asset_weights is None else np.asarray(asset_weights, np.float64)
    coll, sizes, entries, acct, mode, unit = [], [], [], [], [], []
    for i in range(n_accounts):
        lev = float(rng.choice(leverage, p=lw / lw.sum()))
        isolated = rng.random() < isolated_fraction
        k = 1 if isolated else int(rng.integers(1, max_positions + 1))
        assets = rng.choice(n_assets, size=k, replace=False, p=aw / aw.sum())
        size = np.zeros(n_assets)
        entry = s0.copy()
        margin = 0.0
        for a in assets:
            notional = notional_median * float(np.exp(notional_sigma * rng.standard_normal()))
            side = 1.0 if rng.random() < long_fraction else -1.0
            entry[a] = s0[a] * float(np.exp(entry_dispersion * rng.standard_normal()))
            size[a] = side * notional / entry[a]
            im_floor = float(ladder.initial(np.where(np.arange(n_assets) == a, notional, 0.0))[a])
            margin += max(notional / lev, im_floor)
        coll.append(margin)
        sizes.append(size)
        entries.append(entry)
        acct.append(f"gen{i}")
        mode.append("isolated" if isolated else "cross")
        unit.append(f"gen{i}")
    book = Book(collateral=jnp.asarray(np.asarray(coll), dtype), size=jnp.asarray(np.asarray(sizes), dtype),
                entry=jnp.asarray(np.asarray(entries), dtype))
    return book, BookLabels(tuple(acct), tuple(mode), tuple(unit))
