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

**Sparse steps** (``soft_outcome(sparse=...)``, the sensitivities' forward mode): a step's soft
liquidation runs only on the chunk's paths where some unit's liquidation weight reaches
``ACTIVE_HAZARD``, compacted as the hard engine's liquidations are (``sparse.where_active``); on the
other paths every unit is left as is. ``_soft_step`` says what that changes. Calibration runs the
dense engine.

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
from ..sparse import shares, where_active


class SoftOutcome(NamedTuple):
    """Per path (leading dim) and unit: the relaxed engine's expectations over the liquidation time."""

    p_liq: jax.Array  # (paths, units) 1 - survival
    bad_debt: jax.Array  # (paths, units)
    fee: jax.Array
    notional: jax.Array
    slippage: jax.Array
    over_notional: jax.Array  # notional closed beyond the minimum that restores MM (fairness on)
    excess_cost: jax.Array  # slippage + fee beyond the minimum close's (fairness on)


class SoftBook(NamedTuple):
    """The book part of the relaxed carry, what a soft liquidation changes: collateral, survival, the
    expected sums of ``SoftOutcome`` and (partial modes) the expected open sizes."""

    collateral: jax.Array  # (units,)
    survival: jax.Array  # (units,)
    bad_debt: jax.Array
    fee: jax.Array
    notional: jax.Array
    slippage: jax.Array
    over_notional: jax.Array
    excess_cost: jax.Array
    size: jax.Array | None  # (positions,) expected open size (partial modes; None for full closes)


class SoftState(NamedTuple):
    """The relaxed engine's carry: the hard engine's market state and the book (``SoftBook``)."""

    draws: jax.Array  # this step's random inputs, flat (``engine.draw``)
    market: MarketState
    book: SoftBook


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


ACTIVE_HAZARD = 1e-9  # sparse steps: a path runs its soft liquidation when some unit's weight reaches this


def _hazard(m: RiskModel, P, size, mark, collateral, t, temperature):
    """(units,) ``h_t = sigmoid(-(equity - MM) / (tau * notional))``, 0 off the check steps."""
    equity, mm, _ = margin(m, P, size, mark, collateral)
    notional = jnp.maximum(P.unit_sum(jnp.abs(P.size) * mark[P.asset]),
                           jnp.asarray(1.0, collateral.dtype))  # the hazard's scale
    h = jax.nn.sigmoid(-(equity - mm) / (temperature * notional))
    if m.liquidation.check_every > 1:
        h = jnp.where(t % m.liquidation.check_every == 0, h, 0.0)
    return h


def _soft_liquidation(ops) -> SoftBook:
    """``(model, positions, book, mark, mid, t, temperature)`` -> the book after this step's soft
    liquidation of every unit (everything traced comes in ``ops``: ``sparse.where_active``)."""
    m, P, b, mark, mid, t, temperature = ops
    liq = m.liquidation
    partial = liq.mode != "full"
    size = b.size if partial else P.size
    h, w = _weight(m, P, b, mark, t, temperature)
    mark_p = mark[P.asset]
    all_units = jnp.ones((m.n_units,), bool)
    f = liq.execute(all_units, b.collateral, size, P.entry, mid, mark_p, P.asset, P.unit, P.unit_sum, m.ladder)
    if partial:
        # Mean-field state: the unit keeps the expected size and collateral after a liquidation
        # with probability h (exact as tau -> 0, where h is 0 or 1), and the sums grow by h x the
        # liquidation's bad debt, fee, notional and slippage.
        return SoftBook(b.collateral + h * (f.collateral - b.collateral), b.survival * (1.0 - h),
                        b.bad_debt + h * f.bad_debt, b.fee + h * f.fee, b.notional + h * f.notional,
                        b.slippage + h * f.slippage, b.over_notional + h * f.over_notional,
                        b.excess_cost + h * f.excess_cost, size + h[P.unit] * (f.size - size))
    # Full close: the survival-weighted first passage (the unit does not exist after it): w = S h.
    return SoftBook(b.collateral, b.survival * (1.0 - h), b.bad_debt + w * f.bad_debt, b.fee + w * f.fee,
                    b.notional + w * f.notional, b.slippage + w * f.slippage,
                    b.over_notional + w * f.over_notional, b.excess_cost + w * f.excess_cost, None)


def _weight(m: RiskModel, P, b: SoftBook, mark, t, temperature):
    """(units,) the hazard ``h_t`` and the weight of this step's liquidation in the carry: ``S_{t-1} h_t``
    for a full close (the liquidation-time density), ``h_t`` in the partial modes (the mean-field step)."""
    full = m.liquidation.mode == "full"
    h = _hazard(m, P, P.size if full else b.size, mark, b.collateral, t, temperature)
    return h, (b.survival * h if full else h)


def _active(m: RiskModel, P, b: SoftBook, mark, t, temperature):
    """Whether any unit's liquidation weight this step reaches ``ACTIVE_HAZARD``. No gradient: which
    paths run is piecewise constant in the parameters; what a skip drops is ``_soft_step``'s."""
    m, b, mark = jax.tree_util.tree_map(lambda x: jax.lax.stop_gradient(x) if isinstance(x, jax.Array) else x,
                                        (m, b, mark))
    return jnp.any(_weight(m, P, b, mark, t, temperature)[1] >= ACTIVE_HAZARD)


def _soft_step(m: RiskModel, path_key, temperature, sparse: float | tuple = 0.0):
    """The relaxed engine's step ``(SoftState, t) -> SoftState`` for model ``m`` (its ladder set).

    ``sparse`` (a share of the chunk's paths, or a tuple of shares; 0: dense): a path's soft
    liquidation runs only at steps where some unit's liquidation weight (``S_{t-1} h_t``; ``h_t`` in
    the partial modes) reaches ``ACTIVE_HAZARD``, compacted over the chunk's paths as the hard
    engine's liquidations are (``sparse.where_active``: at most that share of them; more run
    densely). On the other paths every unit is kept as is: per unit and step a skip drops a weight
    below ``ACTIVE_HAZARD`` and a derivative below ``ACTIVE_HAZARD x |dz/dx|`` (``z`` the hazard's
    argument; ``|dz/dx|`` ~ 1 / tau per unit relative move), and in the partial modes the state moves
    that would have carried forward. Measured against the dense step (float64): Jacobians within 4e-7
    of scale on a two-asset book in every mode (``tests/test_sensitivities.py``), 1.6e-7 on the default
    config over 1,440 steps. Paths must be ``vmap``-ped inside any autodiff transformation
    (``jax.jvp(jax.vmap(path))``), so that the chunk-level branch is what is differentiated."""
    P = positions(m)
    partial = m.liquidation.mode != "full"
    spec = draw_spec(m)

    def step(s: SoftState, t):
        d = R.split(s.draws, spec)
        size = s.book.size if partial else P.size
        mk = market_step(m, P, d, s.market, t, size)
        b = s.book._replace(collateral=s.book.collateral - mk.payment)
        mid = (mk.true_price * (1.0 + mk.basis))[P.asset]
        ops = (m, P, b, mk.mark, mid, t, temperature)
        if any(c > 0 for c in shares(sparse)):
            b = where_active(_active(m, P, b, mk.mark, t, temperature), _soft_liquidation, lambda o: o[2], ops,
                             capacity=sparse)
        else:
            b = _soft_liquidation(ops)
        return SoftState(draw(m, path_key, t + 1), mk.state, b)

    return step


def _soft_init(m: RiskModel, path_key) -> SoftState:
    """The relaxed carry at t = 0: the hard engine's initial draws, market and collateral."""
    h0 = initial_state(m, positions(m), path_key)
    z = jnp.zeros((m.n_units,), h0.book.collateral.dtype)
    size = h0.book.size if m.liquidation.mode != "full" else None
    return SoftState(h0.draws, h0.market, SoftBook(h0.book.collateral, jnp.ones_like(z), z, z, z, z, z, z, size))


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


def _soft_path(model: RiskModel, ladder: Ladder, path_key, temperature, block_steps: int,
               sparse: float | tuple = 0.0) -> SoftOutcome:
    """One path of the relaxed engine (vmap over path keys)."""
    m = eqx.tree_at(lambda x: x.ladder, model, ladder)
    s = _scan_steps(_soft_step(m, path_key, temperature, sparse), _soft_init(m, path_key), model.grid.n_steps,
                    block_steps)
    b = s.book
    return SoftOutcome(1.0 - b.survival, b.bad_debt, b.fee, b.notional, b.slippage, b.over_notional, b.excess_cost)


def soft_outcome(model: RiskModel, ladder: Ladder, key, start, count: int, temperature, *, block_steps: int = 60,
                 sparse: float | tuple = 0.0):
    """The relaxed engine on paths ``start .. start + count - 1`` (same keys and draws as ``simulate``).

    ``sparse`` (not 0) runs each step's soft liquidation only where it weighs (``_soft_step``); then
    differentiate this function (paths vmapped inside), not a per-path call under ``vmap``."""
    keys = R.path_keys(key, start, count)
    return jax.vmap(lambda k: _soft_path(model, ladder, k, temperature, block_steps, sparse))(keys)
