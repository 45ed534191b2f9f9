"""Liquidation cascades: permanent price impact of forced flow, and episode bookkeeping.

* ``Impact`` closes the loop between liquidations and prices. The book's net
  forced flow in an asset over a step, ``Q`` (USD, + = buys), moves the log
  price permanently by

      dlog S = sign(Q) * psi * d0 * (|Q| / D)^e

  with ``D`` the depth within ``d0`` of mid (``depth.DepthModel``, after decay),
  ``psi`` the share of the walk's far edge the price keeps once the book
  refills (``permanent_fraction``) and ``e`` = 1 (``linear``, Almgren-Chriss's
  permanent impact linear in volume), 0.5 (``sqrt``, the square-root law of
  DOMAIN.md section 5) or a configured exponent (``power``). The fills
  themselves pay the temporary impact of the depth model as before. The moved
  price is the next step's true price, so it reaches the index, the mark,
  funding and every account's margin: forced flow can trigger the next
  liquidations (a cascade).
* ``CascadeMonitor``: episodes of chained liquidation rounds (rounds no more
  than ``window`` steps apart), their sizes, the units that start them, and the
  price drawdown with and without feedback on the same random path. The
  no-feedback path is the price minus the cumulative impact; with a ``shock``
  regime switch or GARCH, whose state follows the moved price, it is the
  same draws rather than an exact feedback-free rerun (run without the
  ``cascade`` impact for that).

Both plug into the engine's step (``engine.step.step``) through ``cascade_step``.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .checks import concrete, nonneg

IMPACT_LAWS = {"linear": 1.0, "sqrt": 0.5, "power": None}
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


def cascade_step(impact: Impact | None, mon: CascadeMonitor, c: CascadeState, t, x, flow, depth, executed,
                 notional):
    """One step of feedback and bookkeeping: (next step's log price, updated ``CascadeState``).

    ``flow``: (assets,) net forced flow (USD, + = buys) and ``depth``: (assets,) depth within d0 after
    decay, both only used (and None allowed) without ``impact``; the other arguments as ``cascade_update``.
    """
    move, x_next = jnp.zeros_like(x), x
    if impact is not None:
        move = impact.log_move(flow, depth)
        x_next = x + move
    return x_next, cascade_update(mon, c, t, x, move, executed, notional)
