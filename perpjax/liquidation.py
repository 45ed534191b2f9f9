"""Forced execution: liquidation trigger, delay, cooldown, backstop, throttle, bridge and the fills.

The depth model the fills walk is ``depth.DepthModel`` (re-exported here).

Per step the engine's orchestrator (``engine.step``) calls, in order:
``Liquidation.check`` (margin trigger, Brownian-bridge crossings, cooldown),
``Liquidation.schedule`` (delay and circuit-breaker halt), ``Liquidation.take_over``
(backstop vault), ``Liquidation.throttle_scale`` (per-step notional cap), then
``liquidate`` (execution and bad-debt cover, only on the paths that liquidate:
``sparse.where_active`` with ``no_liquidation``), ``Liquidation.artefacts``
(fairness) and ``Liquidation.next_cooldown``.

The smallest cut that restores health (``buffer`` mode, fairness) is ``min_cut``'s root search.

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

from .checks import concrete, nonneg
from .depth import DepthModel as DepthModel
from .insurance import Cover, cover_bad_debt
from .layout import as_spreader, exact_dot
from .min_cut import min_cut

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
          at mark after paying slippage and fee: bracketed by a bisection, then
          Newton's method to the dtype's precision and rounded up to the first
          float whose health is >= 0 (``drift.min_close_fraction``'s root).
        * ``tier_step`` (Binance / BitMEX style): each position is cut to the
          floor of its tier, i.e. steps down one tier per check; a position in the
          first tier is closed in full.
        * ``fraction`` (Hyperliquid style): positions with notional above
          ``fraction_above`` lose ``fraction`` of their size per liquidation, then
          the unit waits ``cooldown`` steps; smaller positions close in full.
        In every mode, a unit whose equity at the fill would be negative is
        closed in full (bankruptcy) and the shortfall is bad debt.

    Around the mode: a **backstop** (Hyperliquid: equity below ``backstop_ratio``
    x MM; on when ``backstop_ratio > 0``) hands the whole unit to a backstop vault at mark instead; **delay**
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
        bisection_steps: bisection iterations that bracket the minimal cut (2^-steps wide).
        newton_steps: Newton steps from the bracket's unhealthy end to the exact root (fixed, unrolled:
            quadratic convergence from a 2^-14 bracket reaches float64 precision in 3); 0 keeps the
            bisection's healthy end (2^-steps resolution, rounded up).
        ledger: keep every term of each unit's equity change (mark-to-market, basis) so value
            conservation can be audited path by path (off by default: it costs per-step traffic).
        backstop, throttled: whether the backstop / throttle is on. They shape the compiled program,
            so they are static, and they are derived from ``backstop_ratio > 0`` / ``throttle > 0`` at
            construction (leave them None). Given explicitly they must agree with those values
            (``ValueError`` naming the field otherwise); with a traced ratio or throttle they must be given.
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
    backstop: bool | None = eqx.field(static=True, default=None)
    throttled: bool | None = eqx.field(static=True, default=None)
    implicit_grad: bool = eqx.field(static=True, default=False)  # calibration: d(minimal cut)/d(params)
    bisection_steps: int = eqx.field(static=True, default=14)
    newton_steps: int = eqx.field(static=True, default=3)

    def __post_init__(self):
        for flag, name, value in (("backstop", "backstop_ratio", self.backstop_ratio),
                                  ("throttled", "throttle", self.throttle)):
            given = getattr(self, flag)
            if not concrete(value):
                if given is None:
                    raise ValueError(f"{flag}: {name} is traced; give {flag} explicitly (it is static)")
                continue
            on = bool(float(value) > 0)
            if given is None:
                setattr(self, flag, on)
            elif bool(given) != on:
                raise ValueError(f"{flag}: {given!r} disagrees with {name} = {float(value)} "
                                 f"(on exactly when {name} > 0; leave {flag} unset to derive it)")

    @property
    def full_only(self) -> bool:
        """Full closes only, nothing that moves positions otherwise (ADL, backstop, throttle): a unit's
        sizes are the book's while it is open, so the engine need not carry them."""
        return self.mode == "full" and not (self.adl or self.backstop or self.throttled)

    @property
    def counts_events(self) -> bool:
        """Whether a unit can be liquidated more than once (else events = first-liquidation flag)."""
        return self.mode != "full" or self.throttled

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

    # ---- the per-step mechanics around execution, in the order the engine's step calls them

    def check(self, t, open_, gap, cooldown_until, crossed=None):
        """Units whose margin check fires at step ``t``, (units,) bool.

        ``gap``: equity - MM at mark; ``crossed``: (units,) the Brownian bridge crossed zero between
        the steps (``bridge_crossed``; with ``bridge`` only); ``cooldown_until``: no trigger before it."""
        below = gap < 0
        if self.check_every > 1:
            below = below & (t % self.check_every == 0)
        trigger = open_ & below
        if self.bridge:
            trigger = trigger | (open_ & crossed)
        if self.cooldown:
            trigger = trigger & (t >= cooldown_until)
        return trigger

    @staticmethod
    def bridge_crossed(P, size, mmr_marginal, mark_p, covariance_dt, gap0, gap1, u, sd=None):
        """(units,) whether the margin gap crossed zero between two checks: the gap's sensitivity to each
        asset's log price, its variance over the step, the bridge crossing probability against ``u``.

        ``sd``: (assets,) the step's conditional vol scale (``paths.step_covariance``), or None: the
        step's covariance is then ``covariance_dt`` o (sd sd^T), so the variance is that of the gap's
        sensitivity scaled by ``sd`` under a covariance shared by all paths (GARCH, regimes, bars)."""
        g = P.by_unit_and_asset((size - jnp.abs(size) * mmr_marginal) * mark_p)
        if sd is not None:
            g = g * sd[None, :]
        var = jnp.einsum("ua,ab,ub->u", g, covariance_dt, g)
        return u < bridge_cross_probability(gap0, gap1, var)

    def schedule(self, trigger, open_, pending, t, halted):
        """(units executing at step ``t``, pending execution steps): ``delay`` steps after the trigger,
        never while the circuit breaker ``halted`` liquidations."""
        if not self.delay:
            return trigger & ~halted, pending
        pending = jnp.where(trigger & (pending == 0), t + self.delay, pending)
        execute = open_ & (pending <= t) & (pending > 0) & ~halted
        return execute, jnp.where(execute | ~open_, 0, pending)

    def take_over(self, P, execute, equity, mm, size, collateral, mark, prev_mark, vault_size, vault_pnl):
        """Backstop: units far below maintenance go to the vault at mark with what equity they have.

        Returns ``(take, handed, size, collateral, vault_size, vault_pnl)``: ``take`` (units,) the units
        taken over, ``handed`` the equity each handed over; the vault's PnL includes the mark-to-market
        of the positions it held since the previous step. Without a backstop nothing moves."""
        if not self.backstop:
            return jnp.zeros_like(execute), None, size, collateral, vault_size, vault_pnl
        vault_pnl = vault_pnl + jnp.sum(vault_size * (mark - prev_mark))
        take = execute & (equity < self.backstop_ratio * mm)
        take_p = P.at_unit(take)
        vault_size = vault_size + exact_dot(jnp.where(take_p, size, 0.0), P.asset_onehot(size.dtype))
        handed = jnp.where(take, equity, 0.0)
        vault_pnl = vault_pnl + jnp.sum(handed)
        return take, handed, jnp.where(take_p, 0.0, size), jnp.where(take, 0.0, collateral), vault_size, vault_pnl

    def throttle_scale(self, P, market, size, mark_p):
        """(scale on every non-bankrupt close this step or None, whether the cap bit): the throttle."""
        if not self.throttled:
            return None, jnp.zeros((), bool)
        want = jnp.sum(jnp.where(market, P.unit_sum(jnp.abs(size) * mark_p), 0.0))
        scale = jnp.minimum(1.0, self.throttle / jnp.maximum(want, 1e-30))
        return scale, scale < 1.0

    @staticmethod
    def artefacts(execute, gap, equity_index, mm_index):
        """Fairness: liquidations executed while the account looked healthy, on the mark at execution
        (a delayed order after a rebound) or on the index (the mark's smoothing lagged the recovery)."""
        return execute & ((gap >= 0) | (equity_index >= mm_index))

    def next_cooldown(self, market, full, t, cooldown_until):
        """Units partially liquidated at ``t`` wait ``cooldown`` steps."""
        if not self.cooldown:
            return cooldown_until
        return jnp.where(market & ~full, t + self.cooldown, cooldown_until)

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
        unit = as_spreader(unit)
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
            f_min = self.min_fraction(*ctx, buffer=0.0)
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
        f = self.min_fraction(collateral, size, entry, mid, mark, asset, unit, unit_sum, ladder, dfac,
                              buffer=self.buffer)
        return unit(f)

    def min_fraction(self, collateral, size, entry, mid, mark, asset, unit, unit_sum, ladder, dfac, *, buffer):
        """Per unit, the smallest pro-rata fraction f with
        equity_after(f) - fee(f) >= MM(rest) + buffer * notional(rest) (``min_cut.min_cut``: bracketed by
        bisection, then Newton to the dtype's precision, rounded up), (units,). Arguments as ``execute``'s."""
        def margin(f_u):  # health after cutting every position of the unit by f: >= 0 is healthy
            q = size * unit(f_u)
            fill, _ = self._fill(q, mid, asset, dfac)
            rest = size - q
            eq = (collateral + unit_sum(q * (fill - entry)) + unit_sum(rest * (mark - entry))
                  - self.fee_rate * unit_sum(jnp.abs(q) * fill))
            n_rest = jnp.abs(rest) * mark
            return eq - unit_sum(ladder.maintenance_and_rate(n_rest, asset)[0] + buffer * n_rest)

        return min_cut(margin, collateral.shape[0], size.dtype, bisection_steps=self.bisection_steps,
                       newton_steps=self.newton_steps, implicit_grad=self.implicit_grad)


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


def liquidate(o):
    """Execute the triggered units' liquidations, then cover their bad debt (fund, then ADL).

    ``o = (liq, ladder, P, market, collateral, size, mid, mark_p, dfac, scale, fund0, fund)``: the rules,
    the ladder, the position layout (``layout.Positions``), the units executing at market, their
    collateral, sizes, the mid (assets,), mark and depth factor per position, the throttle scale,
    the fund's initial balance and its change so far. Returns ``(Fills, insurance.Cover)``; the engine
    runs it through ``sparse.where_active`` with ``no_liquidation``."""
    liq, ladder, P, market, collateral, size, mid, mark_p, dfac, scale, fund0, fund = o
    f = liq.execute(market, collateral, size, P.entry, P.at_asset(mid), mark_p, P.asset, P.at_unit, P.unit_sum, ladder,
                    dfac=dfac, scale=scale)
    # The fund pays from its balance after this step's fees reach it.
    c = cover_bad_debt(f.bad_debt, fund0 + (fund + jnp.sum(f.fee)), adl=liq.adl, bankrupt=f.full & (f.bad_debt > 0),
                       size_before=size, size=f.size, collateral=f.collateral, entry=P.entry, mark=mark_p,
                       asset_onehot=P.asset_onehot(mark_p.dtype), unit=P.unit, unit_sum=P.unit_sum)
    return f, c


def no_liquidation(o):
    """What ``liquidate`` returns when no unit executes (exactly: nothing moves)."""
    _, _, _, market, collateral, size, *_ = o
    z, z0 = jnp.zeros_like(collateral), jnp.zeros((), collateral.dtype)
    return (Fills(size=size, collateral=collateral, fee=z, bad_debt=z, notional=z, slippage=z, basis=z,
                  full=jnp.zeros_like(market), over_notional=z, excess_cost=z),
            Cover(fund_paid=z0, charge=z, size=size, collateral=collateral, uncovered=z0))
