"""Correlated price paths: time grid, diffusion, fat tails and jumps.

Log prices of ``assets`` follow, per step of length ``dt`` (years),

    x_{t+1} = x_t + (mu - sigma^2/2 - lambda*kappa) dt + sigma sqrt(dt) (L eps)_t + J_t

with ``L`` a factor of the correlation matrix (Cholesky when positive definite),
``eps`` a unit-variance innovation (``innovations``: standard normal, multivariate
Student-t with one chi-square mixing variable per step so tails are jointly heavy,
or a bootstrapped vector of standardised residuals - filtered historical
simulation, which carries its own dependence instead of ``L``), and ``J_t`` a
compound-Poisson (Merton) jump with log-normal sizes, compensated by
``kappa = E[e^Y] - 1`` so ``mu`` stays the expected return.

On top of it (each optional, costing nothing when off; ``dynamics``): ``Garch``, a
GARCH(1,1) variance ratio on each asset's diffusion in variance-targeting form
(unconditional variance = the configured vol; its value at the origin from config
``market_state``); ``Regimes``, a calm / stress correlation (and vol and depth
multipliers) switching by a Markov chain, on a market-wide selloff (the
equal-weighted log price falls ``drawdown`` below its EWMA) or on a schedule; the
innovations drawn per bar and bridged inside it (``bars``); and the scenario
schedule's shocks or replayed path (``scenario.Schedule``). ``price_step`` composes
them into one step of the log price; ``step_covariance`` is that step's conditional
diffusion covariance (for the barrier-crossing bridge).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats as _stats

from . import innovations as I
from . import random as R
from .bars import BarState, bar_step
from .checks import concrete, finite, nonneg, positive, shape
from .dynamics import Garch, Regimes, step_scale
from .innovations import INNOVATIONS

SECONDS_PER_YEAR = 365.0 * 86400.0


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
    sq: jax.Array | None = None  # (assets,) historical: the row's GARCH feed (``innovations.garch_feed``)


class PriceModel(eqx.Module):
    """Correlated GBM with optional Student-t innovations and Merton jumps.

    Attributes:
        s0: initial prices (USD), shape (assets,).
        vol: annualised volatility of the diffusion (fraction), (assets,).
        drift: annualised expected return (fraction), (assets,).
        factor: correlation factor L, (assets, assets).
        innovations: "gaussian", "student_t" or "historical".
        student: Student-t only: the mixing law (``innovations.StudentLaw``): ``nu`` (> 2; variance
            scaled to 1) is a traced value, only the draw's structure (integer nu <= 32, or not) is
            static, so a new nu does not recompile; ``nu`` reads it.
        jump_intensity: jumps per year, (assets,); all zero disables jumps.
        jump_mean, jump_std: mean and std of the log jump size, (assets,).
        max_jumps: jumps per step kept by the truncated Poisson draw (static).
        jump_cdf: P(N <= k) for k = 0 .. max_jumps-1 of the per-step jump count,
            (assets, max_jumps); computed once by ``build`` from the intensity and step.
        residuals: "historical" only: the standardised residual sample (n, assets) that filtered
            historical simulation resamples (``innovations``); a traced field, so a new sample of
            the same size does not recompile. ``factor`` is then the sample's correlation factor
            (used only by Gaussian pieces: the sub-bar bridge noise and the barrier bridge).
        bar_steps: steps per bar (static). 1: one innovation per step (the diffusion above).
            m > 1: the innovation is drawn once per bar of ``m`` steps (at the bar, keyed by the bar
            index) and the steps inside the bar follow a Brownian bridge to the bar's return
            (``bars.bar_step``), so the bar's distribution does not depend on the step.
        block_bars: historical only, static: innovations per bootstrap block. 1: each bar (each step
            without bars) draws an independent residual vector; B > 1: moving blocks of B consecutive
            vectors (``innovations.block_uniform``), one uniform per block drawn at the block index.
        block_starts, block_count: a block bootstrap of a sample whose rows' times are known
            (``innovations.block_starts``): the (n - B + 1,) int32 first rows of the blocks of consecutive
            bars, ``count`` of them valid (a ``()`` int32); None (times unknown): every start is, the first
            row ``floor(u (n - B + 1))``.
    """

    s0: jax.Array
    vol: jax.Array
    drift: jax.Array
    factor: jax.Array
    jump_intensity: jax.Array
    jump_mean: jax.Array
    jump_std: jax.Array
    jump_cdf: jax.Array | None = None
    residuals: jax.Array | None = None
    residual_feed: jax.Array | None = None
    block_starts: jax.Array | None = None
    block_count: jax.Array | None = None
    student: I.StudentLaw | None = None
    innovations: str = eqx.field(static=True, default="gaussian")
    jumps: bool = eqx.field(static=True, default=False)
    max_jumps: int = eqx.field(static=True, default=3)
    bar_steps: int = eqx.field(static=True, default=1)
    block_bars: int = eqx.field(static=True, default=1)

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
        if (self.innovations == "student_t") != (self.student is not None):
            raise ValueError("student: a Student-t law (StudentLaw) is needed with student_t, and only then")
        if (self.innovations == "historical") != (self.residuals is not None):
            raise ValueError("residuals: a residual sample is needed with historical innovations, and only then")
        if self.residuals is not None:
            shape("residuals", self.residuals, (np.shape(self.residuals)[0], n))
            finite("residuals", self.residuals)
        if self.residual_feed is not None:
            if self.residuals is None:
                raise ValueError("residual_feed: only with a residual sample")
            nonneg("residual_feed", shape("residual_feed", self.residual_feed, np.shape(self.residuals)))
        if not (isinstance(self.bar_steps, int) and self.bar_steps >= 1):
            raise ValueError(f"bar_steps: must be an integer >= 1 (got {self.bar_steps!r})")
        if not (isinstance(self.block_bars, int) and self.block_bars >= 1):
            raise ValueError(f"block_bars: must be an integer >= 1 (got {self.block_bars!r})")
        if self.block_bars > 1 and self.residuals is None:
            raise ValueError("block_bars: a block bootstrap needs historical innovations (a residual sample)")
        if self.residuals is not None and self.block_bars > np.shape(self.residuals)[0]:
            raise ValueError(f"block_bars: {self.block_bars} exceeds the {np.shape(self.residuals)[0]} residual rows")
        if (self.block_starts is None) != (self.block_count is None):
            raise ValueError("block_starts, block_count: both or neither")
        if self.block_starts is not None:
            if self.block_bars == 1:
                raise ValueError("block_starts: only with a block bootstrap (block_bars > 1)")
            rows = np.shape(self.residuals)[0] - self.block_bars + 1
            shape("block_starts", self.block_starts, (rows,))
            c = int(np.asarray(self.block_count))
            first = np.asarray(self.block_starts)[:c]
            if not (1 <= c <= rows and np.all(first >= 0) and np.all(first < rows)):
                raise ValueError(f"block_starts: need 1 <= block_count <= {rows} first rows in 0 .. {rows - 1}")

    @classmethod
    def build(cls, s0, vol, drift, correlation, *, innovations="gaussian", nu=5.0,
              jump_intensity=None, jump_mean=None, jump_std=None, dt_years=None, dtype=jnp.float32,
              residuals=None, bar_steps=1, block_bars=1, block_starts=None, residual_feed=None):
        """Build from a correlation matrix (validated) rather than a factor. ``residuals``: the
        standardised sample of historical innovations, whose correlation then replaces ``correlation``;
        ``block_starts``: ``innovations.block_starts``'s ``(starts, count)`` or None; ``residual_feed``: the
        GARCH feed of each residual row (``innovations.garch_feed``) or None."""
        s0 = np.atleast_1d(np.asarray(s0, np.float64))
        n = s0.shape[0]
        L = correlation_factor(shape("correlation", correlation, (n, n)))
        if residuals is not None:
            L = correlation_factor(I.sample_correlation(shape("residuals", residuals, (np.shape(residuals)[0], n))))
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
                   residuals=None if residuals is None else arr(residuals), innovations=innovations,
                   residual_feed=None if residual_feed is None else arr(residual_feed),
                   block_starts=None if block_starts is None else jnp.asarray(block_starts[0], jnp.int32),
                   block_count=None if block_starts is None else jnp.asarray(block_starts[1], jnp.int32),
                   student=I.StudentLaw.build(nu, dtype) if innovations == "student_t" else None,
                   jumps=jumps, max_jumps=max_jumps, bar_steps=int(bar_steps), block_bars=int(block_bars))

    @property
    def n_assets(self) -> int:
        return self.s0.shape[0]

    @property
    def nu(self):
        """Student-t degrees of freedom (a traced ``()`` array), None for other innovations."""
        return None if self.student is None else self.student.nu

    def draw_spec(self) -> tuple:
        """The streams one step draws: ((stream, n, kind), ...) for ``random.draw``. With bars
        (``bar_steps`` > 1) the step draws the bridge's normals; the bar's innovation is ``bar_spec``."""
        a = self.n_assets
        if self.bar_steps > 1:
            spec = [(R.PRICE, a, "normal")]
        elif self.block_bars > 1:
            spec = []  # the block's uniform is drawn at the block index (``bar_spec``)
        else:
            spec = list(I.innovation_spec(self.innovations, self.student, a, I.STEP_STREAMS))
        if self.jumps:
            spec += [(R.JUMP_COUNT, a, "uniform"), (R.JUMP_SIZE, a, "normal")]
        return tuple(spec)

    def bar_spec(self) -> tuple:
        """The streams drawn once per ``group_steps`` steps, at the group index: the bar's innovation
        (with bars), or the bootstrap block's uniform (``block_bars`` > 1); empty otherwise."""
        if self.bar_steps == 1:
            return ((R.RESAMPLE, 1, "uniform"),) if self.block_bars > 1 else ()
        return I.innovation_spec(self.innovations, self.student, self.n_assets, I.BAR_STREAMS)

    @property
    def group_steps(self) -> int:
        """Steps per draw of the ``bar_spec`` streams: a bar, or a block of ``block_bars`` bars."""
        return self.bar_steps * self.block_bars

    def group_draw(self, pkey, t, dtype=None):
        """The ``bar_spec`` streams of step ``t`` (flat, empty without bars or blocks): drawn at the group
        index ``(t - 1) // group_steps + 1``, so every step of a bar (a block) sees the same draw; with
        blocks the block's uniform is mapped to the row of the bar's position in its block
        (``innovations.block_uniform``)."""
        spec = self.bar_spec()
        dtype = self.s0.dtype if dtype is None else dtype
        if not spec:
            return jnp.zeros((0,), dtype)
        t = jnp.asarray(t, jnp.int32)
        g = R.draw(pkey, (t - 1) // self.group_steps + 1, spec, dtype)
        if self.block_bars == 1:
            return g
        return I.block_uniform(g, (t - 1) // self.bar_steps, self.residuals.shape[0], self.block_bars,
                               self.block_starts, self.block_count)

    def _unit_draw(self, d: dict, streams: dict):
        """(z, w, sq) of one innovation draw: normals and the t mixing variable, or the resampled vector
        and (with a feed) its row's GARCH feed; sq is None otherwise."""
        if self.innovations == "historical":
            u = d[streams["resample"]]
            z = I.resample(self.residuals, u)
            sq = None if self.residual_feed is None else I.resample(self.residual_feed, u)
            return z, jnp.ones((), z.dtype), sq
        z = d[streams["normal"]]
        w = jnp.ones((), z.dtype)
        if self.innovations == "student_t":
            w = I.student_mixing(d, self.student, streams, z.dtype)
        return z, w, None

    def draw_from(self, d: dict) -> PriceDraw:
        """Build one step's ``PriceDraw`` from its streams ({stream: array}, see ``draw_spec``).

        Student-t: eps = z * sqrt((nu-2)/W), W ~ chi2(nu), one W per step so the assets are jointly
        t (``innovations.student_mixing``); historical: z is the resampled residual vector. With
        bars, z are the bridge's normals (the bar's innovation is ``bar_draw_from``)."""
        sq = None
        if self.bar_steps > 1:
            z = d[R.PRICE]
            w = jnp.ones((), z.dtype)
        else:
            z, w, sq = self._unit_draw(d, I.STEP_STREAMS)
        jump = jnp.zeros_like(z)
        if self.jumps:
            # Inverse-CDF Poisson count, truncated at max_jumps (thresholds precomputed by build).
            count = jnp.sum(d[R.JUMP_COUNT][:, None] > self.jump_cdf, axis=1).astype(z.dtype)
            jump = count * self.jump_mean + jnp.sqrt(count) * self.jump_std * d[R.JUMP_SIZE]
        return PriceDraw(z=z, w=w, jump=jump, sq=sq)

    def bar_draw_from(self, d: dict) -> PriceDraw:
        """The bar's innovation draw (no jumps: those stay per step), from the ``bar_spec`` streams."""
        z, w, sq = self._unit_draw(d, I.BAR_STREAMS)
        return PriceDraw(z=z, w=w, jump=jnp.zeros_like(z), sq=sq)

    def draw(self, pkey, t) -> PriceDraw:
        """The random inputs of step ``t`` of the path keyed ``pkey`` (with bars: the bridge's; see
        ``bar_draw_from``)."""
        spec = self.draw_spec()
        flat = R.draw(pkey, t, spec, self.s0.dtype)
        if self.bar_steps == 1 and self.block_bars > 1:
            spec += self.bar_spec()
            flat = jnp.concatenate([flat, self.group_draw(pkey, t)])
        return self.draw_from(R.split(flat, spec))

    def innovation_from(self, d: PriceDraw, factor=None) -> jax.Array:
        """Correlated unit-variance innovations ``L eps``, (assets,); ``factor`` replaces L (stress regime)."""
        if self.innovations == "historical":
            return d.z  # the resampled vector carries its own dependence (filtered historical simulation)
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


def price_step(prices: PriceModel, d: dict, x, v2, stress, t, dt, *, regimes: Regimes | None = None,
               garch: Garch | None = None, schedule=None, bar: BarState | None = None):
    """Log true price after step ``t``'s exogenous move, the next GARCH variance ratio and bar state.

    ``d``: the step's draws by stream; ``x``, ``v2``: log price and GARCH variance ratio before the
    step (``v2`` None without GARCH); ``stress``: this step's regime (None without regimes);
    ``schedule``: a ``scenario.Schedule`` (shocks added, or a replayed path instead of the draws);
    ``bar``: the bar state with ``bar_steps`` > 1 (``bars.bar_step``), else None."""
    if schedule is not None and schedule.replace:
        return x + schedule.log_return[t - 1], v2, bar
    if prices.bar_steps > 1:
        r, v2_next, bar = bar_step(prices, d, v2, stress, t, dt, bar, regimes=regimes, garch=garch)
    else:
        draw = prices.draw_from(d)
        factor, scale = step_scale(prices.factor, stress, regimes, garch, v2)
        inn = prices.innovation_from(draw, factor)
        r = prices.log_return_from(draw, dt, scale=scale, innovation=inn)
        # The GARCH sees the diffusion return without the stress regime's multiplier: fed back, the
        # multiplier m would make the variance grow whenever a (m^2 - 1) > 1 - a - b (no steady state).
        v2_next = v2 if garch is None else garch.update_unit(v2, inn, draw.sq)
    if schedule is not None and schedule.log_return is not None:
        r = r + schedule.log_return[t - 1]
    return x + r, v2_next, bar


def step_covariance(prices: PriceModel, dt, v2, stress, *, regimes=None, garch=None, bar: BarState | None = None):
    """Covariance of the step's diffusion log returns, conditional on the step's state, as
    ``(cov, sd)``: the covariance is ``cov o (sd sd^T)``, ``sd`` (assets,) or None (then ``cov`` alone).

    ``C o (vol s)(vol s)^T dt`` with ``C`` the step's correlation (stress or calm; the residual sample's
    for historical innovations) and ``s`` the GARCH / stress scale. Inside a bar the local rate of the
    bar's Brownian bridge, ``V / m`` per step (a bridge pinned at the bar end has the same local
    quadratic variation as the free motion). Without GARCH, regimes or bars: the constant
    ``covariance() dt``. The split keeps ``cov`` shared by all paths unless the regime switches the
    correlation. Used by the barrier-crossing bridge (``Liquidation.bridge_crossed``)."""
    if bar is None and regimes is None and garch is None:
        return prices.covariance() * dt, None
    factor, scale = step_scale(prices.factor, stress, regimes, garch, v2)
    if factor is None or prices.innovations == "historical":
        factor = prices.factor
    c = factor @ factor.T
    if bar is not None:
        return c, jnp.sqrt(bar.var / prices.bar_steps)
    return c * prices.vol[:, None] * prices.vol[None, :] * dt, scale
