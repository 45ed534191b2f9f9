"""The relaxed engine: the hard engine's market, with a soft first passage.

**Relaxed engine** (``soft_outcome``). The market step is the hard engine's own
(``engine.market_step``: prices, oracle, basis, mark, funding) on the same random numbers, and
the relaxed carry holds the hard engine's own ``MarketState``, so a calibration sees exactly the
paths ``simulate`` sees. The only hard event of a full close, the first passage of equity below
maintenance, is relaxed: at every check a unit is liquidated with hazard
``h_t = sigmoid(-(equity_t - MM_t) / (tau * notional_t))``, survives with
``S_t = S_{t-1} (1 - h_t)``, and the liquidation-time density ``p_t = S_{t-1} h_t`` weights
what a full close at ``t`` would cost (``Liquidation.execute``: bad debt, fee, notional,
slippage). So ``P(liq) = 1 - S_T`` and ``E[bad debt] = sum_t p_t BD_t`` per path and unit; as
``tau -> 0`` these are the hard engine's (``tests/test_calibrate.py`` shows it). Tier selection
is ``MM(N) = max_k (N MMR_k - cum_k)``: piecewise linear in the rates, so gradients reach each
tier's rate and, through the continuity amount, the rates below it.

**Memory**: reverse mode through the time scan keeps only the scan carry at the start of
each block of ``block_steps`` steps, and recomputes inside a block (nested ``jax.checkpoint``):
memory ~ carry x (steps / block + block) instead of every intermediate of every step.

**Partial liquidation** (``fraction``, ``tier_step``, ``buffer``): a unit survives a partial
liquidation, so survival weighting does not apply. The relaxed engine instead carries a
mean-field state: with probability ``h_t`` the unit moves to the state after the liquidation
(``Liquidation.execute``: cut size, collateral after the fill and fee) and the sums grow by
``h_t x`` its bad debt, fee, notional and slippage; as ``tau -> 0`` (``h`` in {0, 1}) this is the
hard engine path by path (tested for all three modes). The ``fraction`` parameter gets a gradient;
the switch to a full close when a partial fill would be bankrupt is not relaxed (the objective
jumps there). ``buffer``'s cut, and the minimal close behind the fairness terms
(``over_liquidation``, ``excess_cost``), come from a root search (bisection, then Newton) carrying no
gradient; the relaxed engine gives them the exact root's gradient by the implicit function
theorem (``Liquidation.implicit_grad``), so the buffer and the fairness terms are tuned too.

**Scope** (``check_calibratable``): no ADL, backstop, delay, throttle, cooldown or bridge, no depth
decay, bursts or circuit breaker, no cascade feedback or funding crowding: their state depends on
which paths liquidated, which neither relaxation follows. The before/after comparison always uses
the hard engine on fresh paths.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import random as R
from ..engine import MarketState, RiskModel, draw, draw_spec, initial_state, margin, market_step, positions
from ..margin import Ladder


class SoftOutcome(NamedTuple):
    """Per path (leading dim) and unit: the relaxed engine's expectations over the liquidation time."""

    p_liq: jax.Array  # (paths, units) 1 - survival
    bad_debt: jax.Array  # (paths, units)
    fee: jax.Array
    notional: jax.Array
    slippage: jax.Array
    over_notional: jax.Array  # notional closed beyond the minimum that restores MM (fairness on)
    excess_cost: jax.Array  # slippage + fee beyond the minimum close's (fairness on)


class SoftState(NamedTuple):
    """The relaxed engine's carry: the hard engine's market state, the book's collateral (and, in
    partial modes, expected open sizes), survival and the expected sums of ``SoftOutcome``."""

    draws: jax.Array  # this step's random inputs, flat (``engine.draw``)
    market: MarketState
    collateral: jax.Array  # (units,)
    survival: jax.Array  # (units,)
    bad_debt: jax.Array
    fee: jax.Array
    notional: jax.Array
    slippage: jax.Array
    over_notional: jax.Array
    excess_cost: jax.Array
    size: jax.Array | None  # (positions,) expected open size (partial modes; None for full closes)


def check_calibratable(model: RiskModel) -> None:
    """Raise ValueError if the model has mechanics the relaxed engine does not follow (see Scope)."""
    liq = model.liquidation
    if liq.adl or liq.backstop or liq.throttled or liq.delay or liq.bridge or liq.cooldown:
        raise ValueError("calibration: the relaxed engine models liquidation without adl, backstop, delay, "
                         "throttle, cooldown or bridge (their state depends on which paths liquidated)")
    sched = model.schedule
    if (model.breaker is not None or liq.depth.vol_elasticity or (sched is not None and sched.depth is not None)
            or (model.regimes is not None and bool(np.any(np.asarray(model.regimes.depth_factor) != 1)))):
        raise ValueError("calibration: the relaxed engine fills at the quoted depth without circuit breaker; "
                         "remove depth decay (liquidation.depth_vol_elasticity, events.depth_bursts, "
                         "regimes.depth_factor) and guardrails.circuit_breaker to calibrate")
    if model.impact is not None or model.basis.crowding is not None:
        raise ValueError("calibration: cascade feedback and funding crowding depend on who was liquidated; "
                         "calibrate without them and evaluate the ladder with them")


def _soft_step(m: RiskModel, path_key, temperature):
    """The relaxed engine's step ``(SoftState, t) -> SoftState`` for model ``m`` (its ladder set)."""
    P = positions(m)
    liq = m.liquidation
    partial = liq.mode != "full"
    spec = draw_spec(m)
    all_units = jnp.ones((m.n_units,), bool)
    notional_floor = jnp.asarray(1.0, m.book.collateral.dtype)

    def step(s: SoftState, t):
        d = R.split(s.draws, spec)
        size = s.size if partial else P.size
        mk = market_step(m, P, d, s.market, t, size)
        collateral = s.collateral - mk.payment
        equity, mm, _ = margin(m, P, size, mk.mark, collateral)
        mark_p = mk.mark[P.asset]
        notional = jnp.maximum(P.unit_sum(jnp.abs(P.size) * mark_p), notional_floor)  # the hazard's scale
        h = jax.nn.sigmoid(-(equity - mm) / (temperature * notional))
        if liq.check_every > 1:
            h = jnp.where(t % liq.check_every == 0, h, 0.0)
        mid = (mk.true_price * (1.0 + mk.basis))[P.asset]
        f = liq.execute(all_units, collateral, size, P.entry, mid, mark_p, P.asset, P.unit, P.unit_sum, m.ladder)
        draws, market = draw(m, path_key, t + 1), mk.state
        if partial:
            # Mean-field state: the unit keeps the expected size and collateral after a liquidation
            # with probability h (exact as tau -> 0, where h is 0 or 1), and the sums grow by h x the
            # liquidation's bad debt, fee, notional and slippage.
            return SoftState(draws, market, collateral + h * (f.collateral - collateral), s.survival * (1.0 - h),
                             s.bad_debt + h * f.bad_debt, s.fee + h * f.fee, s.notional + h * f.notional,
                             s.slippage + h * f.slippage, s.over_notional + h * f.over_notional,
                             s.excess_cost + h * f.excess_cost, size + h[P.unit] * (f.size - size))
        # Full close: the survival-weighted first passage (the unit does not exist after it).
        p = s.survival * h
        return SoftState(draws, market, collateral, s.survival * (1.0 - h), s.bad_debt + p * f.bad_debt,
                         s.fee + p * f.fee, s.notional + p * f.notional, s.slippage + p * f.slippage,
                         s.over_notional + p * f.over_notional, s.excess_cost + p * f.excess_cost, None)

    return step


def _soft_init(m: RiskModel, path_key) -> SoftState:
    """The relaxed carry at t = 0: the hard engine's initial draws, market and collateral."""
    h0 = initial_state(m, positions(m), path_key)
    z = jnp.zeros((m.n_units,), h0.book.collateral.dtype)
    size = h0.book.size if m.liquidation.mode != "full" else None
    return SoftState(h0.draws, h0.market, h0.book.collateral, jnp.ones_like(z), z, z, z, z, z, z, size)


def _scan_steps(step, s0, n: int, block_steps: int):
    """Steps 1..n of ``step`` from ``s0``; reverse mode keeps the carry at each block's start only."""
    if block_steps == 0:  # no checkpointing: reverse mode keeps every step's intermediates
        return jax.lax.scan(lambda c, t: (step(c, t), None), s0, jnp.arange(1, n + 1, dtype=jnp.int32))[0]
    block = max(1, min(block_steps, n))
    n_blocks, rest = divmod(n, block)

    @jax.checkpoint
    def run_block(s, t0):
        return jax.lax.scan(lambda c, t: (step(c, t), None), s, t0 + jnp.arange(block, dtype=jnp.int32))[0]

    s = jax.lax.scan(lambda c, b: (run_block(c, 1 + b * block), None), s0,
                     jnp.arange(n_blocks, dtype=jnp.int32))[0]
    if rest:
        s = jax.lax.scan(lambda c, t: (jax.checkpoint(step)(c, t), None), s,
                         jnp.arange(1 + n_blocks * block, n + 1, dtype=jnp.int32))[0]
    return s


def _soft_path(model: RiskModel, ladder: Ladder, path_key, temperature, block_steps: int) -> SoftOutcome:
    """One path of the relaxed engine (vmap over path keys)."""
    m = eqx.tree_at(lambda x: x.ladder, model, ladder)
    s = _scan_steps(_soft_step(m, path_key, temperature), _soft_init(m, path_key), model.grid.n_steps, block_steps)
    return SoftOutcome(1.0 - s.survival, s.bad_debt, s.fee, s.notional, s.slippage, s.over_notional, s.excess_cost)


def soft_outcome(model: RiskModel, ladder: Ladder, key, start, count: int, temperature, *, block_steps: int = 60):
    """The relaxed engine on paths ``start .. start + count - 1`` (same keys and draws as ``simulate``)."""
    keys = R.path_keys(key, start, count)
    return jax.vmap(lambda k: _soft_path(model, ladder, k, temperature, block_steps))(keys)
