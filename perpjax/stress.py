"""Stress dynamics and liquidation cascades.

Everything here plugs into the engine's step (``engine._step``); each piece is
optional and costs nothing when it is off.

* ``Impact`` closes the loop between liquidations and prices. The book's net
  forced flow in an asset over a step, ``Q`` (USD, + = buys), moves the log
  price permanently by

      dlog S = sign(Q) * psi * d0 * (|Q| / D)^e

  with ``D`` the depth within ``d0`` of mid (``DepthModel``, after decay),
  ``psi`` the share of the walk's far edge the price keeps once the book
  refills (``permanent_fraction``) and ``e`` = 1 (``linear``, Almgren-Chriss's
  permanent impact linear in volume), 0.5 (``sqrt``, the square-root law of
  DOMAIN.md section 5) or a configured exponent (``power``). The fills
  themselves pay the temporary impact of the depth model as before. The moved
  price is the next step's true price, so it reaches the index, the mark,
  funding and every account's margin: forced flow can trigger the next
  liquidations (a cascade).
* ``Regimes``: calm / stress correlation (and vol and depth multipliers),
  switching by a Markov chain, on a market-wide selloff (the equal-weighted log
  price falls ``drawdown`` below its EWMA), or on a schedule.
* ``Garch``: GARCH(1,1) variance ratio on each asset's diffusion, in
  variance-targeting form (unconditional variance = the configured vol).
* ``Schedule``: deterministic time-indexed scenario inputs: shocks added to
  the log returns (or a replayed real path instead of them), depth bursts,
  oracle freezes, forced stress windows.
* ``CascadeMonitor``: episodes of chained liquidation rounds (rounds no more
  than ``window`` steps apart), their sizes, the units that start them, and the
  price drawdown with and without feedback on the same random path. The
  no-feedback path is the price minus the cumulative impact; with a ``shock``
  regime switch or GARCH, whose state follows the moved price, it is the
  same draws rather than an exact feedback-free rerun (run without the
  ``cascade`` impact for that).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._validate import concrete, nonneg

IMPACT_LAWS = {"linear": 1.0, "sqrt": 0.5, "power": None}
SWITCHES = ("markov", "shock", "schedule")
# Cascade-size histogram: half-decade bins of episode notional from $1k to $10bn (plus under / over).
CASCADE_EDGES = tuple(float(x) for x in 10.0 ** np.arange(3.0, 10.01, 0.5))


class Impact(eqx.Module):
    """Permanent price impact of net forced flow (see module docstring)."""

    permanent_fraction: jax.Array
    depth_distance: float = eqx.field(static=True, default=0.005)
    law: str = eqx.field(static=True, default="sqrt")
    exponent: float = eqx.field(static=True, default=0.5)

    def __check_init__(self):
        if self.law not in IMPACT_LAWS:
            raise ValueError(f"law: must be one of {tuple(IMPACT_LAWS)} (got {self.law!r})")
        if IMPACT_LAWS[self.law] is not None and self.exponent != IMPACT_LAWS[self.law]:
            raise ValueError(f"exponent: the {self.law} law has exponent {IMPACT_LAWS[self.law]} (got {self.exponent})")
        if not (0 < self.exponent <= 2):
            raise ValueError(f"exponent: must lie in (0, 2] (got {self.exponent})")
        if concrete(self.permanent_fraction):
            nonneg("permanent_fraction", self.permanent_fraction)

    def log_move(self, flow_usd, depth_usd):
        """Permanent log-price move of each asset for net flow ``flow_usd`` (+ = buys) against ``depth_usd``."""
        q = jnp.abs(flow_usd) / depth_usd
        reach = jnp.sqrt(q) if self.exponent == 0.5 else q**self.exponent
        return jnp.sign(flow_usd) * self.permanent_fraction * self.depth_distance * reach


class Garch(eqx.Module):
    """GARCH(1,1) on the diffusion variance ratio ``v2`` (mean 1), per step:

        v2' = (1 - a - b) + a * z2 + b * v2,   z2 = r^2 / (vol^2 dt)

    with ``r`` the step's diffusion log return divided by the stress regime's vol multiplier (the
    regime scales the vol on top of GARCH; fed back it would make the variance explode in
    stress whenever ``a (m^2 - 1) > 1 - a - b``). Parameters fitted at a bar of
    ``m`` steps (e.g. hourly bars, minute steps: m = 60) are mapped to the step
    by keeping the persistence per unit time, ``a + b = (alpha + beta)^(1/m)``,
    and the response to a bar's worth of squared returns, ``a = alpha / m``
    (first-order temporal aggregation; exact as m -> 1).
    """

    alpha: jax.Array  # (assets,) per step
    beta: jax.Array  # (assets,) per step

    def __check_init__(self):
        if concrete(self.alpha, self.beta):
            a, b = nonneg("alpha", self.alpha), nonneg("beta", self.beta)
            if np.any(a + b >= 1):
                raise ValueError(f"alpha + beta: must be < 1 for a finite variance (got {(a + b).tolist()})")

    @staticmethod
    def per_step(alpha, beta, bar_steps: float):
        """Per-step (a, b) from (alpha, beta) fitted on bars of ``bar_steps`` steps (numpy)."""
        alpha, beta = np.asarray(alpha, np.float64), np.asarray(beta, np.float64)
        if np.any(alpha < 0) or np.any(beta < 0):
            raise ValueError(f"alpha, beta: must be >= 0 (got {alpha.tolist()}, {beta.tolist()})")
        if np.any(alpha + beta >= 1):
            raise ValueError(f"alpha + beta: must be < 1 (got {(alpha + beta).tolist()})")
        a = alpha / bar_steps
        return a, (alpha + beta) ** (1.0 / bar_steps) - a

    def update(self, v2, z2):
        return (1.0 - self.alpha - self.beta) + self.alpha * z2 + self.beta * v2


class Regimes(eqx.Module):
    """Calm / stress regime of the whole market.

    In stress the correlation factor is ``stress_factor`` (validated PSD), the
    diffusion vol is multiplied by ``vol_multiplier`` and book depth by
    ``depth_factor``. ``switch``:

    * ``markov``: enter with probability ``p_enter``, leave with ``p_exit`` per step;
    * ``shock``: enter when the equal-weighted log price falls ``drawdown`` below
      its EWMA (weight ``ref_alpha`` per step), leave when it is back within
      ``drawdown / 2`` (hysteresis, so the regime does not flicker);
    * ``schedule``: only where the scenario schedule forces it.
    A schedule's stress windows apply with any switch.
    """

    stress_factor: jax.Array
    vol_multiplier: jax.Array
    depth_factor: jax.Array
    p_enter: jax.Array
    p_exit: jax.Array
    drawdown: jax.Array
    ref_alpha: jax.Array
    switch: str = eqx.field(static=True, default="shock")

    def __check_init__(self):
        if self.switch not in SWITCHES:
            raise ValueError(f"switch: must be one of {SWITCHES} (got {self.switch!r})")
        if concrete(self.vol_multiplier, self.depth_factor, self.p_enter, self.p_exit, self.drawdown):
            from ._validate import positive

            positive("vol_multiplier", self.vol_multiplier)
            positive("depth_factor", self.depth_factor)
            for name, p in (("p_enter", self.p_enter), ("p_exit", self.p_exit)):
                if not (0 <= float(p) <= 1):
                    raise ValueError(f"{name}: must be a probability per step in [0, 1] (got {float(p)})")
            nonneg("drawdown", self.drawdown)

    def next(self, stress, u, level, ref):
        """Regime for the next step and the updated EWMA reference."""
        if self.switch == "markov":
            return jnp.where(stress, u >= self.p_exit, u < self.p_enter), ref
        if self.switch == "shock":
            ref = ref + self.ref_alpha * (level - ref)
            gap = level - ref
            return jnp.where(stress, gap < -0.5 * self.drawdown, gap < -self.drawdown), ref
        return jnp.zeros_like(stress), ref


class Schedule(eqx.Module):
    """Deterministic inputs by step (row ``t - 1`` applies at step ``t``); None = not used.

    Attributes:
        log_return: (steps, assets) added to the simulated log returns (shocks), or,
            with ``replace``, the whole exogenous log return (a replayed real path).
        depth: (steps, assets) factor on book depth (cancel bursts).
        frozen: (steps,) the oracle keeps its last value (oracle freeze).
        stress: (steps,) stress regime forced on.
    """

    log_return: jax.Array | None = None
    depth: jax.Array | None = None
    frozen: jax.Array | None = None
    stress: jax.Array | None = None
    replace: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        if self.replace and self.log_return is None:
            raise ValueError("replace: a replayed path needs its log returns")
        if concrete(*(x for x in (self.log_return, self.depth) if x is not None)):
            if self.log_return is not None and not np.all(np.isfinite(np.asarray(self.log_return))):
                raise ValueError("log_return: must be finite")
            if self.depth is not None and not np.all(np.asarray(self.depth) > 0):
                raise ValueError("depth: factors must be > 0")

    @staticmethod
    def at(table, t):
        return None if table is None else table[t - 1]

    @property
    def empty(self) -> bool:
        return all(x is None for x in (self.log_return, self.depth, self.frozen, self.stress))


class CascadeMonitor(eqx.Module):
    """Episode bookkeeping: liquidation rounds (steps with forced fills) chained
    when no more than ``window`` steps apart form one episode."""

    window: int = eqx.field(static=True, default=5)

    def __check_init__(self):
        if not (isinstance(self.window, int) and self.window >= 1):
            raise ValueError(f"window: must be an integer >= 1 step (got {self.window})")


class CascadeState(NamedTuple):
    """Per-path cascade bookkeeping carried by the scan."""

    impact: jax.Array  # (assets,) cumulative permanent log impact: x - impact is the no-feedback path
    peak: jax.Array  # (assets,) running max of the log price (with feedback)
    drawdown: jax.Array  # (assets,) max drawdown of the log price from its running max
    peak_exog: jax.Array  # (assets,) the same without feedback
    drawdown_exog: jax.Array
    last: jax.Array  # int32 step of the last liquidation round (0 = none yet)
    rounds: jax.Array  # int32 rounds of the current episode
    notional: jax.Array  # notional of the current episode
    max_rounds: jax.Array  # int32 most rounds in one episode
    max_notional: jax.Array  # largest episode notional
    episodes: jax.Array  # int32 episodes started
    hist: jax.Array  # (bins,) int32 finished episodes by notional (CASCADE_EDGES)
    starts: jax.Array  # (units,) int32 times the unit was liquidated in an episode's first round


def cascade_init(x0, units: int, dtype) -> CascadeState:
    z, i = jnp.zeros_like(x0), jnp.zeros((), jnp.int32)
    return CascadeState(impact=z, peak=x0, drawdown=z, peak_exog=x0, drawdown_exog=z, last=i, rounds=i,
                        notional=jnp.zeros((), dtype), max_rounds=i, max_notional=jnp.zeros((), dtype), episodes=i,
                        hist=jnp.zeros((len(CASCADE_EDGES) + 1,), jnp.int32), starts=jnp.zeros((units,), jnp.int32))


def _bin(notional):
    return jnp.searchsorted(jnp.asarray(CASCADE_EDGES, notional.dtype), notional, side="right")


def cascade_update(mon: CascadeMonitor, c: CascadeState, t, x, move, executed, notional) -> CascadeState:
    """Advance the bookkeeping by one step.

    ``x``: log price this step (with feedback); ``move``: this step's permanent
    log impact (applied from the next step on); ``executed``: (units,) liquidated
    this step; ``notional``: USD filled by forced orders this step.
    """
    x_exog = x - c.impact
    peak, peak_exog = jnp.maximum(c.peak, x), jnp.maximum(c.peak_exog, x_exog)
    dd, dd_exog = jnp.maximum(c.drawdown, peak - x), jnp.maximum(c.drawdown_exog, peak_exog - x_exog)
    active = jnp.any(executed)
    new = active & ((c.last == 0) | (t - c.last > mon.window))
    close = new & (c.rounds > 0)  # a new episode ends the previous one
    hist = c.hist + jnp.where(close, jax.nn.one_hot(_bin(c.notional), c.hist.shape[0], dtype=jnp.int32), 0)
    rounds = jnp.where(new, 1, c.rounds + active.astype(jnp.int32))
    ep_notional = jnp.where(new, notional, c.notional + notional)
    return CascadeState(
        impact=c.impact + move, peak=peak, drawdown=dd, peak_exog=peak_exog, drawdown_exog=dd_exog,
        last=jnp.where(active, t, c.last), rounds=rounds, notional=ep_notional,
        max_rounds=jnp.maximum(c.max_rounds, rounds), max_notional=jnp.maximum(c.max_notional, ep_notional),
        episodes=c.episodes + new.astype(jnp.int32), hist=hist,
        starts=c.starts + (executed & new).astype(jnp.int32))


def cascade_finish(c: CascadeState) -> CascadeState:
    """Close the episode still open at the horizon."""
    open_ = c.rounds > 0
    return c._replace(hist=c.hist + jnp.where(open_, jax.nn.one_hot(_bin(c.notional), c.hist.shape[0],
                                                                        dtype=jnp.int32), 0))


def drawdown_fraction(log_drawdown):
    """Price drawdown as a fraction (1 - S / peak) from a log drawdown."""
    return -np.expm1(-np.asarray(log_drawdown, np.float64))


def ref_alpha_from_halflife(halflife_steps: float) -> float:
    return 1.0 - 0.5 ** (1.0 / halflife_steps) if math.isfinite(halflife_steps) else 0.0
