"""Correlated price paths: time grid, diffusion, fat tails and jumps.

Log prices of ``assets`` follow, per step of length ``dt`` (years),

    x_{t+1} = x_t + (mu - sigma^2/2 - lambda*kappa) dt + sigma sqrt(dt) (L eps)_t + J_t

with ``L`` a factor of the correlation matrix (Cholesky when positive definite),
``eps`` standard normal or multivariate Student-t scaled to unit variance (one
chi-square mixing variable per step, so correlations are kept and tails are
jointly heavy), and ``J_t`` a compound-Poisson (Merton) jump with log-normal
sizes, compensated by ``kappa = E[e^Y] - 1`` so ``mu`` stays the expected return.

On top of it (each optional, costing nothing when off): ``Garch``, a GARCH(1,1)
variance ratio on each asset's diffusion in variance-targeting form
(unconditional variance = the configured vol); ``Regimes``, a calm / stress
correlation (and vol and depth multipliers) switching by a Markov chain, on a
market-wide selloff (the equal-weighted log price falls ``drawdown`` below its
EWMA) or on a schedule; and the scenario schedule's shocks or replayed path
(``scenario.Schedule``). ``price_step`` composes them into one step of the log price.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats as _stats

from . import random as R
from ._validate import concrete, finite, nonneg, positive, shape

SECONDS_PER_YEAR = 365.0 * 86400.0
INNOVATIONS = ("gaussian", "student_t")
SWITCHES = ("markov", "shock", "schedule")


class TimeGrid(eqx.Module):
    """Uniform simulation grid.

    Attributes:
        step_seconds: length of one step (s).
        horizon_seconds: simulated horizon (s); a whole number of steps.
    """

    step_seconds: float = eqx.field(static=True)
    horizon_seconds: float = eqx.field(static=True)

    def __check_init__(self):
        if not (self.step_seconds > 0 and math.isfinite(self.step_seconds)):
            raise ValueError(f"step_seconds: must be > 0 (got {self.step_seconds})")
        if not (self.horizon_seconds >= self.step_seconds):
            raise ValueError(
                f"horizon_seconds: must be >= step_seconds ({self.step_seconds}), got {self.horizon_seconds}"
            )
        n = self.horizon_seconds / self.step_seconds
        if abs(n - round(n)) > 1e-9:
            raise ValueError(
                f"horizon_seconds: must be a whole number of steps of {self.step_seconds} s "
                f"(got {self.horizon_seconds})"
            )

    @property
    def n_steps(self) -> int:
        return int(round(self.horizon_seconds / self.step_seconds))

    @property
    def dt_years(self) -> float:
        return self.step_seconds / SECONDS_PER_YEAR

    def steps_of(self, seconds: float, field: str) -> int:
        """Convert a duration to a whole number of steps, or raise naming ``field``."""
        n = seconds / self.step_seconds
        if n < 1 - 1e-9 or abs(n - round(n)) > 1e-9:
            raise ValueError(
                f"{field}: must be a positive multiple of the step ({self.step_seconds} s), got {seconds}"
            )
        return int(round(n))


def correlation_factor(corr) -> np.ndarray:
    """Validate a correlation matrix and return a factor ``L`` with ``L L^T = corr``.

    Cholesky when positive definite; an eigen-factor when only semi-definite
    (e.g. two perfectly correlated assets). Raises ``ValueError`` naming the rule.
    """
    c = finite("correlation", corr)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"correlation: must be a square matrix, got shape {c.shape}")
    if not np.allclose(c, c.T, atol=1e-10):
        raise ValueError("correlation: must be symmetric")
    if not np.allclose(np.diag(c), 1.0, atol=1e-10):
        raise ValueError(f"correlation: diagonal must be 1 (got {np.diag(c).tolist()})")
    if np.any(np.abs(c) > 1 + 1e-12):
        raise ValueError("correlation: entries must lie in [-1, 1]")
    eig = np.linalg.eigvalsh(c)
    if eig.min() < -1e-10:
        raise ValueError(
            f"correlation: must be positive semi-definite (smallest eigenvalue {eig.min():.3g} < 0)"
        )
    try:
        return np.linalg.cholesky(c)
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(c)
        return v * np.sqrt(np.clip(w, 0.0, None))


class PriceDraw(NamedTuple):
    """Random inputs of one step: normals, the t mixing variable W/(nu-2) (1 if Gaussian), jumps."""

    z: jax.Array  # (assets,) independent standard normals
    w: jax.Array  # () chi-square mixing variable over (nu - 2); eps = z / sqrt(w)
    jump: jax.Array  # (assets,) sum of log jump sizes


class PriceModel(eqx.Module):
    """Correlated GBM with optional Student-t innovations and Merton jumps.

    Attributes:
        s0: initial prices (USD), shape (assets,).
        vol: annualised volatility of the diffusion (fraction), (assets,).
        drift: annualised expected return (fraction), (assets,).
        factor: correlation factor L, (assets, assets).
        innovations: "gaussian" or "student_t".
        nu: Student-t degrees of freedom (> 2; variance scaled to 1).
        jump_intensity: jumps per year, (assets,); all zero disables jumps.
        jump_mean, jump_std: mean and std of the log jump size, (assets,).
        max_jumps: jumps per step kept by the truncated Poisson draw (static).
        jump_cdf: P(N <= k) for k = 0 .. max_jumps-1 of the per-step jump count,
            (assets, max_jumps); computed once by ``build`` from the intensity and step.
    """

    s0: jax.Array
    vol: jax.Array
    drift: jax.Array
    factor: jax.Array
    jump_intensity: jax.Array
    jump_mean: jax.Array
    jump_std: jax.Array
    jump_cdf: jax.Array | None = None
    innovations: str = eqx.field(static=True, default="gaussian")
    nu: float = eqx.field(static=True, default=5.0)
    jumps: bool = eqx.field(static=True, default=False)
    max_jumps: int = eqx.field(static=True, default=3)

    def __check_init__(self):
        if not concrete(self.s0, self.vol, self.drift, self.factor):
            return
        n = np.asarray(self.s0).shape[0] if np.ndim(self.s0) == 1 else -1
        if n < 1:
            raise ValueError("s0: must be a 1-d array of initial prices")
        positive("s0", self.s0)
        nonneg("vol", shape("vol", self.vol, (n,)))
        finite("drift", shape("drift", self.drift, (n,)))
        finite("factor", shape("factor", self.factor, (n, n)))
        nonneg("jump_intensity", shape("jump_intensity", self.jump_intensity, (n,)))
        finite("jump_mean", shape("jump_mean", self.jump_mean, (n,)))
        nonneg("jump_std", shape("jump_std", self.jump_std, (n,)))
        if self.innovations not in INNOVATIONS:
            raise ValueError(f"innovations: must be one of {INNOVATIONS}, got {self.innovations!r}")
        if self.innovations == "student_t" and not (self.nu > 2 and math.isfinite(self.nu)):
            raise ValueError(f"nu: Student-t degrees of freedom must be > 2 for a finite variance (got {self.nu})")

    @classmethod
    def build(cls, s0, vol, drift, correlation, *, innovations="gaussian", nu=5.0,
              jump_intensity=None, jump_mean=None, jump_std=None, dt_years=None, dtype=jnp.float32):
        """Build from a correlation matrix (validated) rather than a factor."""
        s0 = np.atleast_1d(np.asarray(s0, np.float64))
        n = s0.shape[0]
        L = correlation_factor(shape("correlation", correlation, (n, n)))
        zeros = np.zeros(n)
        ji = zeros if jump_intensity is None else np.broadcast_to(np.asarray(jump_intensity, np.float64), (n,))
        jm = zeros if jump_mean is None else np.broadcast_to(np.asarray(jump_mean, np.float64), (n,))
        js = zeros if jump_std is None else np.broadcast_to(np.asarray(jump_std, np.float64), (n,))
        nonneg("jump_intensity", ji)
        jumps = bool(np.any(ji > 0))
        max_jumps, cdf = 3, None
        if jumps:
            if dt_years is None:
                raise ValueError("dt_years: jumps need the step length to set their per-step count law")
            # Smallest truncation K with P(N > K) < 1e-12 for the largest per-step intensity.
            lam = ji * dt_years
            max_jumps = int(_stats.poisson.isf(1e-12, float(lam.max()))) + 1
            cdf = _stats.poisson.cdf(np.arange(max_jumps)[None, :], lam[:, None])

        def arr(a):
            return jnp.asarray(a, dtype)
        return cls(s0=arr(s0), vol=arr(np.broadcast_to(vol, (n,))), drift=arr(np.broadcast_to(drift, (n,))),
                   jump_cdf=None if cdf is None else arr(cdf), factor=arr(L),
                   jump_intensity=arr(ji), jump_mean=arr(jm), jump_std=arr(js),
                   innovations=innovations, nu=float(nu), jumps=jumps, max_jumps=max_jumps)

    @property
    def n_assets(self) -> int:
        return self.s0.shape[0]

    GAMMA_TRIES = 8

    def draw_spec(self) -> tuple:
        """The streams one step draws: ((stream, n, kind), ...) for ``random.draw``."""
        a = self.n_assets
        spec = [(R.PRICE, a, "normal")]
        if self.innovations == "student_t":
            if self._integer_nu:
                k, odd = divmod(int(self.nu), 2)
                spec += [(R.STUDENT, k, "uniform")] if k else []
                spec += [(R.STUDENT_ACCEPT, 1, "normal")] if odd else []
            else:
                spec += [(R.STUDENT, self.GAMMA_TRIES, "normal"), (R.STUDENT_ACCEPT, self.GAMMA_TRIES, "uniform")]
        if self.jumps:
            spec += [(R.JUMP_COUNT, a, "uniform"), (R.JUMP_SIZE, a, "normal")]
        return tuple(spec)

    @property
    def _integer_nu(self) -> bool:
        return float(self.nu).is_integer() and self.nu <= 32

    def draw_from(self, d: dict) -> PriceDraw:
        """Build one step's ``PriceDraw`` from its streams ({stream: array}, see ``draw_spec``).

        Student-t: eps = z * sqrt((nu-2)/W), W ~ chi2(nu), one W per step so the
        assets are jointly t. Integer nu <= 32, exact and rejection-free:
        chi2(2k) = -2 log(U_1...U_k) (a Gamma(k, 2)), plus one squared normal when
        nu is odd; otherwise W = 2 Gamma(nu/2) by Marsaglia-Tsang.
        """
        z = d[R.PRICE]
        w = jnp.ones((), z.dtype)
        if self.innovations == "student_t":
            if self._integer_nu:
                k, odd = divmod(int(self.nu), 2)
                w = jnp.zeros((), z.dtype)
                if k:
                    w = -2.0 * jnp.sum(jnp.log(d[R.STUDENT]))
                if odd:
                    w = w + d[R.STUDENT_ACCEPT][0] ** 2
            else:
                w = 2.0 * R.gamma_from(d[R.STUDENT], d[R.STUDENT_ACCEPT], self.nu / 2.0)
            w = w / (self.nu - 2.0)
        jump = jnp.zeros_like(z)
        if self.jumps:
            # Inverse-CDF Poisson count, truncated at max_jumps (thresholds precomputed by build).
            count = jnp.sum(d[R.JUMP_COUNT][:, None] > self.jump_cdf, axis=1).astype(z.dtype)
            jump = count * self.jump_mean + jnp.sqrt(count) * self.jump_std * d[R.JUMP_SIZE]
        return PriceDraw(z=z, w=w, jump=jump)

    def draw(self, pkey, t) -> PriceDraw:
        """The random inputs of step ``t`` of the path keyed ``pkey``."""
        spec = self.draw_spec()
        return self.draw_from(R.split(R.draw(pkey, t, spec, self.s0.dtype), spec))

    def innovation_from(self, d: PriceDraw, factor=None) -> jax.Array:
        """Correlated unit-variance innovations ``L eps``, (assets,); ``factor`` replaces L (stress regime)."""
        eps = d.z * jax.lax.rsqrt(d.w) if self.innovations == "student_t" else d.z
        return jnp.sum((self.factor if factor is None else factor) * eps[None, :], axis=-1)

    def innovation(self, pkey, t) -> jax.Array:
        """Correlated unit-variance innovations ``L eps`` for step ``t`` of a path, (assets,)."""
        return self.innovation_from(self.draw(pkey, t))

    def log_drift(self, dt_years: float, scale=None) -> jax.Array:
        """Deterministic part of the log return per step (Ito and jump compensation);
        ``scale`` multiplies the diffusion vol (GARCH, stress regime)."""
        comp = self.jump_intensity * (jnp.exp(self.jump_mean + 0.5 * self.jump_std**2) - 1.0)
        vol = self.vol if scale is None else self.vol * scale
        return (self.drift - 0.5 * vol**2 - comp) * dt_years

    def log_return_from(self, d: PriceDraw, dt_years: float, scale=None, innovation=None) -> jax.Array:
        """Log return of every asset over one step, given that step's draws, (assets,).

        ``scale``: factor on the diffusion vol, (assets,) (GARCH, stress regime);
        ``innovation``: the correlated innovations when already computed (stress factor)."""
        inn = self.innovation_from(d) if innovation is None else innovation
        vol = self.vol if scale is None else self.vol * scale
        return self.log_drift(dt_years, scale) + vol * math.sqrt(dt_years) * inn + d.jump

    def log_return(self, pkey, t, dt_years: float) -> jax.Array:
        """Log return of every asset over step ``t`` of the path keyed ``pkey``, (assets,)."""
        return self.log_return_from(self.draw(pkey, t), dt_years)

    def covariance(self) -> jax.Array:
        """Annualised covariance of the diffusion log returns, (assets, assets)."""
        c = self.factor @ self.factor.T
        return c * self.vol[:, None] * self.vol[None, :]


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


def price_step(prices: PriceModel, d: dict, x, v2, stress, t, dt, *, regimes: Regimes | None = None,
               garch: Garch | None = None, schedule=None):
    """Log true price after step ``t``'s exogenous move, and the next GARCH variance ratio.

    ``d``: the step's draws by stream; ``x``, ``v2``: log price and GARCH variance ratio before the
    step (``v2`` None without GARCH); ``stress``: this step's regime (None without regimes);
    ``schedule``: a ``scenario.Schedule`` (shocks added, or a replayed path instead of the draws)."""
    if schedule is not None and schedule.replace:
        return x + schedule.log_return[t - 1], v2
    draw = prices.draw_from(d)
    factor = scale = None
    if regimes is not None:
        factor = jnp.where(stress, regimes.stress_factor, prices.factor)
        scale = jnp.where(stress, regimes.vol_multiplier, 1.0)
    v2_next = v2
    if garch is not None:
        scale = jnp.sqrt(v2) if scale is None else scale * jnp.sqrt(v2)
    inn = prices.innovation_from(draw, factor)
    r = prices.log_return_from(draw, dt, scale=scale, innovation=inn)
    if garch is not None:
        # The GARCH sees the diffusion return without the stress regime's multiplier: fed back, the
        # multiplier m would make the variance grow whenever a (m^2 - 1) > 1 - a - b (no steady state).
        z = inn * jnp.sqrt(v2)  # diffusion return / (vol m sqrt(dt))
        v2_next = garch.update(v2, z * z)
    if schedule is not None and schedule.log_return is not None:
        r = r + schedule.log_return[t - 1]
    return x + r, v2_next
