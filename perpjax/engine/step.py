"""One step of a path: the orchestrator that calls each component's step in order.

market (``state.market_step``) -> margin -> liquidation trigger, delay and halt (``liquidation``,
``guardrails``) -> depth (``depth.depth_factor``) -> backstop and throttle -> execution and cover
on the liquidating paths only (``sparse.where_active``) -> cascade feedback (``cascade``) ->
running sums (``outputs.accumulate``). Each optional mechanism costs nothing when it is off.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import random as R
from ..cascade import cascade_step
from ..depth import depth_factor
from ..layout import Positions, exact_dot
from ..liquidation import liquidate, no_liquidation
from ..sparse import DEFAULT_CAPACITY, where_active
from .model import RiskModel, draw, draw_spec
from .outputs import accumulate
from .state import BookState, State, margin, market_covariance, market_step, reference_var


def step(model: RiskModel, P: Positions, path_key, s: State, t, sparse: float | tuple = DEFAULT_CAPACITY) -> State:
    """Advance the carry ``s`` of the path keyed ``path_key`` by step ``t``."""
    liq, sched, regimes, b, V = model.liquidation, model.schedule, model.regimes, s.book, s.venue
    d = R.split(s.draws, draw_spec(model))
    # A full close empties a unit at once: its sizes are the book's while it is open, so the
    # carry need not hold them (one (positions,) read + write less per step).
    size = size_in = P.size * P.at_unit(b.open) if liq.full_only else b.size
    m = market_step(model, P, d, s.market, t, size)
    mark, prev_mark = m.mark, s.market.mark
    mark_p = P.at_asset(mark)
    mtm = P.unit_sum(size * P.at_asset(mark - prev_mark)) if liq.ledger else None
    collateral = b.collateral - m.payment
    equity, mm, mmr_marginal = margin(model, P, size, mark, collateral)
    gap = equity - mm
    crossed = None
    if liq.bridge:
        cov, sd = market_covariance(model, s.market, m)
        crossed = liq.bridge_crossed(P, size, mmr_marginal, mark_p, cov, b.gap, gap, d[R.BRIDGE], sd)
    trigger = liq.check(t, b.open, gap, b.cooldown_until, crossed)
    ti = t.astype(jnp.int32)
    ring, halt_until, fired = b.ring, b.halt_until, None
    if model.breaker is not None:
        ring, halt_until, fired = model.breaker.update(b.ring, m.index, ti, b.halt_until)
    execute, pending = liq.schedule(trigger, b.open, b.pending, ti, ti < halt_until)
    mid = m.true_price * (1.0 + m.basis)
    realised_var, dfac_a = depth_factor(
        liq.depth, m.x - s.market.x, b.realised_var, reference_var(model),
        burst=None if sched is None or sched.depth is None else sched.depth[t - 1],
        stress=m.stress, regime_factor=None if regimes is None else regimes.depth_factor)
    dfac = None if dfac_a is None else P.at_asset(jnp.broadcast_to(dfac_a, mark.shape))
    take, handed, size, collateral, vault_size, backstop_pnl = liq.take_over(
        P, execute, equity, mm, size, collateral, mark, prev_mark, b.vault_size, V.backstop_pnl)
    market = execute & ~take
    scale, throttled = liq.throttle_scale(P, market, size, mark_p)
    # Forced execution and its cover run only on the paths that liquidate this step (``sparse.py``).
    f, c = where_active(jnp.any(market), liquidate, no_liquidation,
                        (liq, model.ladder, P, market, collateral, size, mid, mark_p, dfac, scale,
                         model.insurance_fund, V.fund), capacity=sparse)
    artefact = None
    if liq.fairness:
        eq_i, mm_i, _ = margin(model, P, size_in, m.index, collateral)
        artefact = liq.artefacts(execute, gap, eq_i, mm_i).astype(jnp.int32)
    fund = V.fund + jnp.sum(f.fee) - c.fund_paid
    x_next, casc = m.x, s.cascade
    if model.cascade is not None:
        flow = depth = None
        if model.impact is not None:
            # Net forced flow per asset (+ = buys): market fills and ADL closes; backstop takeovers
            # move positions to the vault off the book and carry no flow.
            flow = exact_dot(c.size - size, P.asset_onehot(size.dtype)) * mid
            depth = liq.depth.quoted(dfac_a)
        x_next, casc = cascade_step(model.impact, model.cascade, s.cascade, ti, m.x, flow, depth, execute,
                                    jnp.sum(f.notional))
    acct = accumulate(s.acct, dict(
        liq_step=execute, liq_events=execute.astype(jnp.int32) if liq.counts_events else None, fee=f.fee,
        bad_debt=f.bad_debt, liq_notional=f.notional, slippage=f.slippage, basis=f.basis if liq.ledger else None,
        funding_paid=m.payment, mtm=mtm, adl_charge=c.charge if liq.adl else None, backstop=handed,
        over_notional=f.over_notional if liq.fairness else None,
        excess_cost=f.excess_cost if liq.fairness else None, artefacts=artefact), ti)
    venue = accumulate(V, dict(
        fund=fund, fund_min=fund, fund_paid=c.fund_paid, adl=jnp.sum(c.charge) if liq.adl else None,
        adl_events=(jnp.sum(c.charge) > 0) if liq.adl else None, uncovered=c.uncovered, backstop_pnl=backstop_pnl,
        backstop_events=jnp.sum(take) if liq.backstop else None, breaker_fires=fired,
        throttled_steps=throttled if liq.throttled else None, stress_steps=m.stress), ti)
    book = BookState(
        size=b.size if liq.full_only else c.size, collateral=c.collateral,
        # Full closes without ADL or backstop empty exactly the executed units.
        open=(b.open & ~execute) if liq.full_only else P.unit_sum(jnp.abs(c.size)) > 0, gap=gap,
        cooldown_until=liq.next_cooldown(market, f.full, ti, b.cooldown_until), pending=pending,
        realised_var=realised_var, ring=ring, halt_until=halt_until, vault_size=vault_size)
    new = State(draws=draw(model, path_key, t + 1), market=m.state._replace(x=x_next), book=book, acct=acct,
                venue=venue, cascade=casc)
    # The carry keeps its dtypes (float32 stays float32 when x64 is enabled).
    return jax.tree_util.tree_map(lambda a, b: a.astype(b.dtype), new, s)
