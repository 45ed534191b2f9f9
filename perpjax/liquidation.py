"""Forced execution: depth model, liquidation trigger and full close.

Depth model (DOMAIN.md §5). Cumulative depth on one side of the book within a
distance d of mid is a power law, ``D(d) = D0 (d / d0)^beta`` with ``D0`` USD of
depth within ``d0`` (e.g. the "depth within 50 bp" that venues and the shared
Hyperliquid snapshots report). Walking the book for notional Q reaches
``d(Q) = d0 (Q / D0)^e`` with ``e = 1/beta``, and the average fill sits at

    slip(Q) = spread/2 + d(Q) / (1 + e)        (fraction of mid)

so the cost ``Q slip(Q)`` grows like ``Q^(1+e)``: doubling size more than
doubles cost. ``e = 0.5`` (default) is the square-root law.

Full close (this module): when a unit's equity at mark falls below its
maintenance margin at a check, every position is closed at the fill price
(mid moved against the position by ``slip``), the liquidation fee
``fee_rate * |notional at fill|`` is taken from what equity remains, and any
equity below zero after the fill is bad debt, which the insurance fund covers.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from ._validate import concrete, nonneg, positive


class DepthModel(eqx.Module):
    """Power-law book depth per asset.

    Attributes:
        depth_usd: one-side depth D0 within ``depth_distance`` of mid (USD), (assets,).
        depth_distance: the distance d0 at which D0 is quoted (fraction; 0.005 = 50 bp).
        exponent: e = 1/beta; the far edge of a walk moves as Q^e (0.5 = square root).
        spread: quoted spread (fraction of mid), (assets,).
        forced_cost: extra cost of forced execution (fraction of notional), on top of the walk.
        vol_elasticity: depth decays as realised volatility rises:
            ``depth = D0 * clip((sigma_ref / sigma_realised)^vol_elasticity, depth_floor, 1)``,
            sigma_ref the model's diffusion vol, sigma_realised an EWMA of squared step
            log returns with half-life ``vol_halflife_steps`` (0 disables).
        depth_floor: smallest fraction of D0 left when volatility spikes.
        vol_halflife_steps: half-life of the realised-volatility EWMA (steps).
    """

    depth_usd: jax.Array
    spread: jax.Array
    depth_distance: float = eqx.field(static=True, default=0.005)
    exponent: float = eqx.field(static=True, default=0.5)
    forced_cost: jax.Array = eqx.field(default_factory=lambda: jnp.asarray(0.0))
    vol_elasticity: float = eqx.field(static=True, default=0.0)
    depth_floor: float = eqx.field(static=True, default=0.1)
    vol_halflife_steps: int = eqx.field(static=True, default=15)

    def __check_init__(self):
        if concrete(self.depth_usd, self.spread):
            positive("depth_usd", self.depth_usd)
            nonneg("spread", self.spread)
        if not (self.depth_distance > 0):
            raise ValueError(f"depth_distance: must be > 0 (got {self.depth_distance})")
        if not (0 < self.exponent <= 2):
            raise ValueError(f"exponent: must lie in (0, 2] (got {self.exponent})")
        if concrete(self.forced_cost):
            nonneg("forced_cost", self.forced_cost)
        if not self.vol_elasticity >= 0:
            raise ValueError(f"vol_elasticity: must be >= 0 (got {self.vol_elasticity})")
        if not 0 < self.depth_floor <= 1:
            raise ValueError(f"depth_floor: must lie in (0, 1] (got {self.depth_floor})")
        if not (isinstance(self.vol_halflife_steps, int) and self.vol_halflife_steps >= 1):
            raise ValueError(f"vol_halflife_steps: must be an integer >= 1 (got {self.vol_halflife_steps})")

    def depth_factor(self, realised_var, reference_var):
        """Fraction of D0 available given the realised and reference per-step variances, (assets,)."""
        if self.vol_elasticity == 0:
            return jnp.ones_like(realised_var)
        ratio = reference_var / jnp.maximum(realised_var, 1e-30)
        return jnp.clip(ratio ** (0.5 * self.vol_elasticity), self.depth_floor, 1.0)

    def slippage(self, notional, asset=None, factor=None):
        """Average fill distance from mid for a market order of ``notional`` USD.

        ``notional`` is (..., assets), or (positions,) with ``asset`` (positions,);
        ``factor`` scales the depth (see ``depth_factor``), same shape as ``notional``.
        """
        depth, spread = (self.depth_usd, self.spread) if asset is None else (self.depth_usd[asset], self.spread[asset])
        if factor is not None:
            depth = depth * factor
        # q floored at 1e-30: the same value to 1e-15 of d0 (and its cost is zero there), but a finite
        # derivative at an empty order, so gradients through the calibration's relaxed engine stay finite.
        q = jnp.maximum(jnp.abs(notional) / depth, 1e-30)
        reach = self.depth_distance * (jnp.sqrt(q) if self.exponent == 0.5 else q**self.exponent)
        return 0.5 * spread + reach / (1.0 + self.exponent) + self.forced_cost


MODES = ("full", "buffer", "tier_step", "fraction")


class Fills(NamedTuple):
    """What one liquidation pass did, per unit (zeros where nothing was closed)."""

    size: jax.Array  # (positions,) size left open
    collateral: jax.Array  # (units,) collateral after realised PnL and fee (>= 0)
    fee: jax.Array  # (units,) liquidation fee to the insurance fund
    bad_debt: jax.Array  # (units,) equity below zero written off (the fund / ADL cover it)
    notional: jax.Array  # (units,) filled notional
    slippage: jax.Array  # (units,) cost of the fill vs mid: sum |q| mid slip
    basis: jax.Array  # (units,) sum q (mid - mark): value of filling at mid rather than mark
    full: jax.Array  # (units,) bool, the unit was closed out entirely
    over_notional: jax.Array  # (units,) notional closed beyond the minimum that restores MM (fairness)
    excess_cost: jax.Array  # (units,) slippage + fee paid beyond those of the minimum close (fairness)


class Liquidation(eqx.Module):
    """Trigger and execution: full close or one of the partial liquidation paths.

    Modes (DOMAIN.md §4):
        * ``full``: close every position of the unit at the depth-model fill.
        * ``buffer`` (Drift style): close the smallest pro-rata fraction of every
          position of the unit that restores ``equity >= MM + buffer * notional``
          at mark after paying slippage and fee (bisection, 2^-14 resolution,
          rounded up so health is restored).
        * ``tier_step`` (Binance / BitMEX style): each position is cut to the
          floor of its tier, i.e. steps down one tier per check; a position in the
          first tier is closed in full.
        * ``fraction`` (Hyperliquid style): positions with notional above
          ``fraction_above`` lose ``fraction`` of their size per liquidation, then
          the unit waits ``cooldown`` steps; smaller positions close in full.
        In every mode, a unit whose equity at the fill would be negative is
        closed in full (bankruptcy) and the shortfall is bad debt.

    Around the mode: a **backstop** (Hyperliquid: equity below ``backstop_ratio``
    x MM) hands the whole unit to a backstop vault at mark instead; **delay**
    executes a liquidation ``delay`` steps after its trigger, at the prices
    then (the mark may have recovered: a mark-lag artefact); **throttle** caps
    the notional the venue liquidates per step (the rest waits for the next
    check); **fairness** measures, per liquidation, the notional closed beyond
    the minimum that restores ``equity >= MM`` at the fill and the cost paid
    beyond that minimum's cost.

    Attributes:
        depth: the book the forced order walks.
        fee_rate: liquidation fee (fraction of filled notional), to the insurance fund.
        buffer: ``buffer`` mode's margin buffer (fraction of remaining notional).
        fraction: ``fraction`` mode's share of size closed per step, in (0, 1].
        fraction_above: ``fraction`` mode's notional threshold (USD).
        backstop_ratio: backstop takeover when equity < backstop_ratio x MM, in [0, 1) (0 = none).
        throttle: most notional liquidated per step across the book (USD; 0 = no cap).
        check_every: the engine checks margin every ``check_every`` steps (discrete monitoring).
        bridge: continuous monitoring between steps through the Brownian-bridge
            crossing probability of the margin gap (requires ``check_every == 1``).
        mode: one of ``MODES``.
        cooldown: steps a unit waits after a partial liquidation (``fraction`` mode).
        delay: steps between trigger and execution.
        adl: auto-deleverage profitable opposite positions when the insurance fund cannot cover bad debt.
        fairness: compute over-liquidation and excess cost (a bisection per step; off by default).
        implicit_grad: give the bisected minimal cut (``buffer`` mode, fairness) the gradient of the
            exact root by the implicit function theorem, ``df/dp = -(dg/dp) / (dg/df)`` with ``g`` the
            health margin after the cut (slope from the final bracket); the value is unchanged. Used
            by calibration; off in the hard engine (it costs two more margin evaluations).
        bisection_steps: bisection iterations for the minimal cut (2^-steps resolution).
        ledger: keep every term of each unit's equity change (mark-to-market, basis) so value
            conservation can be audited path by path (off by default: it costs per-step traffic).
    """

    depth: DepthModel
    fee_rate: jax.Array
    buffer: jax.Array = eqx.field(default_factory=lambda: jnp.asarray(0.0))
    fraction: jax.Array = eqx.field(default_factory=lambda: jnp.asarray(1.0))
    fraction_above: jax.Array = eqx.field(default_factory=lambda: jnp.asarray(0.0))
    backstop_ratio: jax.Array = eqx.field(default_factory=lambda: jnp.asarray(0.0))
    throttle: jax.Array = eqx.field(default_factory=lambda: jnp.asarray(0.0))
    check_every: int = eqx.field(static=True, default=1)
    bridge: bool = eqx.field(static=True, default=False)
    mode: str = eqx.field(static=True, default="full")
    cooldown: int = eqx.field(static=True, default=0)
    delay: int = eqx.field(static=True, default=0)
    adl: bool = eqx.field(static=True, default=False)
    fairness: bool = eqx.field(static=True, default=False)
    ledger: bool = eqx.field(static=True, default=False)
    backstop: bool = eqx.field(static=True, default=False)
    throttled: bool = eqx.field(static=True, default=False)
    implicit_grad: bool = eqx.field(static=True, default=False)  # calibration: d(minimal cut)/d(params)
    bisection_steps: int = eqx.field(static=True, default=14)

    def __check_init__(self):
        if concrete(self.fee_rate, self.buffer, self.fraction, self.fraction_above, self.backstop_ratio,
                    self.throttle):
            nonneg("fee_rate", self.fee_rate)
            nonneg("buffer", self.buffer)
            nonneg("fraction_above", self.fraction_above)
            nonneg("throttle", self.throttle)
            f = float(self.fraction)
            if not 0 < f <= 1:
                raise ValueError(f"fraction: must lie in (0, 1] (got {f})")
            b = float(self.backstop_ratio)
            if not 0 <= b < 1:
                raise ValueError(f"backstop_ratio: must lie in [0, 1) (got {b})")
        if not (isinstance(self.check_every, int) and self.check_every >= 1):
            raise ValueError(f"check_every: must be an integer >= 1 (got {self.check_every})")
        if self.bridge and self.check_every != 1:
            raise ValueError("bridge: the bridge correction models continuous monitoring; it needs check_every = 1")
        if self.mode not in MODES:
            raise ValueError(f"mode: must be one of {MODES} (got {self.mode!r})")
        for name in ("cooldown", "delay"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 0):
                raise ValueError(f"{name}: must be an integer number of steps >= 0 (got {v})")

    def _fill(self, q, mid, asset, dfac):
        """Fill signed closing sizes ``q`` (positions,) into the book around ``mid``."""
        slip = self.depth.slippage(jnp.abs(q) * mid, asset, dfac)
        fill = mid * (1.0 - jnp.sign(q) * slip)
        return fill, jnp.abs(q) * mid * slip

    def execute(self, trigger, collateral, size, entry, mid, mark, asset, unit, unit_sum, ladder, dfac=None,
                scale=None):
        """Liquidate the triggered units by the configured path.

        Args:
            trigger: (units,) bool.
            collateral: (units,) USD, funding applied.
            size, entry: (positions,) open size and entry price.
            mid, mark: (positions,) perp mid and mark of each position's asset.
            asset: (positions,) indices; unit: (positions,) unit index of each position, or a function
                mapping (units,) to (positions,); ``unit_sum`` maps (positions,) to (units,).
            ladder: the ``margin.Ladder`` (tier floors for ``tier_step``, MM for ``buffer``).
            dfac: (positions,) depth factor (vol-driven decay), or None.
            scale: () throttle factor in (0, 1] on every non-bankrupt close this step, or None.
        """
        unit = _spreader(unit)
        trig_p = unit(trigger)
        ctx = (collateral, size, entry, mid, mark, asset, unit, unit_sum, ladder, dfac)
        if self.mode == "full" and scale is None:
            go_full = trigger
            q = jnp.where(trig_p, size, 0.0)
        else:
            frac = self._close_fraction(*ctx)
            if scale is not None:
                frac = frac * scale
            q_part = jnp.where(trig_p, size * frac, 0.0)
            part = self._settle(q_part, collateral, size, entry, mid, mark, asset, unit_sum, dfac)
            # Bankrupt at the partial fill, or nothing left: close in full instead.
            left_any = unit_sum(jnp.abs(size - q_part)) > 0
            go_full = trigger & ((part[1] < 0) | ~left_any)
            q = jnp.where(unit(go_full), size, q_part)
        new_size, eq_after, notional, slip_cost, basis_gain, realized = self._settle(
            q, collateral, size, entry, mid, mark, asset, unit_sum, dfac)
        # eq_after: equity at mark after the fill (remaining positions at mark), before fee.
        fee = jnp.clip(self.fee_rate * notional, 0.0, jnp.maximum(eq_after, 0.0))
        bad = jnp.where(go_full, jnp.maximum(-eq_after, 0.0), 0.0)
        new_coll = jnp.where(go_full, jnp.maximum(eq_after, 0.0), collateral + realized) - fee
        z = jnp.zeros_like(fee)
        over, excess = z, z
        if self.fairness:
            f_min = self._min_fraction(*ctx, buffer=0.0)
            q_min = jnp.where(trig_p, size * unit(f_min), 0.0)
            _, _, n_min, slip_min, _, _ = self._settle(q_min, collateral, size, entry, mid, mark, asset, unit_sum,
                                                       dfac)
            over = jnp.maximum(notional - n_min, 0.0)
            excess = jnp.maximum(slip_cost + fee - slip_min - self.fee_rate * n_min, 0.0)
        on = trigger
        return Fills(size=new_size, collateral=jnp.where(on, new_coll, collateral), fee=jnp.where(on, fee, z),
                     bad_debt=jnp.where(on, bad, z), notional=jnp.where(on, notional, z),
                     slippage=jnp.where(on, slip_cost, z), basis=jnp.where(on, basis_gain, z), full=go_full,
                     over_notional=jnp.where(on, over, z), excess_cost=jnp.where(on, excess, z))

    def _settle(self, q, collateral, size, entry, mid, mark, asset, unit_sum, dfac):
        fill, slip_cost = self._fill(q, mid, asset, dfac)
        realized = unit_sum(q * (fill - entry))
        new_size = size - q
        eq_after = collateral + realized + unit_sum(new_size * (mark - entry))
        notional = unit_sum(jnp.abs(q) * fill)
        return new_size, eq_after, notional, unit_sum(slip_cost), unit_sum(q * (mid - mark)), realized

    def _close_fraction(self, collateral, size, entry, mid, mark, asset, unit, unit_sum, ladder, dfac):
        """Fraction of each position's size to close, (positions,)."""
        if self.mode == "full":
            return jnp.ones_like(size)
        notional = jnp.abs(size) * mark
        if self.mode == "fraction":
            return jnp.where(notional > self.fraction_above, self.fraction, 1.0)
        if self.mode == "tier_step":
            floors = ladder.floors[asset]  # (positions, tiers)
            floor_k = jnp.max(jnp.where(notional[:, None] >= floors, floors, 0.0), axis=-1)
            return jnp.where(floor_k > 0, 1.0 - floor_k / jnp.maximum(notional, 1e-30), 1.0)
        f = self._min_fraction(collateral, size, entry, mid, mark, asset, unit, unit_sum, ladder, dfac,
                               buffer=self.buffer)
        return unit(f)

    def _min_fraction(self, collateral, size, entry, mid, mark, asset, unit, unit_sum, ladder, dfac, *, buffer):
        """Per unit, the smallest pro-rata fraction f with
        equity_after(f) - fee(f) >= MM(rest) + buffer * notional(rest) (bisection, rounded up)."""
        def margin(f_u):  # health after cutting every position of the unit by f: >= 0 is healthy
            q = size * unit(f_u)
            fill, _ = self._fill(q, mid, asset, dfac)
            rest = size - q
            eq = (collateral + unit_sum(q * (fill - entry)) + unit_sum(rest * (mark - entry))
                  - self.fee_rate * unit_sum(jnp.abs(q) * fill))
            n_rest = jnp.abs(rest) * mark
            return eq - unit_sum(ladder.maintenance_and_rate(n_rest, asset)[0] + buffer * n_rest)

        n_units = collateral.shape[0]
        lo, hi = jnp.zeros((n_units,), size.dtype), jnp.ones((n_units,), size.dtype)
        for _ in range(self.bisection_steps):
            midf = 0.5 * (lo + hi)
            ok = margin(jax.lax.stop_gradient(midf)) >= 0
            hi, lo = jnp.where(ok, midf, hi), jnp.where(ok, lo, midf)
        hi, lo = jax.lax.stop_gradient(hi), jax.lax.stop_gradient(lo)
        if not self.implicit_grad:
            return hi
        g_hi = margin(hi)
        slope = jax.lax.stop_gradient((g_hi - margin(lo)) / (hi - lo))
        inside = (lo > 0) & (hi < 1) & (slope > 0)  # a root inside (0, 1): else the cut is pinned at a bound
        step = (g_hi - jax.lax.stop_gradient(g_hi)) / jnp.where(inside, slope, 1.0)
        return hi - jnp.where(inside, step, 0.0)


def _spreader(unit):
    """``unit`` as a function (units,) -> (positions,): the engine passes a 0/1 product
    (``_Positions.at_unit``); an index array (tests, small callers) becomes a gather."""
    if callable(unit):
        return unit
    return lambda x: x[unit]


def bridge_cross_probability(gap0, gap1, variance):
    """P(a Brownian bridge from gap0 to gap1 with total variance ``variance`` touches 0).

    ``exp(-2 gap0 gap1 / variance)`` for gap0, gap1 > 0 (DOMAIN.md §7 gives the
    complement, the no-touch probability); 1 if either end is at or below zero;
    0 when the variance is zero.
    """
    both_up = (gap0 > 0) & (gap1 > 0)
    safe_var = jnp.where(variance > 0, variance, 1.0)
    p = jnp.exp(-2.0 * jnp.maximum(gap0, 0.0) * jnp.maximum(gap1, 0.0) / safe_var)
    p = jnp.where(variance > 0, p, 0.0)
    return jnp.where(both_up, p, 1.0)
