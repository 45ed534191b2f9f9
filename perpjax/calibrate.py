"""Tune maintenance-margin ladders by gradient.

A risk team states what it wants (little bad debt, a bounded probability that the insurance
fund loses more than a budget, little liquidation cost forced on traders, little margin locked
up) and the ladder's maintenance rates are fitted by gradient descent over simulated paths.

**Relaxed engine** (``soft_outcome``). The market step is the hard engine's own
(``engine._market_step``: prices, oracle, basis, mark, funding) on the same random numbers,
so a calibration sees exactly the paths ``simulate`` sees. The only hard event of a full close,
the first passage of equity below maintenance, is relaxed: at every check a unit is liquidated
with hazard ``h_t = sigmoid(-(equity_t - MM_t) / (tau * notional_t))``, survives with
``S_t = S_{t-1} (1 - h_t)``, and the liquidation-time density ``p_t = S_{t-1} h_t`` weights
what a full close at ``t`` would cost (``Liquidation.execute``: bad debt, fee, notional,
slippage). So ``P(liq) = 1 - S_T`` and ``E[bad debt] = sum_t p_t BD_t`` per path and unit; as
``tau -> 0`` these are the hard engine's (``tests/test_calibrate.py`` shows it). Tier selection
is ``MM(N) = max_k (N MMR_k - cum_k)``: piecewise linear in the rates, so gradients reach each
tier's rate and, through the continuity amount, the rates below it. The probability that the
fund's loss exceeds a budget ``X`` is smoothed as ``mean sigmoid((L - X) / (tau_L X))``.

**Parameterisation**: per asset, ``MMR_0 = lo_0 + softplus(theta_0)``,
``MMR_k = MMR_{k-1} + softplus(theta_k)`` (non-decreasing by construction), clipped to the
per-tier bounds ``[lo, hi]``; ``IMR = MMR x`` the base ladder's IMR/MMR ratio (> 1, so
MMR < IMR always); floors stay fixed and the continuity amounts are recomputed by the
recursion. Every iterate is a ladder a venue could publish (checked at every iteration).

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
(``over_liquidation``, ``excess_cost``), come from a bisection, piecewise constant in the
parameters; the relaxed engine gives them the exact root's gradient by the implicit function
theorem (``Liquidation.implicit_grad``), so the buffer and the fairness terms are tuned too.

**Scope**: no ADL, backstop, delay, throttle, cooldown or bridge, no depth decay, bursts or
circuit breaker, no cascade feedback or funding crowding: their state depends on which paths
liquidated, which neither relaxation follows. The before/after comparison always uses the hard
engine on fresh paths.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from . import random as R
from .config import schema
from .engine import RiskModel, draw, draw_spec, initial_state, margin, market_step, positions
from .margin import Ladder

# config section ``calibration`` and its objective: defaults from the schema (``schema.Calibration``)
KNOBS = schema.KNOBS
DEFAULTS = schema.defaults(schema.Calibration)
OBJECTIVE_DEFAULTS = schema.defaults(schema.Objective)


class LadderSpace(eqx.Module):
    """What a calibration may change, and how parameters map to valid values.

    Parameters are a dict: ``mmr`` (always), and, when tuned, ``floors`` (tier floors as
    positive increments, ``floor_k = floor_{k-1} + exp(phi_k)``), ``fee_rate``
    (``max_fee_rate * sigmoid(phi)``) and ``mark_window`` (``window_seconds = exp(phi)``).
    """

    floors: jax.Array  # (assets, tiers)
    lo: jax.Array  # (assets, tiers) lowest MMR per tier
    hi: jax.Array  # (assets, tiers) highest MMR per tier
    imr_ratio: jax.Array  # (assets, tiers) IMR / MMR, > 1
    tuned: jax.Array  # (assets, tiers) 1 for real tiers of tuned assets, else 0
    base_mmr: jax.Array  # (assets, tiers) rates of the assets not tuned
    max_fee_rate: float = eqx.field(static=True, default=0.05)
    n_tiers: tuple = eqx.field(static=True, default=())
    knobs: tuple = eqx.field(static=True, default=("mmr",))

    @classmethod
    def from_model(cls, model: RiskModel, tuned_assets, lo: float, hi: float, knobs=("mmr",),
                   max_fee_rate: float = 0.05):
        for k in knobs:
            if k not in KNOBS:
                raise ValueError(f"calibration.tune: unknown parameter {k!r} (allowed: {', '.join(KNOBS)})")
        if "mmr" not in knobs:
            raise ValueError("calibration.tune: must include mmr")
        if "buffer" in knobs and model.liquidation.mode != "buffer":
            raise ValueError("calibration.tune: buffer needs liquidation.mode buffer")
        if "fraction" in knobs and model.liquidation.mode != "fraction":
            raise ValueError("calibration.tune: fraction needs liquidation.mode fraction")
        if "mark_window" in knobs and model.mark.kind == "index":
            raise ValueError("calibration.tune: mark_window needs an EMA mark (mark.kind ema or premium_ema)")
        if "fee_rate" in knobs and not (0 < max_fee_rate < 1 and float(model.liquidation.fee_rate) < max_fee_rate):
            raise ValueError(f"calibration.max_fee_rate: must lie in (fee_rate, 1) (got {max_fee_rate})")
        return cls.from_ladder(model.ladder, tuned_assets, lo, hi, knobs=tuple(knobs), max_fee_rate=max_fee_rate)

    def init(self, model: RiskModel) -> dict:
        """Parameters that reproduce the model's current values."""
        theta = {"mmr": self.theta_from(np.asarray(model.ladder.mmr))}
        dt = self.floors.dtype
        if "floors" in self.knobs:
            inc = np.diff(np.asarray(model.ladder.floors, np.float64), axis=-1)
            theta["floors"] = jnp.asarray(np.log(np.maximum(inc, 1.0)), dt)
        if "fee_rate" in self.knobs:
            x = float(model.liquidation.fee_rate) / self.max_fee_rate
            theta["fee_rate"] = jnp.asarray(math.log(x / (1 - x)) if x > 0 else -20.0, dt)
        if "mark_window" in self.knobs:
            theta["mark_window"] = jnp.asarray(math.log(float(model.mark.window_seconds)), dt)
        if "buffer" in self.knobs:
            theta["buffer"] = jnp.asarray(math.log(max(float(model.liquidation.buffer), 1e-6)), dt)
        if "fraction" in self.knobs:
            x = min(max(float(model.liquidation.fraction), 1e-6), 1 - 1e-6)
            theta["fraction"] = jnp.asarray(math.log(x / (1 - x)), dt)
        return theta

    def apply(self, model: RiskModel, theta: dict) -> RiskModel:
        """The model with the parameters' ladder, fee and mark window."""
        m = eqx.tree_at(lambda x: x.ladder, model, self.ladder(theta))
        if "fee_rate" in theta:
            m = eqx.tree_at(lambda x: x.liquidation.fee_rate, m, self.max_fee_rate * jax.nn.sigmoid(theta["fee_rate"]))
        if "mark_window" in theta:
            m = eqx.tree_at(lambda x: x.mark.window_seconds, m, jnp.exp(theta["mark_window"]))
        if "fraction" in theta:
            m = eqx.tree_at(lambda x: x.liquidation.fraction, m, jax.nn.sigmoid(theta["fraction"]))
        if "buffer" in theta:
            m = eqx.tree_at(lambda x: x.liquidation.buffer, m, jnp.exp(theta["buffer"]))
        return m

    def floors_of(self, theta: dict):
        if "floors" not in theta:
            return self.floors
        f = jnp.concatenate([jnp.zeros_like(self.floors[:, :1]), jnp.cumsum(jnp.exp(theta["floors"]), -1)], -1)
        real = jnp.arange(f.shape[1])[None, :] < jnp.asarray(self.n_tiers)[:, None]
        last = jnp.take_along_axis(f, jnp.asarray(np.asarray(self.n_tiers) - 1)[:, None], axis=-1)
        tuned = self.tuned.sum(-1, keepdims=True) > 0
        return jnp.where(tuned, jnp.where(real, f, last), self.floors)

    @classmethod
    def from_ladder(cls, ladder: Ladder, tuned_assets, lo: float, hi: float, *, knobs=("mmr",),
                    max_fee_rate: float = 0.05):
        mmr, imr = np.asarray(ladder.mmr, np.float64), np.asarray(ladder.imr, np.float64)
        a, k = mmr.shape
        if not (0 <= lo < hi < 1):
            raise ValueError(f"calibration.min_mmr, max_mmr: need 0 <= min < max < 1 (got {lo}, {hi})")
        real = np.arange(k)[None, :] < np.asarray(ladder.n_tiers)[:, None]
        tuned = real & np.isin(np.arange(a), tuned_assets)[:, None]
        ratio = np.where(mmr > 0, imr / np.where(mmr > 0, mmr, 1.0), 2.0)
        dt = ladder.mmr.dtype
        return cls(floors=ladder.floors, lo=jnp.full((a, k), lo, dt), hi=jnp.full((a, k), hi, dt),
                   imr_ratio=jnp.asarray(ratio, dt), tuned=jnp.asarray(tuned, dt), base_mmr=ladder.mmr,
                   max_fee_rate=float(max_fee_rate), n_tiers=ladder.n_tiers, knobs=tuple(knobs))

    def ladder(self, theta) -> Ladder:
        """The ladder of parameters ``theta`` (a dict, or the ``mmr`` array alone)."""
        theta = theta if isinstance(theta, dict) else {"mmr": theta}
        inc = jax.nn.softplus(theta["mmr"]) * self.tuned
        mmr = jnp.clip(self.lo[:, :1] + jnp.cumsum(inc, axis=-1), self.lo, self.hi)
        # padded tiers repeat the last real one
        last = jnp.take_along_axis(mmr, jnp.asarray(np.asarray(self.n_tiers) - 1)[:, None], axis=-1)
        real = jnp.arange(mmr.shape[1])[None, :] < jnp.asarray(self.n_tiers)[:, None]
        mmr = jnp.where(real, mmr, last)
        mmr = jnp.where(self.tuned.sum(-1, keepdims=True) > 0, mmr, self.base_mmr)
        return Ladder(self.floors_of(theta), mmr, jnp.minimum(mmr * self.imr_ratio, 1.0), self.n_tiers)

    def theta_from(self, mmr) -> jax.Array:
        """Parameters that reproduce ``mmr`` (within the bounds; equal tiers get a tiny increment)."""
        m = np.clip(np.asarray(mmr, np.float64), np.asarray(self.lo), np.asarray(self.hi))
        inc = np.diff(np.concatenate([np.asarray(self.lo)[:, :1], m], axis=-1), axis=-1)
        inc = np.maximum(inc, 1e-7)
        return jnp.asarray(np.log(np.expm1(inc)), self.floors.dtype)  # softplus^-1


class SoftOutcome(NamedTuple):
    """Per path (leading dim) and unit: the relaxed engine's expectations over the liquidation time."""

    p_liq: jax.Array  # (paths, units) 1 - survival
    bad_debt: jax.Array  # (paths, units)
    fee: jax.Array
    notional: jax.Array
    slippage: jax.Array
    over_notional: jax.Array  # notional closed beyond the minimum that restores MM (fairness on)
    excess_cost: jax.Array  # slippage + fee beyond the minimum close's (fairness on)


class _Soft(NamedTuple):
    draws: jax.Array
    x: jax.Array
    v2: jax.Array | None
    index: jax.Array
    basis: jax.Array
    mark_state: jax.Array
    mark: jax.Array
    regime: jax.Array | None
    ref: jax.Array | None
    premium_sum: jax.Array
    collateral: jax.Array
    survival: jax.Array
    bad_debt: jax.Array
    fee: jax.Array
    notional: jax.Array
    slippage: jax.Array
    over_notional: jax.Array
    excess_cost: jax.Array
    size: jax.Array | None  # (positions,) expected open size (partial modes; None for full closes)


def check_calibratable(model: RiskModel) -> None:
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


def _soft_path(model: RiskModel, ladder: Ladder, path_key, temperature, block_steps: int):
    """One path of the relaxed engine (vmap over path keys)."""
    P = positions(model)
    m = eqx.tree_at(lambda x: x.ladder, model, ladder)
    liq = model.liquidation
    h0 = initial_state(m, P, path_key)
    units = model.n_units
    z = jnp.zeros((units,), h0.collateral.dtype)
    partial = liq.mode != "full"
    s0 = _Soft(h0.draws, h0.x, h0.v2, h0.index, h0.basis, h0.mark_state, h0.mark, h0.regime, h0.ref,
               h0.premium_sum, h0.collateral, jnp.ones_like(z), z, z, z, z, z, z, P.size if partial else None)
    spec = draw_spec(model)
    all_units = jnp.ones((units,), bool)
    notional_floor = jnp.asarray(1.0, z.dtype)

    def step(s: _Soft, t):
        d = R.split(s.draws, spec)
        size = s.size if partial else P.size
        mk = market_step(m, P, d, s, t, size)
        collateral = s.collateral - mk.payment
        equity, mm, _ = margin(m, P, size, mk.mark, collateral)
        mark_p = mk.mark[P.asset]
        notional = jnp.maximum(P.unit_sum(jnp.abs(P.size) * mark_p), notional_floor)  # the hazard's scale
        h = jax.nn.sigmoid(-(equity - mm) / (temperature * notional))
        if liq.check_every > 1:
            h = jnp.where(t % liq.check_every == 0, h, 0.0)
        mid = (mk.true_price * (1.0 + mk.basis))[P.asset]
        f = liq.execute(all_units, collateral, size, P.entry, mid, mark_p, P.asset, P.unit, P.unit_sum, m.ladder)
        nxt = (draw(m, path_key, t + 1), mk.x, mk.v2, mk.index, mk.basis, mk.mark_state, mk.mark, mk.regime,
               mk.ref, mk.premium_sum)
        if partial:
            # Mean-field state: the unit keeps the expected size and collateral after a liquidation
            # with probability h (exact as tau -> 0, where h is 0 or 1), and the sums grow by h x the
            # liquidation's bad debt, fee, notional and slippage.
            return _Soft(*nxt, collateral + h * (f.collateral - collateral), s.survival * (1.0 - h),
                         s.bad_debt + h * f.bad_debt, s.fee + h * f.fee, s.notional + h * f.notional,
                         s.slippage + h * f.slippage, s.over_notional + h * f.over_notional,
                         s.excess_cost + h * f.excess_cost, size + h[P.unit] * (f.size - size))
        # Full close: the survival-weighted first passage (the unit does not exist after it).
        p = s.survival * h
        return _Soft(*nxt, collateral, s.survival * (1.0 - h), s.bad_debt + p * f.bad_debt,
                     s.fee + p * f.fee, s.notional + p * f.notional, s.slippage + p * f.slippage,
                     s.over_notional + p * f.over_notional, s.excess_cost + p * f.excess_cost, None)

    n = model.grid.n_steps
    if block_steps == 0:  # no checkpointing: reverse mode keeps every step's intermediates
        s = jax.lax.scan(lambda c, t: (step(c, t), None), s0, jnp.arange(1, n + 1, dtype=jnp.int32))[0]
        return _outcome(s)
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
    return _outcome(s)


def _outcome(s: _Soft) -> SoftOutcome:
    return SoftOutcome(1.0 - s.survival, s.bad_debt, s.fee, s.notional, s.slippage, s.over_notional, s.excess_cost)


def soft_outcome(model: RiskModel, ladder: Ladder, key, start, count: int, temperature, *, block_steps: int = 60):
    """The relaxed engine on paths ``start .. start + count - 1`` (same keys and draws as ``simulate``)."""
    keys = R.path_key(key, start + jnp.arange(count, dtype=jnp.uint32))
    return jax.vmap(lambda k: _soft_path(model, ladder, k, temperature, block_steps))(keys)


class Terms(NamedTuple):
    """Objective terms (scalars), each a mean over paths."""

    bad_debt: jax.Array  # expected bad debt / book notional
    trader_cost: jax.Array  # expected slippage + fee at liquidations / book notional
    liquidations: jax.Array  # expected number of units liquidated
    capital: jax.Array  # maintenance margin required at t = 0 / book notional
    exceed: jax.Array  # smoothed P(fund loss > budget)
    fund_es: jax.Array  # expected shortfall of the fund's loss over paths at fund_es_level / book notional
    over_liquidation: jax.Array  # expected notional liquidated beyond the minimum that restores MM / book
    excess_cost: jax.Array  # expected liquidation cost beyond the minimum close's / book notional


def objective_terms(model: RiskModel, ladder: Ladder, out: SoftOutcome, obj: dict) -> Terms:
    P = positions(model)
    mark0 = model.prices.s0[P.asset]
    n0 = jnp.abs(P.size) * mark0
    book = jnp.maximum(jnp.sum(n0), 1.0)
    mm0 = jnp.sum(ladder.maintenance_and_rate(n0, P.asset)[0])
    loss = jnp.sum(out.bad_debt - out.fee, axis=-1)  # the fund's loss on each path
    exceed = jnp.zeros(())
    if obj.get("exceed_budget") is not None:
        x = obj["exceed_budget"]
        exceed = jnp.mean(jax.nn.sigmoid((loss - x) / (obj["exceed_temperature"] * x)))
    # ES as the mean of the worst (1 - level) share of paths (Acerbi-Tasche); differentiable a.e.
    k = max(1, int(round((1.0 - obj["fund_es_level"]) * loss.shape[0])))
    es = jnp.mean(jax.lax.top_k(loss, k)[0])
    return Terms(bad_debt=jnp.mean(jnp.sum(out.bad_debt, -1)) / book,
                 trader_cost=jnp.mean(jnp.sum(out.slippage + out.fee, -1)) / book,
                 liquidations=jnp.mean(jnp.sum(out.p_liq, -1)), capital=mm0 / book, exceed=exceed,
                 fund_es=es / book, over_liquidation=jnp.mean(jnp.sum(out.over_notional, -1)) / book,
                 excess_cost=jnp.mean(jnp.sum(out.excess_cost, -1)) / book)


def objective(terms: Terms, obj: dict):
    j = obj["bad_debt"] * terms.bad_debt + obj["trader_cost"] * terms.trader_cost + \
        obj["liquidations"] * terms.liquidations + obj["capital"] * terms.capital + \
        obj["fund_es"] * terms.fund_es + obj["over_liquidation"] * terms.over_liquidation + \
        obj["excess_cost"] * terms.excess_cost
    if obj.get("exceed_budget") is not None and obj["exceed_weight"]:
        eps = obj["exceed_probability"]
        j = j + obj["exceed_weight"] * jnp.maximum(terms.exceed - eps, 0.0) / eps
    return j


def _prepared(model: RiskModel, obj: dict) -> RiskModel:
    """The model as the relaxed engine runs it: minimal cuts (``buffer`` mode, fairness) carry the
    implicit-function gradient of their exact root, and the fairness terms switch fairness on."""
    import dataclasses

    fair = bool(obj["over_liquidation"] or obj["excess_cost"]) or model.liquidation.fairness
    liq = dataclasses.replace(model.liquidation, fairness=fair, implicit_grad=True)
    return eqx.tree_at(lambda m: m.liquidation, model, liq)


def make_loss(model: RiskModel, space: LadderSpace, obj: dict, temperature: float, paths: int, block_steps: int):
    """loss(theta, key, start) -> (objective, Terms), differentiable in theta."""
    model = _prepared(model, obj)

    def loss(theta, key, start):
        m = space.apply(model, theta if isinstance(theta, dict) else {"mmr": theta})
        out = soft_outcome(m, m.ladder, key, start, paths, temperature, block_steps=block_steps)
        terms = objective_terms(m, m.ladder, out, obj)
        return objective(terms, obj), terms

    return loss


def optimizer(cfg: dict) -> optax.GradientTransformation:
    sched = optax.cosine_decay_schedule(cfg["learning_rate"], max(1, cfg["iterations"]), alpha=0.1)
    return optax.chain(optax.clip_by_global_norm(cfg["clip_norm"]), optax.adam(sched))


def ladder_table(ladder: Ladder, names) -> pd.DataFrame:
    """The ladder in a venue's own format: floor, cap, MMR, IMR, max leverage, maintenance amount."""
    rows = []
    f, m, i, cum = (np.asarray(x, np.float64) for x in (ladder.floors, ladder.mmr, ladder.imr, ladder.cum))
    for a, name in enumerate(names):
        n = ladder.n_tiers[a]
        for k in range(n):
            rows.append({"asset": name, "tier": k + 1, "floor": f[a, k], "cap": f[a, k + 1] if k + 1 < n else math.inf,
                         "mmr": m[a, k], "imr": i[a, k], "max_leverage": 1.0 / i[a, k] if i[a, k] > 0 else math.inf,
                         "maintenance_amount": cum[a, k]})
    return pd.DataFrame(rows)


def check_ladder(ladder: Ladder, space: LadderSpace) -> None:
    """Raise if an iterate is not a publishable ladder (bounds, monotone rates, MMR < IMR <= 1)."""
    m, i = np.asarray(ladder.mmr), np.asarray(ladder.imr)
    tuned = np.asarray(space.tuned) > 0
    eps = 1e-12
    f = np.asarray(ladder.floors)
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(i)) and np.all(np.isfinite(f))):
        raise FloatingPointError("calibration: the ladder went non-finite (lower learning_rate or raise temperature)")
    if np.any(np.diff(f, axis=-1) < -eps) or np.any(f[:, 0] != 0):
        raise AssertionError(f"calibration: floors not increasing from 0 {f.tolist()}")
    if np.any(np.diff(m, axis=-1) < -eps):
        raise AssertionError(f"calibration: non-monotone rates {m.tolist()}")
    if np.any((m >= i) & tuned) or np.any(i > 1 + eps):
        raise AssertionError(f"calibration: MMR >= IMR or IMR > 1 ({m.tolist()}, {i.tolist()})")
    if np.any((m < np.asarray(space.lo) - eps) & tuned) or np.any((m > np.asarray(space.hi) + eps) & tuned):
        raise AssertionError("calibration: a rate left its bounds")


def _save(path: Path, fingerprint: str, it: int, theta, opt_state, history: list, best) -> None:
    from .io import atomic_write_npz

    leaves = jax.tree_util.tree_leaves(opt_state)
    arrays = {f"opt_{k}": np.asarray(v) for k, v in enumerate(leaves)}
    arrays.update({f"theta_{k}": np.asarray(v) for k, v in theta.items()})
    atomic_write_npz(path, key=np.asarray(fingerprint), it=np.asarray(it),
                     history=np.asarray(json.dumps(history)), best=np.asarray(json.dumps(best)), **arrays)


def _load(path: Path, fingerprint: str, theta, opt_state):
    with np.load(path) as z:
        if str(z["key"]) != fingerprint:
            raise ValueError(f"calibration checkpoint: {path} belongs to another calibration; remove it")
        treedef = jax.tree_util.tree_structure(opt_state)
        leaves = jax.tree_util.tree_leaves(opt_state)
        new = [jnp.asarray(z[f"opt_{k}"], dtype=leaf.dtype) for k, leaf in enumerate(leaves)]
        th = {k: jnp.asarray(z[f"theta_{k}"], v.dtype) for k, v in theta.items()}
        return (int(z["it"]), th, jax.tree_util.tree_unflatten(treedef, new),
                json.loads(str(z["history"])), json.loads(str(z["best"])))


def calibrate(model: RiskModel, space: LadderSpace, cfg: dict, *, seed: int, names, checkpoint=None,
              fingerprint: str = "", log=None, max_iterations=None):
    """Run the optimiser. Returns (best theta, history rows). ``checkpoint``: file written every
    ``checkpoint_every`` iterations; a matching one is resumed (same result as uninterrupted).
    ``max_iterations``: stop after this many iterations in this call (for tests of resume)."""
    check_calibratable(model)
    obj = {**OBJECTIVE_DEFAULTS, **cfg["objective"]}
    opt = optimizer(cfg)
    key = R.seed_key(seed)
    chunk = cfg.get("chunk_paths") or cfg["paths"]
    if cfg["paths"] % chunk:
        raise ValueError(f"calibration.chunk_paths: must divide paths ({cfg['paths']}), got {chunk}")
    n_chunks = cfg["paths"] // chunk
    value_and_grad = _chunked_value_and_grad(model, space, obj, cfg, key, chunk, n_chunks)
    update = jax.jit(lambda g, opt_state, theta: opt.update(g, opt_state, theta))

    def step(theta, opt_state, start):
        j, terms, g = value_and_grad(theta, start)
        updates, opt_state = update(g, opt_state, theta)
        return optax.apply_updates(theta, updates), opt_state, j, terms, optax.tree.norm(g)

    theta = space.init(model)
    opt_state = opt.init(theta)
    history, best = [], {"it": -1, "objective": math.inf, "theta": _tolist(theta)}
    it0 = 0
    if checkpoint is not None and Path(checkpoint).exists():
        it0, theta, opt_state, history, best = _load(Path(checkpoint), fingerprint, theta, opt_state)
    stop = cfg["iterations"] if max_iterations is None else min(cfg["iterations"], it0 + max_iterations)
    for it in range(it0, stop):
        ladder = space.ladder(theta)
        check_ladder(ladder, space)
        cur = space.apply(model, theta)
        start = jnp.uint32(cfg["paths"] * it if cfg["resample"] else 0)
        new_theta, opt_state, j, terms, gnorm = step(theta, opt_state, start)
        row = {"iteration": it, "objective": float(j), "grad_norm": float(gnorm),
               **{f"term_{k}": float(v) for k, v in terms._asdict().items()}}
        mmr, floors = np.asarray(ladder.mmr), np.asarray(ladder.floors)
        for a, name in enumerate(names):
            for k in range(space.n_tiers[a]):
                row[f"mmr_{name}_{k + 1}"] = float(mmr[a, k])
                if "floors" in theta and k > 0:
                    row[f"floor_{name}_{k + 1}"] = float(floors[a, k])
        if "fee_rate" in theta:
            row["fee_rate"] = float(cur.liquidation.fee_rate)
        if "mark_window" in theta:
            row["mark_window_seconds"] = float(cur.mark.window_seconds)
        if "fraction" in theta:
            row["fraction"] = float(cur.liquidation.fraction)
        if "buffer" in theta:
            row["buffer"] = float(cur.liquidation.buffer)
        history.append(row)
        if float(j) < best["objective"] - cfg["tolerance"] * abs(best["objective"]) or best["it"] < 0:
            best = {"it": it, "objective": float(j), "theta": _tolist(theta)}
        if log is not None:
            log(row)
        theta = new_theta
        done = it + 1
        if checkpoint is not None and (done % cfg["checkpoint_every"] == 0 or done == stop):
            _save(Path(checkpoint), fingerprint, done, theta, opt_state, history, best)
        if cfg["patience"] and it - best["it"] >= cfg["patience"]:
            break
    return {k: jnp.asarray(v, theta[k].dtype) for k, v in best["theta"].items()}, history


def _chunked_value_and_grad(model, space, obj, cfg, key, chunk: int, n_chunks: int):
    """(theta, start) -> (objective, terms, gradient) over ``n_chunks`` chunks of ``chunk`` paths.

    One chunk: a single jitted value-and-gradient. Several (memory bound by one chunk): the terms
    are means over paths, so pass 1 averages each chunk's terms (forward only) and gives the
    objective's weights ``dJ/dterm`` at the average; pass 2 back-propagates ``sum_k w_k term_k`` per
    chunk and averages: the exact gradient of the whole-batch objective, also with the nonlinear
    exceedance penalty.
    """
    temperature, block = cfg["temperature"], cfg["block_steps"]
    if n_chunks == 1:
        loss = make_loss(model, space, obj, temperature, chunk, block)

        @jax.jit
        def single(theta, start):
            (j, terms), g = jax.value_and_grad(loss, has_aux=True)(theta, key, start)
            return j, terms, g
        return single

    if obj["fund_es"]:
        raise ValueError("calibration.chunk_paths: the fund ES term ranks all paths together; "
                         "use one chunk (chunk_paths: 0) with objective.fund_es")

    model = _prepared(model, obj)

    def chunk_terms(theta, start):
        m = space.apply(model, theta)
        out = soft_outcome(m, m.ladder, key, start, chunk, temperature, block_steps=block)
        return objective_terms(m, m.ladder, out, obj)

    terms_jit = jax.jit(chunk_terms)
    weighted = jax.jit(jax.grad(lambda theta, start, w: sum(
        wk * tk for wk, tk in zip(w, chunk_terms(theta, start), strict=True))))
    weights = jax.jit(jax.grad(lambda t: objective(Terms(*t), obj)))

    def run(theta, start):
        starts = [start + jnp.uint32(c * chunk) for c in range(n_chunks)]
        parts = [terms_jit(theta, s0) for s0 in starts]
        mean = Terms(*(sum(p[k] for p in parts) / n_chunks for k in range(len(Terms._fields))))
        w = tuple(weights(tuple(mean)))
        g = None
        for s0 in starts:
            gc = weighted(theta, s0, w)
            g = gc if g is None else jax.tree_util.tree_map(jnp.add, g, gc)
        g = jax.tree_util.tree_map(lambda x: x / n_chunks, g)
        return objective(mean, obj), mean, g

    return run


def _tolist(theta: dict) -> dict:
    return {k: np.asarray(v).tolist() for k, v in theta.items()}


def run_calibration(config, *, overrides=(), out_dir, log=print, resume=False) -> dict:
    """CLI / API entry: calibrate, evaluate before/after with the hard engine on fresh paths, write files."""
    from .api import run
    from .config import apply_overrides, build_model, load_config, resolve_calibration
    from .io import atomic_write_json, atomic_write_text

    cfg = config if isinstance(config, dict) else load_config(config)
    cfg = apply_overrides(cfg, overrides)
    model, labels, resolved = build_model(cfg)
    cal = resolve_calibration(resolved)
    names = resolved["asset_names"]
    tuned = [names.index(a) for a in (names if cal["assets"] == "all" else cal["assets"])]
    space = LadderSpace.from_model(model, tuned, cal["min_mmr"], cal["max_mmr"], tuple(cal["tune"]),
                                   cal["max_fee_rate"])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "calibration_checkpoint.npz"
    if not resume:
        ckpt.unlink(missing_ok=True)
    seed = resolved["seed"] if cal["seed"] is None else cal["seed"]
    # stopping and evaluation settings may change on resume (e.g. more iterations)
    fp = json.dumps([resolved, {k: v for k, v in cal.items() if k not in ("iterations", "patience", "eval_paths")}],
                    sort_keys=True, default=str)
    t0 = time.perf_counter()
    theta, history = calibrate(model, space, cal, seed=seed, names=names, checkpoint=ckpt, fingerprint=fp,
                               log=(lambda r: log(_fmt(r))) if log else None)
    wall = time.perf_counter() - t0
    tuned_model = space.apply(model, theta)
    check_ladder(tuned_model.ladder, space)
    before_tab, after_tab = ladder_table(model.ladder, names), ladder_table(tuned_model.ladder, names)
    new_cfg = _with_ladder(cfg, after_tab, names)
    if "fee_rate" in theta:
        new_cfg.setdefault("liquidation", {})["fee_rate"] = float(tuned_model.liquidation.fee_rate)
    if "mark_window" in theta:
        new_cfg.setdefault("mark", {})["window_seconds"] = float(tuned_model.mark.window_seconds)
    if "fraction" in theta:
        new_cfg.setdefault("liquidation", {})["fraction"] = float(tuned_model.liquidation.fraction)
    if "buffer" in theta:
        new_cfg.setdefault("liquidation", {})["buffer"] = float(tuned_model.liquidation.buffer)
    # the hard engine on fresh paths (another seed), before and after
    eval_over = {"paths": cal["eval_paths"], "seed": seed + 1_000_003}
    before = run({**cfg, **eval_over})
    after = run({**new_cfg, **eval_over})
    atomic_write_text(out / "ladder.csv", after_tab.to_csv(index=False))
    atomic_write_text(out / "ladder_before.csv", before_tab.to_csv(index=False))
    atomic_write_text(out / "history.csv", pd.DataFrame(history).to_csv(index=False))
    keys = ["p_any_liquidation", "expected_liquidations", "bad_debt_mean", "bad_debt_es_99", "p_bad_debt",
            "insurance_fund_drawdown_es_99", "p_insurance_fund_depleted", "liquidated_notional_mean",
            "slippage_mean", "fees_mean", "trader_loss_mean"]
    comparison = {"before": {k: before.summary.get(k) for k in keys}, "after": {k: after.summary.get(k) for k in keys},
                  "eval_paths": cal["eval_paths"], "eval_seed": eval_over["seed"], "iterations": len(history),
                  "wall_seconds": wall}
    atomic_write_json(out / "metrics.json", comparison)
    import yaml

    atomic_write_text(out / "calibrated.yaml", "# written by `perpjax calibrate`\n" + yaml.safe_dump(
        new_cfg, sort_keys=False))
    _plots(out, pd.DataFrame(history), names, before.accounts, after.accounts)
    ckpt.unlink(missing_ok=True)
    return {"ladder": after_tab, "history": history, "metrics": comparison}


def _with_ladder(cfg: dict, table: pd.DataFrame, names) -> dict:
    import copy

    new = copy.deepcopy(cfg)
    for name in names:
        t = table[table.asset == name]
        new["ladders"][name] = [{"floor": float(r.floor), "mmr": float(round(r.mmr, 8)), "imr": float(round(r.imr, 8))}
                                for r in t.itertuples()]
    return new


def _fmt(row: dict) -> str:
    rates = " ".join(f"{k[4:]}={v:.5f}" for k, v in row.items() if k.startswith("mmr_"))
    return (f"it {row['iteration']:4d}  J {row['objective']:.6g}  |g| {row['grad_norm']:.3g}  "
            f"bad_debt {row['term_bad_debt']:.3g}  capital {row['term_capital']:.4g}  {rates}")


def _plots(out: Path, hist: pd.DataFrame, names, acc_before: pd.DataFrame, acc_after: pd.DataFrame) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plots are optional output; the CSVs carry the same numbers
        return
    from .io import atomic_write_bytes

    def save(fig, name):
        import io

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        atomic_write_bytes(out / name, buf.getvalue())

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    ax[0].plot(hist.iteration, hist.objective)
    ax[0].set(xlabel="iteration", ylabel="objective", title="objective")
    for c in [c for c in hist.columns if c.startswith("mmr_")]:
        ax[1].plot(hist.iteration, hist[c], label=c[4:])
    ax[1].set(xlabel="iteration", ylabel="MMR", title="maintenance rate per tier")
    ax[1].legend(fontsize=7, ncol=2)
    save(fig, "history.png")
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    tb = acc_before.groupby("tier")[["p_liquidation", "expected_bad_debt"]].mean()
    ta = acc_after.groupby("tier")[["p_liquidation", "expected_bad_debt"]].mean()
    x = np.arange(len(tb))
    for i, col in enumerate(("p_liquidation", "expected_bad_debt")):
        ax[i].bar(x - 0.2, tb[col], 0.4, label="before")
        ax[i].bar(x + 0.2, ta[col].reindex(tb.index), 0.4, label="after")
        ax[i].set_xticks(x, tb.index, rotation=45, ha="right", fontsize=7)
        ax[i].set(title=f"{col} by tier (hard engine, fresh paths)")
        ax[i].legend()
    save(fig, "by_tier.png")
