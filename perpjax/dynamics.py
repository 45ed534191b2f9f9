"""Volatility and regime dynamics of the price model: ``Garch`` (GARCH(1,1) variance ratio) and
``Regimes`` (calm / stress correlation, vol and depth). Both carry their state at the forecast origin
(``Garch.v2_0``, ``Regimes.stress0``, config ``market_state``) as traced array fields, so a new
origin's state does not recompile the simulation."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .checks import concrete, nonneg, positive

SWITCHES = ("markov", "shock", "schedule")


class Garch(eqx.Module):
    """GARCH(1,1) on the diffusion variance ratio ``v2`` (mean 1), per step:

        v2' = (1 - a - b) + a * z2 + b * v2,   z2 = r^2 / (vol^2 dt)

    with ``r`` the step's diffusion log return divided by the stress regime's vol multiplier (the
    regime scales the vol on top of GARCH; fed back it would make the variance explode in
    stress whenever ``a (m^2 - 1) > 1 - a - b``). Parameters fitted at a bar of
    ``m`` steps (e.g. hourly bars, minute steps: m = 60) are mapped to the step
    by keeping the persistence per unit time, ``a + b = (alpha + beta)^(1/m)``,
    and the response to a bar's worth of squared returns, ``a = alpha / m``
    (first-order temporal aggregation; exact as m -> 1). With innovations drawn per bar
    (``bars``, config ``innovations.bar_seconds``) it updates once per bar instead, with
    (alpha, beta) at the bar and the bar's squared standardised innovation.

    Stationarity: ``alpha + beta < 1`` (checked), so ``E[v2] = 1`` from any start. The variance of
    ``v2`` is finite iff ``a^2 E[z^4] + 2ab + b^2 < 1``; Student-t with nu <= 4 has ``E[z^4] = inf``
    and hourly GARCH paths then reach implausible variances. ``cap`` (config ``garch.winsorize``)
    feeds the update ``min(eps^2, cap) / E[min(eps^2, cap)]``: the variance target stays exact
    (``E[z2 | v2] = v2``) and the fourth moment finite (the config checks the condition above).
    """

    alpha: jax.Array  # (assets,) per step (per bar with ``PriceModel.bar_steps`` > 1)
    beta: jax.Array  # (assets,) per step (per bar with ``PriceModel.bar_steps`` > 1)
    v2_0: jax.Array | None = None  # (assets,) variance ratio at the origin (None: 1); config market_state
    cap: jax.Array | None = None  # () winsorising cap on the squared unit innovation (None: none)
    cap_mean: jax.Array | None = None  # () E[min(eps^2, cap)] of the innovation law (keeps E[z2] = 1)

    def __check_init__(self):
        if concrete(self.alpha, self.beta):
            a, b = nonneg("alpha", self.alpha), nonneg("beta", self.beta)
            if np.any(a + b >= 1):
                raise ValueError(f"alpha + beta: must be < 1 for a finite variance (got {(a + b).tolist()})")
        if self.v2_0 is not None and concrete(self.v2_0):
            positive("variance_ratio", self.v2_0)

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

    def update_unit(self, v2, inn, sq=None):
        """The update fed the unit-variance innovation ``inn`` of a return at variance ratio ``v2``:
        ``z2 = inn^2 v2``; with a ``cap``, ``z2 = v2 min(inn^2, cap) / E[min(inn^2, cap)]`` (a
        winsorised squared innovation renormalised so that ``E[z2 | v2] = v2`` and the variance target
        stays exact, while the fourth moment that drives the GARCH's own variance stays finite). ``sq``
        (historical innovations): the drawn row's own feed replaces ``inn^2`` (``innovations.garch_feed``)."""
        if sq is not None:  # historical innovations with a GARCH feed per row (``innovations.garch_feed``)
            w = sq if self.cap is None else jnp.minimum(sq, self.cap) / self.cap_mean
            return self.update(v2, v2 * w)
        if self.cap is None:
            z = inn * jnp.sqrt(v2)
            return self.update(v2, z * z)
        return self.update(v2, v2 * jnp.minimum(inn * inn, self.cap) / self.cap_mean)

    def initial(self, like):
        """The variance ratio at t = 0: ``v2_0`` (market_state), or 1."""
        return jnp.ones_like(like) if self.v2_0 is None else self.v2_0.astype(like.dtype)


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
    stress0: jax.Array | None = None  # () bool, regime at the origin (None: calm); config market_state

    def initial(self, dtype):
        """(regime, EWMA reference) at t = 0. Starting in stress with the ``shock`` switch puts the
        reference ``drawdown`` above the level (the entry threshold), so the regime holds until the
        market recovers half of it, as a path that entered stress by itself would."""
        stress = jnp.zeros((), bool) if self.stress0 is None else jnp.asarray(self.stress0, bool)
        ref = jnp.zeros((), dtype)
        if self.stress0 is not None and self.switch == "shock":
            ref = jnp.where(stress, self.drawdown.astype(dtype), ref)
        return stress, ref

    def __check_init__(self):
        if self.switch not in SWITCHES:
            raise ValueError(f"switch: must be one of {SWITCHES} (got {self.switch!r})")
        if concrete(self.vol_multiplier, self.depth_factor, self.p_enter, self.p_exit, self.drawdown):
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


def ref_alpha_from_halflife(halflife_steps: float) -> float:
    return 1.0 - 0.5 ** (1.0 / halflife_steps) if math.isfinite(halflife_steps) else 0.0


def step_scale(calm_factor, stress, regimes: Regimes | None, garch: Garch | None, v2):
    """(correlation factor or None, vol scale or None) of a step: the stress regime's factor (else
    ``calm_factor``) and vol multiplier, times ``sqrt(v2)`` with GARCH; None where nothing applies."""
    factor = scale = None
    if regimes is not None:
        factor = jnp.where(stress, regimes.stress_factor, calm_factor)
        scale = jnp.where(stress, regimes.vol_multiplier, 1.0)
    if garch is not None:
        scale = jnp.sqrt(v2) if scale is None else scale * jnp.sqrt(v2)
    return factor, scale
