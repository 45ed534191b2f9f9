"""Market references: oracle (index), perp basis, mark price and funding.

Which price drives what (the convention used throughout perpjax):

* the **true price** ``S`` is the simulated spot price (``paths.PriceModel``);
* the **oracle / index** is ``S`` as the venue observes it: updated every
  ``update_every`` steps and frozen in between (staleness);
* the perp's **mid** is ``S * (1 + basis)``; forced orders fill against the
  perp book around this mid (``liquidation.DepthModel``);
* the **mark** is built from the oracle (and basis) and drives every margin
  check and the liquidation trigger;
* **funding** is paid on the mark or on the oracle (``Funding.price``).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .checks import concrete, finite, nonneg, positive

MARK_KINDS = ("index", "ema", "premium_ema")
ROUNDING = ("nearest", "floor", "ceil", "toward_zero", "away_from_zero")
WEIGHTING = ("uniform", "linear")


class Oracle(eqx.Module):
    """Index price as the venue sees it: refreshed every ``update_every`` steps."""

    update_every: int = eqx.field(static=True, default=1)

    def __check_init__(self):
        if not (isinstance(self.update_every, int) and self.update_every >= 1):
            raise ValueError(f"update_every: must be an integer >= 1 (got {self.update_every})")

    def observe(self, t, true_price, previous):
        if self.update_every == 1:
            return true_price
        return jnp.where(t % self.update_every == 0, true_price, previous)


class Basis(eqx.Module):
    """Perp premium over index, ``(mid - index) / index``: an Ornstein-Uhlenbeck process.

    Attributes:
        mean: long-run basis (fraction), (assets,).
        stationary_std: stationary standard deviation (fraction), (assets,).
        half_life_seconds: mean-reversion half-life (s), (assets,).
    """

    mean: jax.Array
    stationary_std: jax.Array
    half_life_seconds: jax.Array
    crowding: jax.Array | None
    stochastic: bool = eqx.field(static=True)

    def __init__(self, mean, stationary_std, half_life_seconds, stochastic=None, crowding=None):
        self.mean, self.stationary_std, self.half_life_seconds = mean, stationary_std, half_life_seconds
        if stochastic is None:  # static: a zero-variance basis draws nothing
            stochastic = not concrete(stationary_std) or bool(np.any(np.asarray(stationary_std) > 0))
        self.stochastic = stochastic
        # Funding crowding: the basis reverts to mean + crowding * (net / gross open interest of the book).
        self.crowding = None if crowding is None or (concrete(crowding) and not np.any(np.asarray(crowding))) \
            else crowding

    @property
    def moves(self) -> bool:
        """Whether the basis changes over time (noise or crowding)."""
        return self.stochastic or self.crowding is not None

    def __check_init__(self):
        if concrete(self.mean, self.stationary_std, self.half_life_seconds):
            finite("mean", self.mean)
            nonneg("stationary_std", self.stationary_std)
            positive("half_life_seconds", self.half_life_seconds)

    def step(self, b, z, step_seconds: float, imbalance=None):
        """Exact OU transition over one step given standard normals ``z`` (None: no noise).

        ``imbalance``: the book's net / gross open interest per asset; with crowding the
        process reverts to ``mean + crowding * imbalance`` (crowded longs pay more funding).
        """
        a = jnp.exp(-math.log(2.0) * step_seconds / self.half_life_seconds)
        target = self.mean if self.crowding is None else self.mean + self.crowding * imbalance
        out = target + (b - target) * a
        return out if z is None else out + self.stationary_std * jnp.sqrt(1.0 - a * a) * z


class MarkPrice(eqx.Module):
    """Mark price rule.

    * ``index``: mark = oracle.
    * ``ema``: mark is an EMA of the oracle with time constant ``window_seconds``
      (``alpha = 1 - exp(-dt / window)`` per step). It lags: after a spike that
      reverts, the mark is still displaced.
    * ``premium_ema``: mark = oracle * (1 + EMA of the basis) (Hyperliquid-style
      oracle + EMA(mid - oracle)).
    """

    window_seconds: jax.Array
    kind: str = eqx.field(static=True, default="index")

    def __check_init__(self):
        if self.kind not in MARK_KINDS:
            raise ValueError(f"kind: must be one of {MARK_KINDS}, got {self.kind!r}")
        if concrete(self.window_seconds):
            positive("window_seconds", self.window_seconds)

    def alpha(self, step_seconds: float):
        return 1.0 - jnp.exp(-step_seconds / self.window_seconds)

    def init(self, index, basis):
        """Initial (state, mark). The state is what the rule carries between steps."""
        if self.kind == "premium_ema":
            return basis, index * (1.0 + basis)
        return index, index

    def update(self, state, index, basis, step_seconds: float):
        """Advance one step; returns (state, mark)."""
        if self.kind == "index":
            return index, index
        a = self.alpha(step_seconds)
        if self.kind == "ema":
            m = state + a * (index - state)
            return m, m
        e = state + a * (basis - state)
        return e, index * (1.0 + e)

    @property
    def has_brownian_part(self) -> bool:
        """Whether the mark inherits the index's quadratic variation (bridge applies)."""
        return self.kind in ("index", "premium_ema")


def round_to_quantum(x, quantum: float, mode: str):
    """Round ``x`` to a multiple of ``quantum`` (0 disables) in the given direction."""
    if quantum == 0:
        return x
    y = x / quantum
    if mode == "nearest":
        r = jnp.round(y)
    elif mode == "floor":
        r = jnp.floor(y)
    elif mode == "ceil":
        r = jnp.ceil(y)
    elif mode == "toward_zero":
        r = jnp.trunc(y)
    else:  # away_from_zero
        r = jnp.sign(y) * jnp.ceil(jnp.abs(y))
    return r * quantum


class Funding(eqx.Module):
    """Discrete funding payments.

    Per interval: ``P = weighted mean of premium samples`` (one sample per step;
    ``linear`` weights 1, 2, ..., n as Binance, or ``uniform``);
    ``F = scale * (P + clamp(I - P, -clamp, +clamp))``, clipped to ``±cap``, rounded to
    ``quantum`` in direction ``rounding``. Each position pays
    ``size * price * F`` at the interval's end (longs pay shorts when F > 0),
    ``price`` being the mark or the oracle index.

    Attributes:
        interest: interest rate per interval I (fraction; 1e-4 = 0.01%).
        clamp: bound on I - P (fraction).
        cap: absolute cap on F (fraction per interval).
        scale: factor on the clamped rate: 1 (Binance 8 h), N/8 for Binance N-hour
            intervals, 1/8 for Hyperliquid's hourly payment of the 8-hour rate.
        interval_steps: steps per funding interval (static).
        quantum: rounding quantum of F (0 = none).
        rounding: rounding direction.
        price: "mark" or "index".
        weighting: "linear" or "uniform" premium averaging.
        enabled: False disables funding entirely.
    """

    interest: jax.Array
    clamp: jax.Array
    cap: jax.Array
    interval_steps: int = eqx.field(static=True, default=480)
    scale: float = eqx.field(static=True, default=1.0)
    quantum: float = eqx.field(static=True, default=0.0)
    rounding: str = eqx.field(static=True, default="nearest")
    price: str = eqx.field(static=True, default="mark")
    weighting: str = eqx.field(static=True, default="linear")
    enabled: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        if concrete(self.interest, self.clamp, self.cap):
            finite("interest", self.interest)
            nonneg("clamp", self.clamp)
            nonneg("cap", self.cap)
        if not (isinstance(self.interval_steps, int) and self.interval_steps >= 1):
            raise ValueError(f"interval_steps: must be an integer >= 1 (got {self.interval_steps})")
        if not (self.quantum >= 0 and math.isfinite(self.quantum)):
            raise ValueError(f"quantum: must be >= 0 (got {self.quantum})")
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError(f"scale: must be > 0 (got {self.scale})")
        if self.rounding not in ROUNDING:
            raise ValueError(f"rounding: must be one of {ROUNDING}, got {self.rounding!r}")
        if self.price not in ("mark", "index"):
            raise ValueError(f"price: must be 'mark' or 'index', got {self.price!r}")
        if self.weighting not in WEIGHTING:
            raise ValueError(f"weighting: must be one of {WEIGHTING}, got {self.weighting!r}")

    def sample_weight(self, t, dtype):
        """Weight of the premium sample taken at step ``t`` (1-based within the run)."""
        if self.weighting == "uniform":
            return 1.0
        return ((t - 1) % self.interval_steps + 1).astype(dtype)

    @property
    def weight_total(self) -> float:
        n = self.interval_steps
        return float(n) if self.weighting == "uniform" else n * (n + 1) / 2.0

    def rate(self, premium_avg):
        """Funding rate per interval from the averaged premium."""
        f = premium_avg + jnp.clip(self.interest - premium_avg, -self.clamp, self.clamp)
        f = jnp.clip(self.scale * f, -self.cap, self.cap)
        return round_to_quantum(f, self.quantum, self.rounding)

    def is_payment_step(self, t):
        return t % self.interval_steps == 0
