"""Innovation kinds: the unit-variance shocks that drive the diffusion, and the residual sample.

* ``gaussian``: ``eps = L z``, ``z`` standard normal, ``L`` a factor of the correlation.
* ``student_t``: ``eps = L z sqrt((nu - 2) / W)``, ``W ~ chi2(nu)``: one mixing variable per draw, so
  the assets are jointly t (tails arrive together) and each coordinate has unit variance.
* ``historical``: filtered historical simulation (Barone-Adesi, Giannopoulos & Vosper 1999, "VaR
  without correlations for portfolios of derivative securities", J. Futures Markets 19(5); the CCP
  initial-margin method). A GARCH is fitted per asset, the residuals are standardised,
  ``z_t = r_t / sqrt(h_t)``, and each simulated bar draws a *whole cross-asset vector* ``z_t``
  uniformly with replacement from that sample, then rescales it by the simulated conditional vol.
  The sample carries the cross-asset dependence (and its tail dependence, skew and kurtosis), so no
  correlation factor is applied on top of it.

At load (``load_residuals``) the sample is standardised per asset to mean 0 and variance 1
(``(z - mean) / std``, population std), the unit innovation the GARCH update sees, so its variance
ratio keeps its target; the sample's own scale ``k = std`` multiplies the return (``scale``, applied to
the asset's vol by ``config.build``). A fit's residuals are ``x_t / sqrt(h_t)`` with ``h_t`` the GARCH
variance around the *non-jump* variance (``assets.vol``), and they keep the jump bars: ``k^2`` is the
window's total variance over that target (1.07, 1.02, 1.03, 1.34 for BTC, ETH, SOL, DOGE in 2020-21; the
file must hold standardised residuals: a std per asset outside ``SCALE_BOUNDS`` is refused), so the simulated
return variance is the data's, jumps included, as Barone-Adesi et al.'s ``sigma_sim * z_hist`` gives.
Mean 0: zero drift, the risk model's default. The resampling index of a draw is ``floor(u n)`` of a
uniform ``u`` from the draw's own counter (``random``), so results do not depend on chunking.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import random as R

INNOVATIONS = ("gaussian", "student_t", "historical")
MIN_RESIDUAL_ROWS = 250
SCALE_BOUNDS = (0.2, 5.0)  # a residual file's std per asset: outside, the file is not standardised residuals
GAMMA_TRIES = 8

# Stream ids of one draw of the innovation: per step, or per bar (``PriceModel.bar_steps`` > 1).
STEP_STREAMS = {"normal": R.PRICE, "student": R.STUDENT, "accept": R.STUDENT_ACCEPT, "resample": R.RESAMPLE}
BAR_STREAMS = {"normal": R.BAR_PRICE, "student": R.BAR_STUDENT, "accept": R.BAR_STUDENT_ACCEPT,
               "resample": R.BAR_RESAMPLE}


def integer_nu(nu: float) -> bool:
    return float(nu).is_integer() and nu <= 32


class StudentLaw(eqx.Module):
    """The mixing variable ``W ~ chi2(nu)`` of Student-t innovations: what shapes the computation is static,
    the values are traced, so a new ``nu`` of the same structure (a refit, a sweep) does not recompile.

    Structure (static): integer ``nu <= 32`` draws ``k = nu // 2`` uniforms (plus one normal if ``nu`` is
    odd, ``odd``); any other ``nu`` draws ``GAMMA_TRIES`` Marsaglia-Tsang candidates (``k = -1``): all
    non-integer values share one compiled program. Values (traced, ``()`` arrays of the model's dtype):
    ``nu``, and the constants the draw uses, rounded once from float64 on the host (so a run is the same
    bit for bit as with ``nu`` a compile-time constant): ``nu - 2`` and Marsaglia-Tsang's
    ``d = nu / 2 - 1/3``, ``c = 1 / sqrt(9 d)``."""

    nu: jax.Array
    nu_minus_2: jax.Array
    gamma_d: jax.Array
    gamma_c: jax.Array
    k: int = eqx.field(static=True, default=-1)
    odd: bool = eqx.field(static=True, default=False)

    @classmethod
    def build(cls, nu: float, dtype=jnp.float32) -> StudentLaw:
        """The law of ``nu`` > 2 (raises ``ValueError`` naming ``nu`` and the bound)."""
        nu = float(nu)
        if not (nu > 2 and math.isfinite(nu)):
            raise ValueError(f"nu: Student-t degrees of freedom must be > 2 for a finite variance (got {nu})")
        k, odd = divmod(int(nu), 2) if integer_nu(nu) else (-1, 0)
        d = nu / 2.0 - 1.0 / 3.0
        return cls(*(jnp.asarray(v, dtype) for v in (nu, nu - 2.0, d, 1.0 / math.sqrt(9.0 * d))), k=k,
                   odd=bool(odd))

    def at(self, nu) -> StudentLaw:
        """The law at another value ``nu`` (a traced array is fine: a sweep under ``vmap``/``jit``), the
        structure kept, the constants computed in the graph (within an ulp of ``build``'s). Replace the
        whole law, never ``nu`` alone: the constants derive from it. A non-integer structure needs
        ``nu > 2``; an integer one needs the same integer (not checked on traced values)."""
        nu = jnp.asarray(nu, self.nu.dtype)
        d = nu / 2.0 - 1.0 / 3.0
        return StudentLaw(nu, nu - 2.0, d, jax.lax.rsqrt(9.0 * d), k=self.k, odd=self.odd)


def innovation_spec(kind: str, law: StudentLaw | None, n_assets: int, streams: dict) -> tuple:
    """The streams one innovation draw uses: ((stream, n, kind), ...) for ``random.draw``."""
    if kind == "historical":
        return ((streams["resample"], 1, "uniform"),)
    spec = [(streams["normal"], n_assets, "normal")]
    if kind == "student_t":
        if law.k >= 0:
            spec += [(streams["student"], law.k, "uniform")] if law.k else []
            spec += [(streams["accept"], 1, "normal")] if law.odd else []
        else:
            spec += [(streams["student"], GAMMA_TRIES, "normal"), (streams["accept"], GAMMA_TRIES, "uniform")]
    return tuple(spec)


def student_mixing(d: dict, law: StudentLaw, streams: dict, dtype):
    """``W / (nu - 2)`` with ``W ~ chi2(nu)`` from the draw's streams; ``eps = z / sqrt(that)``.

    Integer nu <= 32, exact and rejection-free: chi2(2k) = -2 log(U_1...U_k) (a Gamma(k, 2)), plus
    one squared normal when nu is odd; otherwise W = 2 Gamma(nu/2) by Marsaglia-Tsang (``gamma_dc``)."""
    if law.k >= 0:
        w = jnp.zeros((), dtype)
        if law.k:
            w = -2.0 * jnp.sum(jnp.log(d[streams["student"]]))
        if law.odd:
            w = w + d[streams["accept"]][0] ** 2
    else:
        w = 2.0 * R.gamma_dc(d[streams["student"]], d[streams["accept"]], law.gamma_d, law.gamma_c)
    return w / law.nu_minus_2


def resample(sample, u):
    """Row ``floor(u n)`` of the residual sample (n, assets): a uniform bootstrap draw of a whole vector."""
    n = sample.shape[0]
    i = jnp.clip(jnp.floor(u[0] * n).astype(jnp.int32), 0, n - 1)
    return jax.lax.dynamic_index_in_dim(sample, i, axis=0, keepdims=False)


def block_uniform(u, offset, n: int, block: int, starts=None, count=None):
    """The uniform ``resample`` reads for position ``offset`` of a block: the moving-block bootstrap.

    Moving-block bootstrap (Kuensch 1989, "The jackknife and the bootstrap for general stationary
    observations", Ann. Statist. 17(3)): ``u`` is the block's own uniform (drawn once per block, keyed by
    the path and the block index: chunk invariant); the block's first row is ``s = floor(u (n - B + 1))``
    (every block lies inside the sample) and position ``j = offset mod B`` reads row ``s + j``, returned
    as the row's midpoint ``(s + j + 1/2) / n`` so that ``resample`` picks it exactly (float32 rounding
    moves it by < 1e-7 n, far below 1/2 for any sample that fits in memory). B consecutive residual
    vectors keep the dependence the GARCH leaves within B bars (sign and size clustering, the leverage
    effect); blocks are independent. ``u`` (1,), ``offset`` an integer array; returns (1,).

    A sample whose rows' times are known (``block_starts``): ``starts`` (n - B + 1,) int32 holds the
    ``count`` first rows whose B rows are consecutive bars first, and the block starts at
    ``starts[floor(u count)]``, uniform over those, so no block joins two sides of a gap."""
    if starts is None:
        start = jnp.clip(jnp.floor(u * (n - block + 1)).astype(jnp.int32), 0, n - block)
    else:
        k = jnp.clip(jnp.floor(u * count.astype(u.dtype)).astype(jnp.int32), 0, count - 1)
        start = jnp.take(starts, k, axis=0)
    row = start + jnp.asarray(offset, jnp.int32) % block
    return (row.astype(u.dtype) + 0.5) / n


def block_starts(times, bar_seconds: float, block: int):
    """The moving blocks of a residual sample: ``(starts, count)`` for ``block_uniform``, or None when the
    rows' ``times`` are unknown or ``block`` is 1. Returned even without gaps (all starts valid: the same
    rows as ``floor(u (n - B + 1))``), so refit samples with and without gaps share one compiled program.

    Rows ``s .. s + B - 1`` form a block iff each row's time is the previous one's plus ``bar_seconds``
    (a row dropped by the fit, a return across a missing bar, breaks it). ``starts`` (n - B + 1,) int32:
    the ``count`` valid first rows in order, then zeros (never read), so its shape does not depend on the
    gaps (a new sample of the same size does not recompile).

    Raises:
        ValueError: no run of ``block`` consecutive bars in the sample.
    """
    if times is None or block <= 1:
        return None
    t = np.asarray(times, np.int64)
    n = len(t)
    breaks = np.concatenate([[0], np.cumsum(np.diff(t) != int(round(bar_seconds)))])  # breaks among the first i
    first = np.arange(n - block + 1)
    valid = breaks[first + block - 1] == breaks[first]
    if not valid.any():
        raise ValueError(f"block_bars: no run of {block} consecutive {bar_seconds:g} s bars in the residual "
                         "sample (gaps everywhere); use shorter blocks (perpjax fit --block-bars)")
    starts = np.zeros(n - block + 1, np.int32)
    idx = np.flatnonzero(valid)
    starts[:len(idx)] = idx
    return starts, len(idx)


def auto_block_bars(n: int) -> int:
    """The moving-block length for ``n`` residual rows: ``round(n^(1/4))`` (Hall, Horowitz & Jing 1995,
    "On blocking rules for the bootstrap with dependent data", Biometrika 82(3): the order that
    minimises the error of distribution-function and quantile estimates, which VaR and liquidation
    probabilities are; n^(1/3) is the order for variances). 10 for a year of hourly bars."""
    if n < 1:
        raise ValueError(f"n: need at least one residual row (got {n})")
    return max(1, int(round(n ** 0.25)))


def standardise(z: np.ndarray) -> np.ndarray:
    """Per-asset ``(z - mean) / std`` (population std): mean 0, variance 1, shape kept."""
    z = np.asarray(z, np.float64)
    return (z - z.mean(axis=0)) / z.std(axis=0)


def sample_correlation(sample: np.ndarray) -> np.ndarray:
    """Correlation of a standardised sample, ``z^T z / n`` (exactly unit diagonal up to rounding)."""
    c = sample.T @ sample / sample.shape[0]
    d = np.sqrt(np.diag(c))
    c = c / d[:, None] / d[None, :]
    np.fill_diagonal(c, 1.0)
    return 0.5 * (c + c.T)


class ResidualSample(NamedTuple):
    """A loaded residual file: ``sample`` (n, assets) standardised (mean 0, variance 1 per asset),
    ``bar_seconds``, ``times`` (n,) of the rows or None, ``scale`` (assets,) the file's own std per asset,
    ``feed`` (n, assets) the squared innovation the GARCH update sees for each row (``garch_feed``; None
    without a ``jumps`` array: the update sees the row's own square)."""

    sample: np.ndarray
    bar_seconds: float
    times: np.ndarray | None
    scale: np.ndarray
    feed: np.ndarray | None = None


def garch_feed(z: np.ndarray, jumps: np.ndarray) -> np.ndarray:
    """Per row and asset, the squared innovation a fitted GARCH's update sees: the fit (``fit_garch``) and the
    state filter enter a jump bar as an average shock (``x^2 = var``) and every other bar as itself, so
    here a jump row feeds 1 and another row ``((z - mean) / s)^2``, ``s`` the root mean square of the non-jump
    rows around the mean: ``E[feed] = 1`` exactly, the variance target holds, and a resampled jump moves the
    price without multiplying the next bars' variance by ``1 + alpha z^2`` (a |z| = 10 row under DOGE's
    alpha 0.125 did, tenfold, while the calm rows, at mean square 0.7, let it decay between jumps)."""
    z = np.asarray(z, np.float64)
    jumps = np.asarray(jumps, bool)
    x = z - z.mean(axis=0)
    calm = np.where(jumps, 0.0, x * x)
    n_calm = np.maximum((~jumps).sum(axis=0), 1)
    s2 = calm.sum(axis=0) / n_calm
    return np.where(jumps, 1.0, x * x / s2)


def load_residuals(path, names) -> ResidualSample:
    """Read a residual file (``numpy.savez``: ``residuals`` (n, assets) float, ``assets`` (assets,) str,
    ``bar_seconds``, optional ``times`` (n,) of the rows): ``ResidualSample``.

    Raises ``ValueError`` naming the file and the rule: missing or unreadable file, missing array,
    assets not the config's (names and order), fewer than ``MIN_RESIDUAL_ROWS`` rows, non-finite
    values, a column with no variance, a bar length not > 0."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"file not found: {p}")
    try:
        with np.load(p, allow_pickle=False) as f:
            data = {k: np.asarray(f[k]) for k in f.files}
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same config error
        raise ValueError(f"cannot read {p} as an npz file ({type(e).__name__}: {e})") from None
    for key in ("residuals", "assets", "bar_seconds"):
        if key not in data:
            raise ValueError(f"{p}: no array {key!r} (has {sorted(data)})")
    assets = [str(a) for a in np.atleast_1d(data["assets"]).tolist()]
    if assets != list(names):
        raise ValueError(f"{p}: residual assets {assets} do not match the config's assets {list(names)} "
                         "(same names, same order)")
    try:
        z = np.asarray(data["residuals"], np.float64)
        bar = float(np.asarray(data["bar_seconds"], np.float64).reshape(()))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{p}: residuals and bar_seconds must be numeric ({e})") from None
    if z.ndim != 2 or z.shape[1] != len(names):
        raise ValueError(f"{p}: residuals must have shape (n, {len(names)}), got {z.shape}")
    if z.shape[0] < MIN_RESIDUAL_ROWS:
        raise ValueError(f"{p}: {z.shape[0]} residual rows, need at least {MIN_RESIDUAL_ROWS}")
    if not np.all(np.isfinite(z)):
        bad = np.argwhere(~np.isfinite(z))[0]
        raise ValueError(f"{p}: residuals must be finite (row {bad[0]}, asset {names[bad[1]]} is {z[tuple(bad)]})")
    if np.any(z.std(axis=0) <= 0):
        raise ValueError(f"{p}: a residual column has zero variance")
    if not (math.isfinite(bar) and bar > 0):
        raise ValueError(f"{p}: bar_seconds must be > 0 (got {bar})")
    times = None
    if "times" in data:
        times = np.asarray(data["times"]).astype(np.int64).reshape(-1)
        if times.shape != (z.shape[0],) or np.any(np.diff(times) <= 0):
            raise ValueError(f"{p}: times must be increasing, one per residual row "
                             f"({times.shape} for {z.shape[0]} rows)")
    k = z.std(axis=0)
    if np.any((k < SCALE_BOUNDS[0]) | (k > SCALE_BOUNDS[1])):
        i = int(np.argmax((k < SCALE_BOUNDS[0]) | (k > SCALE_BOUNDS[1])))
        raise ValueError(f"{p}: residuals of {names[i]} have std {k[i]:.4g}, outside [{SCALE_BOUNDS[0]:g}, "
                         f"{SCALE_BOUNDS[1]:g}]: the rows must be GARCH-standardised residuals (a fit writes std "
                         "1.0-1.2), and their std scales the simulated vol; raw returns or percent units would "
                         "not be")
    feed = None
    if "jumps" in data:
        jumps = np.asarray(data["jumps"]).astype(bool)
        if jumps.shape != z.shape:
            raise ValueError(f"{p}: jumps must have the residuals' shape {z.shape} (got {jumps.shape})")
        if np.any(jumps.sum(axis=0) > 0.5 * len(z)):
            raise ValueError(f"{p}: more than half of an asset's rows are flagged as jumps")
        feed = garch_feed(z, jumps)
    return ResidualSample(standardise(z), bar, times, k, feed)


def winsorised_moments(kind: str, nu: float, cap: float, sample=None) -> tuple[np.ndarray, np.ndarray]:
    """``(E[w], E[w^2])`` per asset of the winsorised squared unit innovation ``w = min(eps^2, cap)``.

    Gaussian: ``eps^2 ~ chi2(1)``; Student-t: ``eps^2 nu / (nu - 2) ~ F(1, nu)``; historical: the sample's
    means. Integrals by quadrature below the cap plus ``cap^k P(eps^2 > cap)``."""
    from scipy import integrate, stats

    if kind == "historical":
        w = np.minimum(np.asarray(sample, np.float64) ** 2, cap)
        return w.mean(axis=0), (w * w).mean(axis=0)
    nu = float(np.asarray(nu, np.float64)) if kind == "student_t" else math.nan  # float or StudentLaw.nu
    k = (nu - 2.0) / nu if kind == "student_t" else 1.0
    law = stats.f(1.0, nu) if kind == "student_t" else stats.chi2(1)
    c = cap / k
    m = [cap**p * law.sf(c) + k**p * integrate.quad(lambda x, p=p: x**p * law.pdf(x), 0.0, c, limit=200)[0]
         for p in (1, 2)]
    n = 1 if sample is None else np.shape(sample)[1]
    return np.full(n, m[0]), np.full(n, m[1])


def variance_persistence(a, b, m1, m2):
    """``a^2 E[w^2] / E[w]^2 + 2 a b + b^2``: the GARCH(1,1) variance ratio has a finite variance iff < 1
    (its second-moment recursion, fed ``z2 = v2 w / E[w]``; Bollerslev 1986, He & Terasvirta 1999)."""
    return a * a * m2 / (m1 * m1) + 2.0 * a * b + b * b
