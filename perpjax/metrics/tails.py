"""Tail statistics and Monte Carlo errors: VaR / ES with standard errors, binomial intervals, and when a
standard error is not given.

A standard error rests on the paths that carry it: an ES's on the paths beyond its VaR (the others all
give the same Rockafellar-Uryasev term), a VaR's on the order statistics around it, a probability's on
the paths with the event (or without it, whichever are fewer), a zero-heavy mean's on its non-zero
paths. Below ``MIN_TAIL_PATHS`` such paths an SE is not estimated (NaN from the array functions, None
in a run's summary, so ``null`` in summary.json) and the count is given instead: "n/a (0 paths beyond)",
never "± 0.00".
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

import numpy as np

from .stream import PathTable, PerPath, combine_moments, inverted_cdf_rank, keys_of, order_statistics, per_path

LEVELS = (0.95, 0.99, 0.999)
Z95 = 1.959963984540054
MIN_TAIL_PATHS = 10
"""Fewest paths an SE may rest on. The textbook condition for the normal approximation of a binomial
count (n p >= 10 and n (1 - p) >= 10); at 10 paths beyond a VaR the 95 % order-statistic interval
(± 1.96 sqrt(10) = ± 6.2 ranks) stays inside the sample, and the SD of the ES terms rests on 10 values
(relative error of the SE about 1 / sqrt(2 x 10) = 22 % for a light tail; more for a heavy one). With 0 paths
beyond, the ES terms are all equal to the VaR and their SD is 0: an SE of 0 that says nothing."""


def wilson(k, n, z: float = Z95):
    """Wilson score interval for a binomial proportion; arrays in, (low, high) out."""
    k = np.asarray(k, np.float64)
    p = k / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    # Exact ends at k = 0 and k = n (the formula gives them up to rounding).
    return np.where(k == 0, 0.0, centre - half), np.where(k == n, 1.0, centre + half)


def proportion_se(p: float, n: int) -> float | None:
    """The binomial SE sqrt(p (1 - p) / n) of a share ``p`` of ``n`` paths; None when fewer than
    ``MIN_TAIL_PATHS`` paths have the event or fewer lack it."""
    k = round(p * n)
    if min(k, n - k) < MIN_TAIL_PATHS:
        return None
    return float(math.sqrt(p * (1 - p) / n))


def mean_se(sd: float, n: int, carriers: int) -> float | None:
    """sd / sqrt(n), the SE of a mean of ``n`` paths; None when fewer than ``MIN_TAIL_PATHS`` paths
    (``carriers``: e.g. those with non-zero bad debt) carry the variation."""
    if n < 2 or carriers < MIN_TAIL_PATHS:
        return None
    return float(sd / math.sqrt(n))


def level_key(alpha: float) -> str:
    """0.99 -> '99', 0.999 -> '99_9': the level in the summary's metric names."""
    return f"{alpha * 100:g}".replace(".", "_")


class Tail(NamedTuple):
    """VaR and ES of losses at one level, their SEs (NaN below ``MIN_TAIL_PATHS`` paths beyond the VaR)
    and ``beyond``: the paths whose loss exceeds the VaR."""

    var: float
    es: float
    var_se: float
    es_se: float
    beyond: int


def var_es_table(table: PathTable, specs: dict, levels, n: int) -> dict:
    """(name, alpha) -> ``Tail`` of losses ``specs[name]`` at each level (see ``var_es``).

    Passes: the exact order statistics, then one pass for every ES (each chunk sorted once: on one
    chunk the sums run in the order ``var_es`` on an array always used)."""
    half = {a: Z95 * math.sqrt(n * a * (1 - a)) for a in levels}
    rk = {a: (inverted_cdf_rank(n, a), int(np.clip(math.floor(n * a - half[a]), 0, n - 1)),
              int(np.clip(math.ceil(n * a + half[a]), 0, n - 1))) for a in levels}
    f64 = {name: PerPath(sp.keys, _as_f64(sp.fn)) for name, sp in specs.items()}
    stats = order_statistics(table, f64, {name: {r for a in levels for r in rk[a]} for name in specs})
    var = {(name, a): stats[name][rk[a][0]] for name in specs for a in levels}
    single = table.n_chunks == 1
    parts = {key: [] for key in var}
    beyond = dict.fromkeys(var, 0)
    for chunk in table.chunks(keys_of(specs.values())):
        for name, sp in f64.items():
            xs = np.sort(sp.of(chunk))
            for a in levels:
                y = var[name, a] + np.maximum(xs - var[name, a], 0.0) / (1 - a)
                beyond[name, a] += int(np.count_nonzero(xs > var[name, a]))
                if single:
                    parts[name, a] = (y.size, y.mean(), y.std(ddof=1) if y.size > 1 else 0.0)
                elif y.size:
                    s = float(y.sum())
                    parts[name, a].append((y.size, s, float(np.sum((y - s / y.size) ** 2))))
    res = {}
    for (name, a), v in var.items():
        _, lo, hi = rk[a]
        _, mean, sd = parts[name, a] if single else combine_moments(parts[name, a], True)
        k = beyond[name, a]
        ok = k >= MIN_TAIL_PATHS and n > 1
        vse = (stats[name][hi] - stats[name][lo]) / (2 * Z95) if ok else math.nan
        res[name, a] = Tail(v, float(mean), float(vse), float(sd / math.sqrt(n)) if ok else math.nan, k)
    return res


def _as_f64(fn):
    if fn is None:
        return lambda x: np.asarray(x, np.float64)
    return lambda *xs: np.asarray(fn(*xs), np.float64)


def var_es(x, alpha: float):
    """Value-at-risk and expected shortfall of losses ``x`` at level ``alpha``, with standard errors:
    (VaR, ES, VaR SE, ES SE).

    VaR is the empirical alpha-quantile (``inverted_cdf``); its SE comes from the distribution-free
    binomial interval of order statistics (width / 2z). ES is the mean of
    ``Y = VaR + (x - VaR)^+ / (1 - alpha)`` (Rockafellar-Uryasev), SE = std(Y)/sqrt(n). Both SEs are NaN
    when fewer than ``MIN_TAIL_PATHS`` losses exceed the VaR (``var_es_table`` gives the count).
    ``x``: an array (one chunk) or a ``(PathTable, PerPath)`` pair (streamed: ``var_es_table``).
    """
    if isinstance(x, tuple):
        table, spec = x
        n = table.source.n_paths
    else:
        x = np.asarray(x, np.float64).ravel()
        table, spec, n = PathTable({"x": x}), per_path("x"), x.size
    return tuple(var_es_table(table, {"x": spec}, (alpha,), n)["x", alpha][:4])


_TAIL_KEY = re.compile(r"(.+)_(?:var|es)_(\d+(?:_\d+)?)")


def beyond_key(name: str, alpha: float) -> str:
    """The summary key of the paths beyond the VaR of loss ``name`` at ``alpha``: ``bad_debt_paths_beyond_99``."""
    return f"{name}_paths_beyond_{level_key(alpha)}"


def missing_se(summary: dict, key: str) -> str | None:
    """What ``summary`` gives instead of the standard error of ``key`` when its ``KEY_se`` is None or NaN:
    "0 paths beyond" (a VaR or ES: ``*_paths_beyond_*``), "3 of 500 paths" (a probability), "4 paths with
    bad debt" (the bad-debt mean); None where the SE is given or ``key`` has none."""
    if f"{key}_se" not in summary:
        return None
    se = summary[f"{key}_se"]
    if se is not None and se == se:
        return None
    m = _TAIL_KEY.fullmatch(key)
    if m and f"{m[1]}_paths_beyond_{m[2]}" in summary:
        k = int(summary[f"{m[1]}_paths_beyond_{m[2]}"])
        return f"{k:,} path{'' if k == 1 else 's'} beyond"
    n = summary.get("paths")
    if not n:
        return "too few paths"
    if key.startswith("p_") and summary.get(key) is not None:
        return f"{round(summary[key] * n):,} of {n:,} paths"
    if key == "bad_debt_mean" and summary.get("p_bad_debt") is not None:
        k = round(summary["p_bad_debt"] * n)
        return f"{k:,} path{'' if k == 1 else 's'} with bad debt"
    return "too few paths"
