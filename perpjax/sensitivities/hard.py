"""The hard engine's side: its per-path venue metrics at a parameter value, and central differences.

Each parameter value runs ``engine.simulate`` on the same seed and paths (common random numbers: the
same path keys, hence the same draws, at every bump), so per path ``i`` the central difference

    d_i = (m_i(x + h) - m_i(x - h)) / (2 h)

of its metric contribution ``m_i`` has mean the finite difference of the metric, and its standard
error is ``std(d) / sqrt(n)``. A mean's contribution is the path's value; an expected shortfall's is
its Rockafellar-Uryasev term ``VaR + (x_i - VaR)^+ / (1 - alpha)`` (VaR of that run), whose mean is
the ES (``metrics.var_es``).
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np

from ..engine import simulate
from .params import Base, apply


class HardRun(NamedTuple):
    """Per-path values of one hard run and its wall time per path (chunks after the first when there are
    several; a run's first call also compiles, so compare runs after the first)."""

    bad_debt: np.ndarray
    n_liquidated: np.ndarray
    depleted: np.ndarray
    seconds_per_path: float


def hard_run(model, *, seed: int, n_paths: int, chunk_size) -> HardRun:
    """``engine.simulate`` at ``model`` and the per-path values the metrics need."""
    stamps = [time.perf_counter()]
    done = [0]

    def progress(d, total):
        stamps.append(time.perf_counter())
        done.append(d)

    out = simulate(model, seed=seed, n_paths=n_paths, chunk_size=chunk_size, progress=progress)
    first = 1 if len(stamps) > 2 else 0  # skip the chunk that compiled, when there is another
    per_path = (stamps[-1] - stamps[first]) / max(done[-1] - done[first], 1)
    depleted = ((np.asarray(out.path_adl) + np.asarray(out.path_uncovered)) > 0).astype(np.float64)
    return HardRun(np.asarray(out.path_bad_debt, np.float64), np.asarray(out.path_n_liquidations, np.float64),
                   depleted, per_path)


def hard_bumped(model, base: Base, bumps: dict, *, seed: int, n_paths: int, chunk_size) -> dict:
    """{name: (run at -h, run at +h)} for every parameter's bump ``h``."""
    return {n: tuple(hard_run(apply(model, {n: s * h}, base), seed=seed, n_paths=n_paths, chunk_size=chunk_size)
                     for s in (-1.0, 1.0))
            for n, h in bumps.items()}


def es_terms(x, alpha: float) -> np.ndarray:
    """Per-path Rockafellar-Uryasev terms whose mean is the expected shortfall at ``alpha``."""
    x = np.asarray(x, np.float64)
    var = float(np.quantile(x, alpha, method="inverted_cdf"))
    return var + np.maximum(x - var, 0.0) / (1.0 - alpha)
