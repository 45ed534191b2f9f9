"""The model a simulation runs (``RiskModel``, with its cross-checks) and the random inputs of a step."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .. import random as R
from ..cascade import CascadeMonitor, Impact
from ..dynamics import Garch, Regimes
from ..guardrails import CircuitBreaker
from ..liquidation import Liquidation
from ..margin import Book, Ladder
from ..market import Basis, Funding, MarkPrice, Oracle
from ..paths import PriceModel, TimeGrid
from ..scenario import Schedule


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
        if self.liquidation.bridge and self.schedule is not None:
            raise ValueError("liquidation.bridge: the crossing probability uses the step's diffusion covariance; "
                             "not with a scenario schedule (deterministic shocks or a replayed path)")
        if self.prices.bar_steps > 1 and self.schedule is not None and self.schedule.replace:
            raise ValueError("innovations.bar_seconds: the replayed path is the price; no bars to bridge")
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


def draw_spec(model: RiskModel) -> tuple:
    """Every stream one step draws, in one static layout: ((stream, n, kind), ...) for ``random.draw``."""
    return _step_spec(model) + _bar_spec(model)


def _step_spec(model: RiskModel) -> tuple:
    a = model.prices.n_assets
    spec = () if _replay(model) else model.prices.draw_spec()
    spec += ((R.BASIS, a, "normal"),) if model.basis.stochastic else ()
    spec += ((R.REGIME, 1, "uniform"),) if model.regimes is not None and model.regimes.switch == "markov" else ()
    spec += ((R.BRIDGE, model.n_units, "uniform"),) if model.liquidation.bridge else ()
    return spec


def _bar_spec(model: RiskModel) -> tuple:
    return () if _replay(model) else model.prices.bar_spec()


def _replay(model: RiskModel) -> bool:
    return model.schedule is not None and model.schedule.replace


def draw(model: RiskModel, path_key, t):
    """Step ``t``'s random inputs as one flat vector (``random.split(v, draw_spec(model))`` names them).

    The engine draws a step ahead and carries it: a carried value is materialised, whereas fused
    consumers (the correlation mat-vec, the margin of every unit) would recompute the draws once per
    use on CPU. With bars (``prices.bar_steps`` = m > 1) the bar's innovation streams follow, drawn at
    the bar index ``(t - 1) // m + 1`` (their own stream ids), so every step of a bar sees the same draw;
    with a block bootstrap the block's uniform, at the block index (``PriceModel.group_draw``)."""
    out = R.draw(path_key, t, _step_spec(model), model.dtype)
    if not _bar_spec(model):
        return out
    return jnp.concatenate([out, model.prices.group_draw(path_key, t, model.dtype)], axis=-1)
