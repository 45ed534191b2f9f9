"""The simulation engine: one jitted kernel over a chunk of paths, and a chunk driver.

Pipeline per step (DOMAIN.md): price paths -> oracle -> basis -> mark ->
funding -> margin check (tiered, cross) -> liquidation (full close) -> record.
State that depends on the path (open units, collateral after funding,
liquidation step, insurance fund level) lives in the scan carry.

Randomness is keyed by position: path ``i`` uses ``fold_in(key, i)``, step
``t`` uses ``fold_in(path_key, t)``, and each component draws from its own
sub-key of that. A path's result therefore does not depend on how paths are
chunked.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import random as R
from .guardrails import CircuitBreaker
from .insurance import Cover, cover_bad_debt
from .liquidation import Fills, Liquidation, bridge_cross_probability
from .margin import Book, Ladder
from .market import Basis, Funding, MarkPrice, Oracle
from .paths import PriceModel, TimeGrid
from .sparse import DEFAULT_CAPACITY, where_active
from .stress import (
    CASCADE_EDGES,
    CascadeMonitor,
    CascadeState,
    Garch,
    Impact,
    Regimes,
    Schedule,
    cascade_finish,
    cascade_init,
    cascade_update,
)


class RiskModel(eqx.Module):
    """Everything one simulation needs: market, venue rules and the book."""

    grid: TimeGrid
    prices: PriceModel
    oracle: Oracle
    basis: Basis
    mark: MarkPrice
    funding: Funding
    ladder: Ladder
    book: Book
    liquidation: Liquidation
    insurance_fund: jax.Array
    breaker: CircuitBreaker | None = None
    impact: Impact | None = None  # permanent impact of forced flow (cascade feedback)
    cascade: CascadeMonitor | None = None  # cascade episode metrics
    regimes: Regimes | None = None  # calm / stress correlation
    garch: Garch | None = None  # volatility clustering
    schedule: Schedule | None = None  # deterministic scenario inputs (shocks, replay, bursts, freezes)

    def __check_init__(self):
        n = self.prices.n_assets
        for name, arr in (("basis.mean", self.basis.mean), ("ladder.floors", self.ladder.floors[:, 0]),
                          ("book.size", self.book.size[0]), ("depth.depth_usd", self.liquidation.depth.depth_usd)):
            if arr.shape[-1] != n:
                raise ValueError(f"{name}: has {arr.shape[-1]} assets, the price model has {n}")
        if self.liquidation.bridge and not self.mark.has_brownian_part:
            raise ValueError("liquidation.bridge: the bridge needs a mark with a Brownian part "
                             "(mark.kind 'index' or 'premium_ema'); an EMA of the index has none")
        if self.liquidation.bridge and self.oracle.update_every != 1:
            raise ValueError("liquidation.bridge: a stale oracle (update_every > 1) is piecewise constant; "
                             "the bridge needs update_every = 1")
        if self.liquidation.bridge and (self.regimes is not None or self.garch is not None or
                                        self.schedule is not None):
            raise ValueError("liquidation.bridge: the crossing probability uses the model's constant covariance; "
                             "not with regimes, garch or a scenario schedule")
        if self.impact is not None and self.cascade is None:
            raise ValueError("cascade: price impact needs the cascade monitor")
        if self.schedule is not None and self.schedule.replace and (self.garch is not None or
                                                                    self.regimes is not None):
            raise ValueError("replay: the replayed path is the price; garch and regimes do not apply")
        for name, a in (("regimes.stress_correlation", None if self.regimes is None else self.regimes.stress_factor),
                        ("garch.alpha", None if self.garch is None else self.garch.alpha),
                        ("schedule", None if self.schedule is None or self.schedule.log_return is None
                         else self.schedule.log_return)):
            if a is not None and a.shape[-1] != n:
                raise ValueError(f"{name}: has {a.shape[-1]} assets, the price model has {n}")
        if self.schedule is not None:
            for name, a in (("schedule.log_return", self.schedule.log_return), ("schedule.depth", self.schedule.depth),
                            ("schedule.frozen", self.schedule.frozen), ("schedule.stress", self.schedule.stress)):
                if a is not None and a.shape[0] != self.grid.n_steps:
                    raise ValueError(f"{name}: has {a.shape[0]} steps, the grid has {self.grid.n_steps}")

    @property
    def dtype(self):
        return self.prices.s0.dtype

    @property
    def n_units(self) -> int:
        return self.book.n_units


def _draw_spec(model: RiskModel) -> tuple:
    """Every stream one step draws, in one static layout (see ``random.draw``)."""
    a = model.prices.n_assets
    replay = model.schedule is not None and model.schedule.replace
    spec = () if replay else model.prices.draw_spec()
    spec += ((R.BASIS, a, "normal"),) if model.basis.stochastic else ()
    spec += ((R.REGIME, 1, "uniform"),) if model.regimes is not None and model.regimes.switch == "markov" else ()
    spec += ((R.BRIDGE, model.n_units, "uniform"),) if model.liquidation.bridge else ()
    return spec


def _draw(model: RiskModel, path_key, t):
    """Step ``t``'s random inputs as one flat vector. The engine draws a step ahead and
    carries it: a carried value is materialised, whereas fused consumers (the correlation
    mat-vec, the margin of every unit) would recompute the draws once per use on CPU."""
    return R.draw(path_key, t, _draw_spec(model), model.dtype)


class _State(NamedTuple):
    draws: jax.Array  # this step's random inputs, flat (see _draw)
    x: jax.Array  # log true price (assets,)
    index: jax.Array  # oracle (assets,)
    basis: jax.Array  # (assets,)
    mark_state: jax.Array  # (assets,)
    premium_sum: jax.Array  # weighted premium samples this interval (assets,)
    mark: jax.Array  # mark of the previous step (assets,)
    size: jax.Array  # (positions,) signed size still open
    collateral: jax.Array  # (units,) USD: deposits - funding + realised PnL - fees - ADL charges
    open: jax.Array  # (units,) bool
    gap: jax.Array  # equity - MM at the previous step (units,)
    cooldown_until: jax.Array  # (units,) int32, no liquidation before this step (partial paths)
    pending: jax.Array  # (units,) int32, step a delayed liquidation executes at (0 = none)
    realised_var: jax.Array  # (assets,) EWMA of squared step log returns (depth decay)
    ring: jax.Array  # (window, assets) recent index values (circuit breaker; (1, assets) if none)
    halt_until: jax.Array  # () int32, liquidations halted before this step
    vault_size: jax.Array  # (assets,) positions the backstop vault took over
    acct: UnitAccounts  # (units,) running sums per unit
    venue: VenueAccounts  # () running sums for the venue
    v2: jax.Array | None  # (assets,) GARCH variance ratio (None without garch)
    regime: jax.Array | None  # () bool, stress regime for this step (None without regimes)
    ref: jax.Array | None  # () EWMA of the market's log level (shock switch)
    cascade: CascadeState | None  # cascade bookkeeping (None without a cascade section)


class UnitAccounts(NamedTuple):
    """Per-unit running sums of a path: every term of the unit's equity change.

    equity_T - equity_0 = mtm - funding_paid + basis - slippage - fee + bad_debt - adl_charge - backstop
    (checked by the conservation tests). ``basis`` and ``mtm`` are kept only with
    ``liquidation.ledger`` on: they are audit terms, and every per-unit running sum
    costs a read and a write of the carry per step (~12 ns per path-step each, measured).
    """

    liq_step: jax.Array  # int32, step of the first liquidation, 0 = never
    liq_events: jax.Array  # int32, liquidations (partial or full)
    fee: jax.Array  # liquidation fees paid (to the insurance fund)
    bad_debt: jax.Array  # equity below zero written off
    liq_notional: jax.Array  # notional filled by liquidations
    slippage: jax.Array  # cost of forced fills vs mid
    basis: jax.Array  # value of filling at mid rather than at mark (ledger only)
    funding_paid: jax.Array
    adl_charge: jax.Array  # paid to cover others' bad debt (auto-deleveraging)
    mtm: jax.Array  # mark-to-market PnL of the positions held (ledger only)
    backstop: jax.Array  # equity handed to the backstop vault with the positions
    over_notional: jax.Array  # notional liquidated beyond the minimum that restored MM (fairness)
    excess_cost: jax.Array  # slippage + fee beyond the minimum close's (fairness)
    artefacts: jax.Array  # int32, liquidations executed while mark (or index) showed a healthy account


class VenueAccounts(NamedTuple):
    """Venue-level running sums of a path (scalars)."""

    fund: jax.Array  # insurance-fund change so far (USD): fees in, bad debt paid out
    fund_min: jax.Array  # running minimum of ``fund``
    fund_paid: jax.Array  # bad debt paid by the fund
    adl: jax.Array  # bad debt covered by ADL charges
    adl_events: jax.Array  # int32, steps with an ADL
    uncovered: jax.Array  # bad debt neither the fund nor ADL covered
    backstop_pnl: jax.Array  # backstop vault: equity received + mark-to-market of its positions
    backstop_events: jax.Array  # int32
    breaker_fires: jax.Array  # int32, circuit-breaker halts
    throttled_steps: jax.Array  # int32, steps where the throttle cut forced flow
    stress_steps: jax.Array  # int32, steps spent in the stress regime


class PathOutcome(NamedTuple):
    """Per-path results of one chunk (leading dim: paths)."""

    loss: jax.Array  # (paths, units) initial equity - final equity (USD)
    acct: UnitAccounts  # each (paths, units)
    venue: VenueAccounts  # each (paths,)
    log_return: jax.Array  # (paths, assets) log of final / initial true price
    cascade: CascadeState | None  # each (paths, ...) when cascades are monitored


class _Positions(NamedTuple):
    """The book as a flat list of open positions: the kernels' layout (built once per trace).

    Positions are ordered by how many positions their unit holds, then by unit,
    so the units holding k positions own one contiguous block of k * n_k
    entries. A per-unit sum is then a reshape-and-sum per block plus one static
    permutation back to book order: O(positions), exact, no scatter and no
    dense unit x position matrix (a 10,000-account book stays cheap). Small
    books (units x positions <= 4096) use a 0/1 matrix product instead, which
    XLA fuses into the step (measured 222 vs 255 ns per path-step on the
    default book, 2-core CPU).
    """

    unit: np.ndarray  # (positions,) int32, book index of each position's unit
    asset: np.ndarray  # (positions,) int32
    size: jax.Array  # (positions,) signed size at t = 0
    entry: jax.Array  # (positions,)
    blocks: tuple  # ((k, n_units_with_k), ...) in layout order, k = 0 first
    to_book: np.ndarray  # (units,) position of each book unit in the block-ordered sums
    n_units: int
    n_assets: int

    def unit_sum(self, x):
        """(positions,) -> (units,) sums, in book order."""
        if len(self.unit) * self.n_units <= 4096:  # small book: one fused 0/1 mat-vec
            onehot = (self.unit[:, None] == np.arange(self.n_units)[None, :]).astype(x.dtype)
            return _exact_dot(x, onehot)
        parts, off = [], 0
        for k, n in self.blocks:
            if k == 0:
                parts.append(jnp.zeros((n,), x.dtype))
                continue
            parts.append(x[off:off + k * n].reshape(n, k).sum(axis=-1))
            off += k * n
        return jnp.concatenate(parts)[self.to_book]

    def at_asset(self, x):
        """(assets,) -> (positions,): each position's value of its asset. A 0/1 product rather than
        a gather: gathers are slow under vmap on CPU (13 % of the default step, measured)."""
        return _spread(x, self.asset_onehot(jnp.float32 if x.dtype == bool else x.dtype).T)

    def at_unit(self, x):
        """(units,) -> (positions,): each position's value of its unit (a 0/1 product, see ``at_asset``)."""
        dt = jnp.float32 if x.dtype == bool else x.dtype
        return _spread(x, jnp.asarray(self.unit[None, :] == np.arange(self.n_units)[:, None], dt))

    def asset_onehot(self, dtype):
        """(positions, assets) 0/1: which asset each position is in."""
        return jnp.asarray(self.asset[:, None] == np.arange(self.n_assets)[None, :], dtype)

    def by_unit_and_asset(self, x):
        """(positions,) -> (units, assets), zero where a unit holds no position."""
        flat = jax.ops.segment_sum(x, self.unit * self.n_assets + self.asset,
                                   num_segments=self.n_units * self.n_assets)
        return flat.reshape(self.n_units, self.n_assets)


def _exact_dot(x, m):
    """``x @ m`` at full float precision (accelerators may otherwise round float32 products to TF32)."""
    return jnp.matmul(x, m, precision=jax.lax.Precision.HIGHEST)


def _spread(x, m):
    """Pick entries of ``x`` by a 0/1 matrix with one 1 per column (exact: adds zeros only)."""
    if x.dtype == bool:
        return _exact_dot(x.astype(m.dtype), m) > 0.5
    return _exact_dot(x, m)


def _positions(model: RiskModel) -> _Positions:
    b = model.book
    pu, pa = b.pos_unit, b.pos_asset
    counts = np.bincount(pu, minlength=b.n_units)
    order = np.lexsort((pa, pu, counts[pu]))  # by positions-per-unit, then unit, then asset
    pu, pa = pu[order], pa[order]
    unit_order = np.lexsort((np.arange(b.n_units), counts))  # block-ordered units
    blocks = tuple((int(k), int(np.sum(counts == k))) for k in np.unique(counts))
    to_book = np.empty(b.n_units, np.int32)
    to_book[unit_order] = np.arange(b.n_units, dtype=np.int32)
    return _Positions(pu, pa, b.size[pu, pa], b.entry[pu, pa], blocks, to_book, b.n_units, model.prices.n_assets)


def _margin(model: RiskModel, P: _Positions, size, mark, collateral):
    """Equity, maintenance margin (units,) and each position's marginal MMR (positions,)."""
    mark_p = P.at_asset(mark)
    mm, rate = model.ladder.maintenance_and_rate(jnp.abs(size) * mark_p, P.asset)
    equity = collateral + P.unit_sum(size * (mark_p - P.entry))
    return equity, P.unit_sum(mm), rate


def initial_state(model: RiskModel, P: _Positions, path_key) -> _State:
    dtype = model.dtype
    s0 = model.prices.s0
    units = model.n_units
    basis0 = model.basis.mean.astype(dtype)
    mark_state, mark0 = model.mark.init(s0, basis0)
    equity0, mm0, _ = _margin(model, P, P.size, mark0, model.book.collateral)
    zu, iu, z = jnp.zeros((units,), dtype), jnp.zeros((units,), jnp.int32), jnp.zeros((), dtype)
    i0 = jnp.zeros((), jnp.int32)
    acct = UnitAccounts(liq_step=iu, liq_events=iu, fee=zu, bad_debt=zu, liq_notional=zu, slippage=zu, basis=zu,
                        funding_paid=zu, adl_charge=zu, mtm=zu, backstop=zu, over_notional=zu, excess_cost=zu,
                        artefacts=iu)
    venue = VenueAccounts(fund=z, fund_min=z, fund_paid=z, adl=z, adl_events=i0, uncovered=z, backstop_pnl=z,
                          backstop_events=i0, breaker_fires=i0, throttled_steps=i0, stress_steps=i0)
    ring = model.breaker.init(s0) if model.breaker is not None else s0[None]
    return _State(
        draws=_draw(model, path_key, jnp.int32(1)), x=jnp.log(s0), index=s0, basis=basis0,
        mark_state=mark_state, premium_sum=jnp.zeros_like(s0), mark=mark0,
        size=P.size, collateral=model.book.collateral, open=jnp.any(model.book.size != 0, axis=-1),
        gap=equity0 - mm0, cooldown_until=iu, pending=iu, realised_var=_reference_var(model), ring=ring,
        halt_until=i0, vault_size=jnp.zeros_like(s0), acct=acct, venue=venue,
        v2=None if model.garch is None else jnp.ones_like(s0),
        regime=None if model.regimes is None else jnp.zeros((), bool),
        ref=None if model.regimes is None else jnp.zeros((), dtype),
        cascade=None if model.cascade is None else cascade_init(jnp.log(s0), units, dtype))


def _reference_var(model: RiskModel):
    """Per-step variance of log returns the depth model is quoted at (the model's diffusion)."""
    return (model.prices.vol**2 * model.grid.dt_years).astype(model.dtype)


def initial_equity(model: RiskModel):
    """Equity of each unit at t = 0, at the initial mark (USD)."""
    P = _positions(model)
    _, mark0 = model.mark.init(model.prices.s0, model.basis.mean.astype(model.dtype))
    return _margin(model, P, P.size, mark0, model.book.collateral)[0]


def _simple_full(liq: Liquidation) -> bool:
    """Full closes only, nothing that moves positions otherwise (ADL, backstop, throttle)."""
    return liq.mode == "full" and not (liq.adl or liq.backstop or liq.throttled)


def _counts_events(liq: Liquidation) -> bool:
    """Whether a unit can be liquidated more than once (else events = first-liquidation flag)."""
    return liq.mode != "full" or liq.throttled


class _Market(NamedTuple):
    """One step of the market, before any margin check (shared by the hard and the relaxed engine)."""

    x: jax.Array  # log true price after the exogenous move
    v2: jax.Array | None
    true_price: jax.Array
    index: jax.Array
    basis: jax.Array
    mark_state: jax.Array
    mark: jax.Array
    stress: jax.Array | None  # regime this step
    regime: jax.Array | None  # regime next step
    ref: jax.Array | None
    premium_sum: jax.Array
    payment: jax.Array  # (units,) funding paid this step


def _market_step(model: RiskModel, P: _Positions, d: dict, s, t, size) -> _Market:
    """Price -> oracle -> basis -> mark -> funding for step ``t``. ``s`` holds the previous step's
    ``x, v2, index, basis, mark_state, mark, regime, ref, premium_sum``; ``size`` the open sizes."""
    step_s = model.grid.step_seconds
    sched = model.schedule
    stress = s.regime
    if sched is not None and sched.stress is not None:
        stress = (stress | sched.stress[t - 1]) if stress is not None else sched.stress[t - 1]
    x, v2 = _price_step(model, d, s, stress, t, model.grid.dt_years)
    true_price = jnp.exp(x)
    index = model.oracle.observe(t, true_price, s.index)
    if sched is not None and sched.frozen is not None:
        index = jnp.where(sched.frozen[t - 1], s.index, index)
    basis = s.basis
    if model.basis.moves:
        imbalance = None
        if model.basis.crowding is not None:
            onehot = P.asset_onehot(size.dtype)
            gross0 = jnp.maximum(_exact_dot(jnp.abs(P.size), onehot) * model.prices.s0, 1e-30)
            imbalance = _exact_dot(size, onehot) * s.mark / gross0
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
    return _Market(x, v2, true_price, index, basis, mark_state, mark, stress, regime, level_ref, premium_sum,
                   payment)


def _liquidate(o):
    """Execute the triggered units' liquidations, then cover their bad debt (fund, then ADL)."""
    liq, ladder, P, market, collateral, size, mid, mark_p, dfac, scale, fund0, fund = o
    f = liq.execute(market, collateral, size, P.entry, P.at_asset(mid), mark_p, P.asset, P.at_unit, P.unit_sum, ladder,
                    dfac=dfac, scale=scale)
    # The fund pays from its balance after this step's fees reach it.
    c = cover_bad_debt(f.bad_debt, fund0 + (fund + jnp.sum(f.fee)), adl=liq.adl, bankrupt=f.full & (f.bad_debt > 0),
                       size_before=size, size=f.size, collateral=f.collateral, entry=P.entry, mark=mark_p,
                       asset_onehot=P.asset_onehot(mark_p.dtype), unit=P.unit, unit_sum=P.unit_sum)
    return f, c


def _no_liquidation(o):
    """What ``_liquidate`` returns when no unit executes (exactly: nothing moves)."""
    _, _, _, market, collateral, size, *_ = o
    z, z0 = jnp.zeros_like(collateral), jnp.zeros((), collateral.dtype)
    return (Fills(size=size, collateral=collateral, fee=z, bad_debt=z, notional=z, slippage=z, basis=z,
                  full=jnp.zeros_like(market), over_notional=z, excess_cost=z),
            Cover(fund_paid=z0, charge=z, size=size, collateral=collateral, uncovered=z0))


def _step(model: RiskModel, P: _Positions, path_key, s: _State, t, sparse: float = DEFAULT_CAPACITY):
    grid, liq, sched = model.grid, model.liquidation, model.schedule
    dt = grid.dt_years
    d = R.split(s.draws, _draw_spec(model))
    A = s.acct
    # A full close empties a unit at once: its sizes are the book's while it is open, so the
    # carry need not hold them (one (positions,) read + write less per step).
    size = size_in = P.size * P.at_unit(s.open) if _simple_full(liq) else s.size
    m = _market_step(model, P, d, s, t, size)
    x, v2, true_price, index, basis, mark_state, mark = m.x, m.v2, m.true_price, m.index, m.basis, m.mark_state, m.mark
    stress, regime, level_ref, premium_sum = m.stress, m.regime, m.ref, m.premium_sum
    mark_p = P.at_asset(mark)
    mtm = A.mtm + P.unit_sum(size * P.at_asset(mark - s.mark)) if liq.ledger else A.mtm
    collateral, funding_paid = s.collateral - m.payment, A.funding_paid + m.payment

    equity, mm, mmr_marginal = _margin(model, P, size, mark, collateral)
    gap = equity - mm
    below = gap < 0
    if liq.check_every > 1:
        below = below & (t % liq.check_every == 0)
    trigger = s.open & below
    if liq.bridge:
        # Sensitivity of the gap to each asset's log price, and its variance over one step.
        g = P.by_unit_and_asset((size - jnp.abs(size) * mmr_marginal) * mark_p)
        var = jnp.einsum("ua,ab,ub->u", g, model.prices.covariance() * dt, g)
        p_cross = bridge_cross_probability(s.gap, gap, var)
        trigger = trigger | (s.open & (d[R.BRIDGE] < p_cross))
    if liq.cooldown:
        trigger = trigger & (t >= s.cooldown_until)
    ti = t.astype(jnp.int32)
    V = s.venue
    ring, halt_until, fired = s.ring, s.halt_until, jnp.zeros((), bool)
    if model.breaker is not None:
        ring, halt_until, fired = model.breaker.update(s.ring, index, ti, s.halt_until)
    halted = ti < halt_until
    if liq.delay:
        pending = jnp.where(trigger & (s.pending == 0), ti + liq.delay, s.pending)
        execute = s.open & (pending <= ti) & (pending > 0) & ~halted
        pending = jnp.where(execute | ~s.open, 0, pending)
    else:
        pending = s.pending
        execute = trigger & ~halted

    mid = true_price * (1.0 + basis)
    realised_var, dfac_a = s.realised_var, None  # dfac_a: (assets,) fraction of quoted depth left
    if liq.depth.vol_elasticity:
        r = x - s.x
        a_v = 0.5 ** (1.0 / liq.depth.vol_halflife_steps)
        realised_var = a_v * s.realised_var + (1.0 - a_v) * r * r
        dfac_a = liq.depth.depth_factor(realised_var, _reference_var(model))
    if sched is not None and sched.depth is not None:
        dfac_a = sched.depth[t - 1] if dfac_a is None else dfac_a * sched.depth[t - 1]
    if model.regimes is not None:
        rf = jnp.where(stress, model.regimes.depth_factor, 1.0)
        dfac_a = rf if dfac_a is None else dfac_a * rf
    dfac = None if dfac_a is None else P.at_asset(jnp.broadcast_to(dfac_a, mark.shape))

    # Backstop: units far below maintenance go to the vault at mark, with what equity they have.
    vault_size, backstop_pnl = s.vault_size, V.backstop_pnl
    if liq.backstop:
        backstop_pnl = backstop_pnl + jnp.sum(s.vault_size * (mark - s.mark))
    take = jnp.zeros_like(execute)
    if liq.backstop:
        take = execute & (equity < liq.backstop_ratio * mm)
        take_p = P.at_unit(take)
        vault_size = vault_size + _exact_dot(jnp.where(take_p, size, 0.0), P.asset_onehot(size.dtype))
        backstop_pnl = backstop_pnl + jnp.sum(jnp.where(take, equity, 0.0))
        size = jnp.where(take_p, 0.0, size)
        collateral = jnp.where(take, 0.0, collateral)
    market = execute & ~take
    scale, throttled = None, jnp.zeros((), bool)
    if liq.throttled:
        want = jnp.sum(jnp.where(market, P.unit_sum(jnp.abs(size) * mark_p), 0.0))
        scale = jnp.minimum(1.0, liq.throttle / jnp.maximum(want, 1e-30))
        throttled = scale < 1.0
    # Forced execution and its cover run only on the paths that liquidate this step (``sparse.py``).
    fund = V.fund
    f, c = where_active(jnp.any(market), _liquidate, _no_liquidation,
                        (liq, model.ladder, P, market, collateral, size, mid, mark_p, dfac, scale,
                         model.insurance_fund, fund), capacity=sparse)
    artefact = jnp.zeros_like(execute)
    if liq.fairness:
        # Liquidated while the account looked healthy: on the mark at execution (a delayed order after
        # a rebound) or on the index (the mark's smoothing lagged the recovery).
        eq_i, mm_i, _ = _margin(model, P, size_in, index, collateral)
        artefact = execute & ((gap >= 0) | (eq_i >= mm_i))
    fund = fund + jnp.sum(f.fee) - c.fund_paid
    x_next, casc = x, s.cascade
    if model.cascade is not None:
        move = jnp.zeros_like(x)
        if model.impact is not None:
            # Net forced flow per asset (+ = buys): market fills and ADL closes; backstop takeovers
            # move positions to the vault off the book and carry no flow.
            flow = _exact_dot(c.size - size, P.asset_onehot(size.dtype)) * mid
            depth = liq.depth.depth_usd if dfac_a is None else liq.depth.depth_usd * dfac_a
            move = model.impact.log_move(flow, depth)
            x_next = x + move
        casc = cascade_update(model.cascade, s.cascade, ti, x, move, execute, jnp.sum(f.notional))
    acct = UnitAccounts(
        liq_step=jnp.where(execute & (A.liq_step == 0), ti, A.liq_step),
        liq_events=A.liq_events + execute.astype(jnp.int32) if _counts_events(liq) else A.liq_events,
        fee=A.fee + f.fee, bad_debt=A.bad_debt + f.bad_debt,
        liq_notional=A.liq_notional + f.notional, slippage=A.slippage + f.slippage,
        basis=A.basis + f.basis if liq.ledger else A.basis,
        funding_paid=funding_paid, mtm=mtm if liq.ledger else A.mtm,
        # Optional terms pass through untouched when their mechanism is off: no per-step traffic.
        adl_charge=A.adl_charge + c.charge if liq.adl else A.adl_charge,
        backstop=A.backstop + jnp.where(take, equity, 0.0) if liq.backstop else A.backstop,
        over_notional=A.over_notional + f.over_notional if liq.fairness else A.over_notional,
        excess_cost=A.excess_cost + f.excess_cost if liq.fairness else A.excess_cost,
        artefacts=A.artefacts + artefact.astype(jnp.int32) if liq.fairness else A.artefacts)
    # Mechanisms that are off leave their sums untouched (no per-step work).
    venue = VenueAccounts(
        fund=fund, fund_min=jnp.minimum(V.fund_min, fund), fund_paid=V.fund_paid + c.fund_paid,
        adl=V.adl + jnp.sum(c.charge) if liq.adl else V.adl,
        adl_events=V.adl_events + (jnp.sum(c.charge) > 0) if liq.adl else V.adl_events,
        uncovered=V.uncovered + c.uncovered, backstop_pnl=backstop_pnl,
        backstop_events=V.backstop_events + jnp.sum(take) if liq.backstop else V.backstop_events,
        breaker_fires=V.breaker_fires + fired if model.breaker is not None else V.breaker_fires,
        throttled_steps=V.throttled_steps + throttled if liq.throttled else V.throttled_steps,
        stress_steps=V.stress_steps + stress if stress is not None else V.stress_steps)
    new = _State(
        draws=_draw(model, path_key, t + 1), x=x_next, index=index, basis=basis, mark_state=mark_state,
        premium_sum=premium_sum, mark=mark, size=s.size if _simple_full(liq) else c.size,
        collateral=c.collateral,
        # Full closes without ADL or backstop empty exactly the executed units.
        open=(s.open & ~execute) if _simple_full(liq) else P.unit_sum(jnp.abs(c.size)) > 0, gap=gap,
        cooldown_until=jnp.where(market & ~f.full, ti + liq.cooldown, s.cooldown_until) if liq.cooldown
        else s.cooldown_until,
        pending=pending, realised_var=realised_var, ring=ring, halt_until=halt_until, vault_size=vault_size,
        acct=acct, venue=venue, v2=v2, regime=regime, ref=level_ref, cascade=casc)
    # The carry keeps its dtypes (float32 stays float32 when x64 is enabled).
    return jax.tree_util.tree_map(lambda a, b: a.astype(b.dtype), new, s)


def _price_step(model: RiskModel, d: dict, s, stress, t, dt):
    """Log true price after this step's exogenous move, and the next GARCH variance ratio.

    ``s`` needs ``x`` and ``v2`` (a ``_State``); ``stress``: this step's regime (None without regimes)."""
    sched, pm = model.schedule, model.prices
    if sched is not None and sched.replace:
        return s.x + sched.log_return[t - 1], s.v2
    draw = pm.draw_from(d)
    factor = scale = None
    if model.regimes is not None:
        factor = jnp.where(stress, model.regimes.stress_factor, pm.factor)
        scale = jnp.where(stress, model.regimes.vol_multiplier, 1.0)
    v2 = s.v2
    if model.garch is not None:
        scale = jnp.sqrt(s.v2) if scale is None else scale * jnp.sqrt(s.v2)
    inn = pm.innovation_from(draw, factor)
    r = pm.log_return_from(draw, dt, scale=scale, innovation=inn)
    if model.garch is not None:
        # The GARCH sees the diffusion return without the stress regime's multiplier: fed back, the
        # multiplier m would make the variance grow whenever a (m^2 - 1) > 1 - a - b (no steady state).
        z = inn * jnp.sqrt(s.v2)  # diffusion return / (vol m sqrt(dt))
        v2 = model.garch.update(s.v2, z * z)
    if sched is not None and sched.log_return is not None:
        r = r + sched.log_return[t - 1]
    return s.x + r, v2


@eqx.filter_jit
def price_returns(model: RiskModel, key, start, count: int) -> jax.Array:
    """Per-step exogenous log returns, (count, steps, assets), of paths ``start .. start+count-1``:
    the market step of ``simulate`` (``_market_step``, same draws, GARCH, regimes and schedule) with
    the book held fixed, so no feedback. For checking the fitted market against data (``fit``)."""
    P = _positions(model)
    spec = _draw_spec(model)

    def path(pkey):
        h = initial_state(model, P, pkey)
        z = jnp.zeros((P.n_units,), h.collateral.dtype)
        m0 = _Market(h.x, h.v2, jnp.exp(h.x), h.index, h.basis, h.mark_state, h.mark, h.regime, h.regime, h.ref,
                     h.premium_sum, z)

        def step(m, t):
            mk = _market_step(model, P, R.split(_draw(model, pkey, t), spec), m, t, P.size)
            return mk, mk.x - m.x

        return jax.lax.scan(step, m0, jnp.arange(1, model.grid.n_steps + 1, dtype=jnp.int32))[1]

    return jax.vmap(path)(R.path_key(key, start + jnp.arange(count, dtype=jnp.uint32)))


def simulate_path(model: RiskModel, path_key, *, unroll: int = 1, sparse: float = DEFAULT_CAPACITY) -> PathOutcome:
    """Simulate one path (vmap this over path keys)."""
    P = _positions(model)
    s0 = initial_state(model, P, path_key)
    ts = jnp.arange(1, model.grid.n_steps + 1, dtype=jnp.int32)
    s, _ = jax.lax.scan(lambda c, t: (_step(model, P, path_key, c, t, sparse), None), s0, ts, unroll=unroll)
    casc = None if s.cascade is None else cascade_finish(s.cascade)
    size_T = P.size * s.open[P.unit] if _simple_full(model.liquidation) else s.size
    equity_T = s.collateral + P.unit_sum(size_T * (s.mark[P.asset] - P.entry))
    loss = initial_equity(model) - equity_T
    acct = s.acct
    if not _counts_events(model.liquidation):
        acct = acct._replace(liq_events=(acct.liq_step > 0).astype(jnp.int32))
    return PathOutcome(loss=loss, acct=acct, venue=s.venue, log_return=s.x - jnp.log(model.prices.s0), cascade=casc)


@eqx.filter_jit
def simulate_chunk(model: RiskModel, key, start, count: int, *, unroll: int = 1,
                   sparse: float = DEFAULT_CAPACITY) -> PathOutcome:
    """The jitted entry point: ``count`` paths starting at global path index ``start``.

    Args:
        model: the validated model.
        key: uint32[2] seed key (``random.seed_key(seed)``).
        start: index of the first path (uint32 scalar; a traced value, so chunks share one compile).
        count: number of paths (static).
        sparse: largest share of the chunk's paths whose liquidations run compacted at a step
            (``sparse.where_active``; 0 runs them densely). Results do not depend on it.
    """
    keys = R.path_key(key, start + jnp.arange(count, dtype=jnp.uint32))
    return jax.vmap(lambda k: simulate_path(model, k, unroll=unroll, sparse=sparse))(keys)


UnitPaths = NamedTuple("UnitPaths", [(f, np.ndarray) for f in (
    "loss", *UnitAccounts._fields, *(f"venue_{v}" for v in VenueAccounts._fields), "log_return")])
UnitPaths.__doc__ = "Per-path arrays of a run, flattened: (paths, units) per unit field, (paths,) venue_*."


def _flatten(out: PathOutcome) -> UnitPaths:
    return UnitPaths(out.loss, *out.acct, *out.venue, out.log_return)


class Outcome(NamedTuple):
    """Results of a whole run, reduced over chunks on the host (numpy, float64).

    Per-path venue quantities are kept (O(paths)); per-unit quantities are
    streamed as sums, so memory is bounded by the chunk, not paths x units.
    """

    n_paths: int
    n_steps: int
    liq_count: np.ndarray  # (units,) paths on which the unit was liquidated at least once
    liq_step_sum: np.ndarray  # (units,) sum of first-liquidation steps over those paths
    loss_sum: np.ndarray  # (units,)
    loss_sq_sum: np.ndarray
    bad_debt_sum: np.ndarray
    bad_debt_sq_sum: np.ndarray
    fee_sum: np.ndarray
    funding_sum: np.ndarray
    liq_events_sum: np.ndarray  # (units,) liquidation events (partial ones included)
    slippage_sum: np.ndarray
    adl_charge_sum: np.ndarray
    adl_count: np.ndarray  # (units,) paths on which the unit paid an ADL charge
    backstop_sum: np.ndarray  # (units,) equity handed to the backstop vault
    backstop_count: np.ndarray  # (units,) paths on which the vault took the unit over
    over_notional_sum: np.ndarray  # (units,) fairness: notional beyond the minimum
    excess_cost_sum: np.ndarray  # (units,) fairness: cost beyond the minimum's
    artefacts_sum: np.ndarray  # (units,) liquidations while the account looked healthy
    path_bad_debt: np.ndarray  # (paths,)
    path_trader_loss: np.ndarray  # (paths,)
    path_liq_notional: np.ndarray  # (paths,)
    path_n_liquidations: np.ndarray  # (paths,) units liquidated at least once
    path_liq_events: np.ndarray  # (paths,)
    path_fees: np.ndarray  # (paths,)
    path_slippage: np.ndarray  # (paths,)
    path_fund_min: np.ndarray  # (paths,) lowest insurance-fund change (<= 0)
    path_fund_paid: np.ndarray  # (paths,) bad debt the fund paid
    path_adl: np.ndarray  # (paths,) bad debt covered by ADL
    path_uncovered: np.ndarray  # (paths,) bad debt neither covered
    path_funding_net: np.ndarray  # (paths,) sum of funding paid by the book (to the rest of the market)
    path_backstop_pnl: np.ndarray  # (paths,) backstop vault PnL
    path_breaker_fires: np.ndarray  # (paths,)
    path_throttled_steps: np.ndarray  # (paths,)
    path_over_notional: np.ndarray  # (paths,)
    path_excess_cost: np.ndarray  # (paths,)
    path_log_return: np.ndarray  # (paths, assets)
    path_stress_steps: np.ndarray  # (paths,) steps in the stress regime
    # Cascades (zeros unless ``cascade_on``):
    cascade_on: bool
    cascade_starts_sum: np.ndarray  # (units,) liquidations in an episode's first round
    cascade_hist: np.ndarray  # (bins,) episodes by notional (stress.CASCADE_EDGES)
    path_drawdown: np.ndarray  # (paths, assets) max log drawdown of the price, with feedback
    path_drawdown_exog: np.ndarray  # (paths, assets) the same on the no-feedback path
    path_cascade_rounds: np.ndarray  # (paths,) most liquidation rounds chained in one episode
    path_cascade_max_notional: np.ndarray  # (paths,) largest episode notional
    path_cascade_episodes: np.ndarray  # (paths,)
    unit_paths: UnitPaths | None  # per-path per-unit arrays when requested


def _save_checkpoint(path, key: str, done: int, acc: dict, per_path: dict) -> None:
    from .io import atomic_write_npz

    arrays = {f"acc__{k}": v for k, v in acc.items()}
    arrays.update({f"path__{k}": np.concatenate(v) for k, v in per_path.items() if v})
    atomic_write_npz(path, key=np.asarray(key), done=np.asarray(done), **arrays)


def _load_checkpoint(path, key: str, acc: dict, per_path: dict) -> int:
    """Fill ``acc`` / ``per_path`` from a matching checkpoint; returns the first path still to run."""
    from pathlib import Path

    if not Path(path).exists():
        return 0
    with np.load(path) as z:
        if str(z["key"]) != key:
            raise ValueError(f"checkpoint: {path} belongs to another run (config, seed, paths or chunk size "
                             "differ); remove it or choose another output directory")
        for k in acc:
            acc[k][...] = z[f"acc__{k}"]
        for k in per_path:
            if f"path__{k}" in z:
                per_path[k].append(z[f"path__{k}"])
        return int(z["done"])


def carry_bytes_per_path(model: RiskModel) -> int:
    """Bytes of scan state one path carries (what a chunk keeps live at every step)."""
    P = _positions(model)
    s = jax.eval_shape(lambda: initial_state(model, P, jnp.zeros((2,), jnp.uint32)))
    return int(sum(np.prod(x.shape) * x.dtype.itemsize for x in jax.tree_util.tree_leaves(s)))


def auto_chunk_size(model: RiskModel, n_paths: int) -> int:
    """Paths per chunk: the carry of a chunk sized to stay cache-resident on CPU
    (~16 MB: big books run in small chunks, measured 1.4x faster for 2,000
    accounts) and to fill an accelerator (~2 GB). Results do not depend on it."""
    budget = 16 * 2**20 if jax.default_backend() == "cpu" else 2 * 2**30
    per_path = carry_bytes_per_path(model)
    cap = 25_000 if jax.default_backend() == "cpu" else 1_000_000
    most = int(max(64, min(cap, n_paths, budget // per_path)))
    # Equal chunks: the last one is padded to the chunk size, so split the run evenly.
    n_chunks = -(-n_paths // most)
    return -(-n_paths // n_chunks)


def simulate(model: RiskModel, *, seed: int, n_paths: int, chunk_size: int | str = "auto", unroll: int = 1,
             keep_unit_paths: bool = False, progress=None, checkpoint=None, fingerprint: str = "") -> Outcome:
    """Simulate ``n_paths`` paths in chunks and reduce them.

    The last chunk is padded to ``chunk_size`` (one compile for the whole run)
    and the padding dropped. ``progress(done, total)`` is called after each chunk.

    ``checkpoint``: a file the running reductions are written to (atomically) after
    every chunk. If it exists and carries the same ``fingerprint`` (config, seed,
    paths, chunk size), the run resumes after its last chunk: a killed run loses at
    most the chunk in flight, and the resumed result equals an uninterrupted one
    (chunks are keyed by path index). Not with ``keep_unit_paths``.
    """
    if n_paths < 1:
        raise ValueError(f"paths: must be >= 1 (got {n_paths})")
    if chunk_size == "auto":
        chunk_size = auto_chunk_size(model, n_paths)
    if not (isinstance(chunk_size, int) and chunk_size >= 1):
        raise ValueError(f"chunk_size: must be 'auto' or an integer >= 1 (got {chunk_size!r})")
    chunk = min(chunk_size, n_paths)
    key = R.seed_key(seed)
    units = model.n_units
    acc = {k: np.zeros(units) for k in Outcome._fields if k.endswith(("_sum", "_count"))}
    acc["cascade_hist"] = np.zeros(len(CASCADE_EDGES) + 1)
    per_path = {k: [] for k in Outcome._fields if k.startswith("path_")}
    kept = []
    first = 0
    if checkpoint is not None:
        if keep_unit_paths:
            raise ValueError("checkpoint: not supported with keep_unit_paths")
        first = _load_checkpoint(checkpoint, f"{fingerprint}|{n_paths}|{chunk}", acc, per_path)
        if progress is not None and first:
            progress(first, n_paths)
    for start in range(first, n_paths, chunk):
        n = min(chunk, n_paths - start)
        out = simulate_chunk(model, key, jnp.uint32(start), chunk, unroll=unroll)
        u = _flatten(jax.tree_util.tree_map(lambda a, n=n: np.asarray(a)[:n], out))
        f64 = {k: getattr(u, k).astype(np.float64) for k in UnitPaths._fields}
        liq = u.liq_step > 0
        acc["liq_count"] += liq.sum(0)
        acc["liq_step_sum"] += u.liq_step.sum(0)
        acc["loss_sum"] += f64["loss"].sum(0)
        acc["loss_sq_sum"] += (f64["loss"] ** 2).sum(0)
        acc["bad_debt_sum"] += f64["bad_debt"].sum(0)
        acc["bad_debt_sq_sum"] += (f64["bad_debt"] ** 2).sum(0)
        acc["fee_sum"] += f64["fee"].sum(0)
        acc["funding_sum"] += f64["funding_paid"].sum(0)
        acc["liq_events_sum"] += f64["liq_events"].sum(0)
        acc["slippage_sum"] += f64["slippage"].sum(0)
        acc["adl_charge_sum"] += f64["adl_charge"].sum(0)
        acc["adl_count"] += (u.adl_charge > 0).sum(0)
        acc["backstop_sum"] += f64["backstop"].sum(0)
        acc["backstop_count"] += (u.backstop != 0).sum(0)
        acc["over_notional_sum"] += f64["over_notional"].sum(0)
        acc["excess_cost_sum"] += f64["excess_cost"].sum(0)
        acc["artefacts_sum"] += f64["artefacts"].sum(0)
        for k, v in (("bad_debt", f64["bad_debt"].sum(1)), ("trader_loss", f64["loss"].sum(1)),
                     ("liq_notional", f64["liq_notional"].sum(1)), ("n_liquidations", liq.sum(1)),
                     ("liq_events", u.liq_events.sum(1)), ("fees", f64["fee"].sum(1)),
                     ("slippage", f64["slippage"].sum(1)), ("fund_min", f64["venue_fund_min"]),
                     ("fund_paid", f64["venue_fund_paid"]), ("adl", f64["venue_adl"]),
                     ("uncovered", f64["venue_uncovered"]), ("funding_net", f64["funding_paid"].sum(1)),
                     ("backstop_pnl", f64["venue_backstop_pnl"]), ("breaker_fires", u.venue_breaker_fires),
                     ("throttled_steps", u.venue_throttled_steps), ("over_notional", f64["over_notional"].sum(1)),
                     ("excess_cost", f64["excess_cost"].sum(1)),
                     ("log_return", f64["log_return"]), ("stress_steps", u.venue_stress_steps)):
            per_path[f"path_{k}"].append(v)
        c = out.cascade
        if c is not None:
            c = jax.tree_util.tree_map(lambda a, n=n: np.asarray(a)[:n], c)
            acc["cascade_starts_sum"] += c.starts.sum(0)
            acc["cascade_hist"] += c.hist.sum(0)
        zero_a = np.zeros((n, model.prices.n_assets))
        for k, v in (("drawdown", zero_a if c is None else c.drawdown),
                     ("drawdown_exog", zero_a if c is None else c.drawdown_exog),
                     ("cascade_rounds", np.zeros(n) if c is None else c.max_rounds),
                     ("cascade_max_notional", np.zeros(n) if c is None else c.max_notional),
                     ("cascade_episodes", np.zeros(n) if c is None else c.episodes)):
            per_path[f"path_{k}"].append(np.asarray(v, np.float64))
        if keep_unit_paths:
            kept.append(u)
        if checkpoint is not None:
            _save_checkpoint(checkpoint, f"{fingerprint}|{n_paths}|{chunk}", start + n, acc, per_path)
        if progress is not None:
            progress(start + n, n_paths)
    unit_paths = None
    if keep_unit_paths:
        unit_paths = UnitPaths(*(np.concatenate(xs) for xs in zip(*kept, strict=True)))
    return Outcome(n_paths=n_paths, n_steps=model.grid.n_steps, cascade_on=model.cascade is not None, **acc,
                   **{k: np.concatenate(v) for k, v in per_path.items()}, unit_paths=unit_paths)
