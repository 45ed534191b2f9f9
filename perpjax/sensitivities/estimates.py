"""Metric gradients from per-path contributions: the pathwise estimate, the finite difference, their z.

For each venue metric and parameter both estimates are means over the same paths of a per-path
contribution (``g_i`` pathwise, ``d_i`` the hard engine's central difference, ``hard``), so

* each standard error is ``std / sqrt(n)`` of its contributions;
* ``z`` is the disagreement over the combined standard error ``sqrt(se_g^2 + se_fd^2)``; ``agree``
  when ``|z| <= Z_AGREE``. Common random numbers make the two estimates positively correlated, so
  the combined error is conservative; ``z_paired`` divides by the paired error
  ``std(g_i - d_i) / sqrt(n)`` instead: it resolves the relaxation's bias where the metric is smooth
  in the parameter (depth, spread: the two estimates then differ by ~0.1 %, many paired SEs);
* where both estimates and both errors lie below the resolution floor (``SE_FLOOR``: float32 rounding
  of the relaxed Jacobian) nothing moves the metric on these paths: no z and no verdict
  (``UNRESOLVED``), rather than "agrees" between 1e-12 and 0;
* a finite difference whose per-path differences are non-zero on fewer than ``MIN_TAIL_PATHS`` paths
  (``metrics``: e.g. no path depletes the fund at either bump) has no SE and the row no z (``FEW_PATHS``):
  "0 ± 0" from no path that changes is not a measurement;
* a pathwise column that is zero by construction (``zero_by_construction``: the fund moves no relaxed
  output, so its Jacobian column is 0 for every metric but the depletion proxy) is no estimate: the
  row is the finite difference's, marked ``ZERO_BY_CONSTRUCTION``, with no z.

Pathwise contributions (``J_i`` the path's Jacobian row, ``pathwise``):

* a mean ``E[Y]``: ``J_i``;
* expected shortfall at ``alpha``: ``1{Y_i > VaR} J_i / (1 - alpha)`` (the derivative of the
  Rockafellar-Uryasev form at a fixed VaR; Hong and Liu 2009, "Simulating sensitivities of
  conditional value at risk", Management Science 55(2));
* P(insurance fund depleted): the relaxed engine has no fund, so its terminal proxy
  ``P(L > F)`` (``L`` the fund's loss, bad debt - fees) smoothed as ``sigmoid((L - F) / (tau_F F))``
  gives ``sigmoid'(u_i) / (tau_F F) x (dL_i - dF)``; finite differences only when ``F = 0``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..metrics import MIN_TAIL_PATHS
from .hard import HardRun, es_terms
from .params import STEP

Z_AGREE = 3.0
SE_FLOOR = 1e-7
ES_LEVEL = 0.99
FUND_TEMPERATURE = 0.05  # tau_F: the depletion proxy's sigmoid width, a fraction of the fund


def moved_reason(k) -> str | None:
    """Why a finite difference has no SE, for ``± n/a (...)``: the paths whose value changes between the
    bumps (``fd_paths``), or None when that count is unknown."""
    if k is None or k != k:
        return None
    k = int(k)
    return f"{k:,} path{'' if k == 1 else 's'} move it"


UNRESOLVED = "below resolution: neither estimate moves beyond the float32 floor on these paths (no z)"
ZERO_BY_CONSTRUCTION = "zero by construction"
FEW_PATHS = "the finite difference rests on {k} path(s) whose value changes between the bumps: no SE, no z"


class Metric(NamedTuple):
    unit: str
    output: int  # column of the relaxed outputs (``pathwise.OUTPUTS``)
    kind: str  # "mean", "es" or "depleted"


METRICS = {
    "bad_debt_mean": Metric("USD", 0, "mean"),
    "bad_debt_es_99": Metric("USD", 0, "es"),
    "p_any_liquidation": Metric("probability", 1, "mean"),
    "expected_liquidations": Metric("count", 2, "mean"),
    "p_insurance_fund_depleted": Metric("probability", 3, "depleted"),
}


def hard_values(run: HardRun, metric: str) -> np.ndarray:
    """Per-path contributions of the hard engine whose mean is ``metric``."""
    if metric == "bad_debt_mean":
        return run.bad_debt
    if metric == "bad_debt_es_99":
        return es_terms(run.bad_debt, ES_LEVEL)
    if metric == "p_any_liquidation":
        return (run.n_liquidated > 0).astype(np.float64)
    if metric == "expected_liquidations":
        return run.n_liquidated
    return run.depleted


def zero_by_construction(parameter: str, metric: str) -> bool:
    """Whether the pathwise gradient of ``metric`` in ``parameter`` is 0 by construction: a parameter
    outside the relaxed engine (``pathwise.OUTSIDE``: the fund) moves only the depletion proxy."""
    from .pathwise import OUTSIDE

    return parameter in OUTSIDE and METRICS[metric].kind != "depleted"


def pathwise_terms(metric: str, values: np.ndarray, jac: np.ndarray, *, fund: float, dfund: float) -> np.ndarray:
    """Per-path contributions ``g_i`` of d(metric)/dx from the relaxed outputs ``values`` (paths, 4)
    and one parameter's Jacobian columns ``jac`` (paths, 4); ``dfund``: dF/dx of the fund (USD)."""
    m = METRICS[metric]
    y, j = values[:, m.output], jac[:, m.output]
    if m.kind == "mean":
        return j
    if m.kind == "es":
        var = float(np.quantile(y, ES_LEVEL, method="inverted_cdf"))
        return np.where(y > var, j, 0.0) / (1.0 - ES_LEVEL)
    w = FUND_TEMPERATURE * fund
    u = (y - fund) / w
    s = 1.0 / (1.0 + np.exp(-np.clip(u, -60.0, 60.0)))
    return np.where(np.abs(u) < 30.0, s * (1.0 - s) / w * (j - dfund), 0.0)  # exp(-30) ~ 1e-13: nothing


def _se(x) -> float:
    x = np.asarray(x, np.float64)
    return float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else float("nan")


def compare(g, d, scale: float = 1.0) -> dict:
    """Row numbers from per-path contributions (per unit of x); reported per parameter unit (x = STEP).
    ``g`` None: finite differences only. ``scale``: the metric's size (its value); standard errors are
    floored at ``SE_FLOOR x max(1, |scale|)`` per unit x (the float32 rounding of the relaxed engine's
    Jacobian), so that 1e-12 between two zeros is not a disagreement; where both estimates and their
    SEs are below that floor the row has no z and says so (``note``: ``UNRESOLVED``), as where fewer than
    ``MIN_TAIL_PATHS`` paths move the finite difference (``FEW_PATHS``; its SE is then NaN). ``fd_paths``:
    how many paths' values change between the bumps (what the finite difference's SE rests on)."""
    moved = int(np.count_nonzero(np.asarray(d)))
    out = {"fd": float(np.mean(d)) * STEP, "fd_se": _se(d) * STEP if moved >= MIN_TAIL_PATHS else float("nan"),
           "fd_paths": moved}
    if g is None:
        return {"gradient": float("nan"), "gradient_se": float("nan"), **out, "z": float("nan"), "agree": "",
                "z_paired": float("nan")}
    g, d = np.asarray(g, np.float64), np.asarray(d, np.float64)
    floor = SE_FLOOR * max(1.0, abs(scale))
    diff = float(np.mean(g) - np.mean(d))
    row = {"gradient": float(np.mean(g)) * STEP, "gradient_se": _se(g) * STEP, **out}
    no_z = {"z": float("nan"), "agree": "", "z_paired": float("nan")}
    if np.nanmax([abs(np.mean(g)), _se(g), abs(np.mean(d)), _se(d)]) <= floor:
        return {**row, **no_z, "note": UNRESOLVED}
    if moved < MIN_TAIL_PATHS:
        return {**row, **no_z, "note": FEW_PATHS.format(k=moved)}
    combined = math.hypot(_se(g), _se(d))
    z = diff / (combined if combined > floor else floor)  # a NaN SE (one path) takes the floor
    paired = _se(g - d)
    return {**row, "z": z, "agree": bool(abs(z) <= Z_AGREE), "z_paired": diff / (paired if paired > floor else floor)}
