"""What a path carries from step to step, and the market step.

``MarketState`` is the one market state (prices, oracle, basis, mark, funding accrual, regime) that
the hard engine (``State.market``), the calibration's relaxed engine and ``price_returns`` carry
and that ``market_step`` advances; ``BookState`` the venue's per-unit book state; ``State`` the
hard engine's whole carry. The running sums (``UnitAccounts``, ``VenueAccounts``) are declared in
``outputs``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .. import random as R
from ..bars import BarState, bar_init
from ..cascade import CascadeState, cascade_init
from ..layout import Positions, exact_dot, positions
from ..paths import price_step, step_covariance
from .model import RiskModel, draw
from .outputs import UnitAccounts, VenueAccounts, init_accounts


class MarketState(NamedTuple):
    """The market after a step (before any margin check); None fields are off in the model."""

    x: jax.Array  # (assets,) log true price (after the exogenous move and, in the carry, any impact)
    v2: jax.Array | None  # (assets,) GARCH variance ratio
    index: jax.Array  # (assets,) oracle
    basis: jax.Array  # (assets,)
    mark_state: jax.Array  # (assets,) the mark's smoothing state
    mark: jax.Array  # (assets,)
    regime: jax.Array | None  # () bool, stress regime of the next step
    ref: jax.Array | None  # () EWMA of the market's log level (shock switch)
    premium_sum: jax.Array  # (assets,) weighted premium samples this funding interval
    bar: BarState | None = None  # inside-bar state with ``prices.bar_steps`` > 1 (``bars.bar_step``)


MarketStep = NamedTuple("MarketStep", [*MarketState.__annotations__.items(), ("true_price", jax.Array),
                                       ("stress", jax.Array | None), ("payment", jax.Array)])
MarketStep.__doc__ = ("One step of the market: the new ``MarketState``'s fields (``.state``), then this step's "
                      "true price, its regime ``stress`` and the funding ``payment`` (units,) paid.")
MarketStep.state = property(lambda self: MarketState(*self[:len(MarketState._fields)]))


class BookState(NamedTuple):
    """The venue's per-path book state (what liquidations and guardrails change)."""

    size: jax.Array  # (positions,) signed size still open (the book's while full closes only)
    collateral: jax.Array  # (units,) USD: deposits - funding + realised PnL - fees - ADL charges
    open: jax.Array  # (units,) bool
    gap: jax.Array  # (units,) equity - MM at the previous step
    cooldown_until: jax.Array  # (units,) int32, no liquidation before this step (partial paths)
    pending: jax.Array  # (units,) int32, step a delayed liquidation executes at (0 = none)
    realised_var: jax.Array  # (assets,) EWMA of squared step log returns (depth decay)
    ring: jax.Array  # (window, assets) recent index values (circuit breaker; (1, assets) if none)
    halt_until: jax.Array  # () int32, liquidations halted before this step
    vault_size: jax.Array  # (assets,) positions the backstop vault took over


class State(NamedTuple):
    """The hard engine's carry. The market and book fields also read through (``state.x``,
    ``state.collateral``): the relaxed engine starts its own carry from them."""

    draws: jax.Array  # this step's random inputs, flat (``model.draw``)
    market: MarketState
    book: BookState
    acct: UnitAccounts  # (units,) running sums per unit
    venue: VenueAccounts  # () running sums for the venue
    cascade: CascadeState | None  # cascade bookkeeping (None without a cascade section)


for _part, _cls in (("market", MarketState), ("book", BookState)):
    for _f in _cls._fields:
        setattr(State, _f, property(lambda self, p=_part, f=_f: getattr(getattr(self, p), f)))


def margin(model: RiskModel, P: Positions, size, mark, collateral):
    """Equity, maintenance margin (units,) and each position's marginal MMR (positions,) at ``mark``."""
    mark_p = P.at_asset(mark)
    mm, rate = model.ladder.maintenance_and_rate(jnp.abs(size) * mark_p, P.asset)
    equity = collateral + P.unit_sum(size * (mark_p - P.entry))
    return equity, P.unit_sum(mm), rate


def reference_var(model: RiskModel):
    """Per-step variance of log returns the depth model is quoted at (the model's diffusion)."""
    return (model.prices.vol**2 * model.grid.dt_years).astype(model.dtype)


def initial_state(model: RiskModel, P: Positions, path_key) -> State:
    """The carry at t = 0 of the path keyed ``path_key``."""
    dtype = model.dtype
    s0 = model.prices.s0
    basis0 = model.basis.mean.astype(dtype)
    mark_state, mark0 = model.mark.init(s0, basis0)
    equity0, mm0, _ = margin(model, P, P.size, mark0, model.book.collateral)
    iu, i0 = jnp.zeros((model.n_units,), jnp.int32), jnp.zeros((), jnp.int32)
    acct, venue = init_accounts(model.n_units, dtype)
    regime, ref = (None, None) if model.regimes is None else model.regimes.initial(dtype)
    market = MarketState(x=jnp.log(s0), v2=None if model.garch is None else model.garch.initial(s0), index=s0,
                         basis=basis0, mark_state=mark_state, mark=mark0, regime=regime, ref=ref,
                         premium_sum=jnp.zeros_like(s0), bar=bar_init(s0) if model.prices.bar_steps > 1 else None)
    book = BookState(size=P.size, collateral=model.book.collateral, open=jnp.any(model.book.size != 0, axis=-1),
                     gap=equity0 - mm0, cooldown_until=iu, pending=iu, realised_var=reference_var(model),
                     ring=model.breaker.init(s0) if model.breaker is not None else s0[None], halt_until=i0,
                     vault_size=jnp.zeros_like(s0))
    return State(draws=draw(model, path_key, jnp.int32(1)), market=market, book=book, acct=acct, venue=venue,
                 cascade=None if model.cascade is None else cascade_init(jnp.log(s0), model.n_units, dtype))


def initial_equity(model: RiskModel):
    """Equity of each unit at t = 0, at the initial mark (USD)."""
    P = positions(model)
    _, mark0 = model.mark.init(model.prices.s0, model.basis.mean.astype(model.dtype))
    return margin(model, P, P.size, mark0, model.book.collateral)[0]


def market_step(model: RiskModel, P: Positions, d: dict, s, t, size) -> MarketStep:
    """Price -> oracle -> basis -> mark -> funding for step ``t``.

    ``d``: the step's draws by stream; ``s``: the previous step's market (a ``MarketState`` or any
    object with its fields); ``size``: (positions,) the open sizes (funding, crowding)."""
    step_s = model.grid.step_seconds
    sched = model.schedule
    stress = s.regime
    if sched is not None and sched.stress is not None:
        stress = (stress | sched.stress[t - 1]) if stress is not None else sched.stress[t - 1]
    x, v2, bar = price_step(model.prices, d, s.x, s.v2, stress, t, model.grid.dt_years, regimes=model.regimes,
                            garch=model.garch, schedule=sched, bar=getattr(s, "bar", None))
    true_price = jnp.exp(x)
    index = model.oracle.observe(t, true_price, s.index)
    if sched is not None and sched.frozen is not None:
        index = jnp.where(sched.frozen[t - 1], s.index, index)
    basis = s.basis
    if model.basis.moves:
        imbalance = None
        if model.basis.crowding is not None:
            onehot = P.asset_onehot(size.dtype)
            gross0 = jnp.maximum(exact_dot(jnp.abs(P.size), onehot) * model.prices.s0, 1e-30)
            imbalance = exact_dot(size, onehot) * s.mark / gross0
        basis = model.basis.step(s.basis, d[R.BASIS] if model.basis.stochastic else None, step_s, imbalance)
    mark_state, mark = model.mark.update(s.mark_state, index, basis, step_s)
    regime, level_ref = s.regime, s.ref
    if model.regimes is not None:
        level = jnp.mean(x - jnp.log(model.prices.s0))
        u = d[R.REGIME][0] if model.regimes.switch == "markov" else None
        regime, level_ref = model.regimes.next(s.regime, u, level, s.ref)
    premium_sum, payment = s.premium_sum, jnp.zeros((P.n_units,), mark.dtype)
    if model.funding.enabled:
        fd = model.funding
        premium_sum = premium_sum + fd.sample_weight(t, basis.dtype) * basis
        pay = fd.is_payment_step(t)
        rate = fd.rate(premium_sum / fd.weight_total)
        ref = mark if fd.price == "mark" else index
        payment = jnp.where(pay, P.unit_sum(size * P.at_asset(ref * rate)), 0.0)
        premium_sum = jnp.where(pay, 0.0, premium_sum)
    return MarketStep(x=x, v2=v2, index=index, basis=basis, mark_state=mark_state, mark=mark, regime=regime,
                      ref=level_ref, premium_sum=premium_sum, bar=bar, true_price=true_price, stress=stress,
                      payment=payment)


def market_covariance(model: RiskModel, prev: MarketState, m: MarketStep):
    """The diffusion covariance of the step ``prev -> m`` as ``(cov, sd)`` (``paths.step_covariance``): at
    the step's GARCH variance ratio (before the step), regime and, inside a bar, the bar's bridge rate."""
    return step_covariance(model.prices, model.grid.dt_years, prev.v2, m.stress, regimes=model.regimes,
                           garch=model.garch, bar=m.bar)
