"""The sweep's tidy table: one row per (set, metric) with the Monte Carlo standard error, the difference to
set 0 and that difference's standard error on common random numbers.

Metrics are the venue summary metrics (``metrics.summarize``) that have a standard error: the value is
summarize's, the SE summarize's own where it gives one (``*_se``: binomial for probabilities, sd/sqrt(n) for
means, order statistics for VaR, Rockafellar-Uryasev for ES; NaN where summarize gives none for want of
tail paths), else sd(per-path value)/sqrt(n), NaN when fewer than ``metrics.MIN_TAIL_PATHS`` paths differ
from the column's most common value (a probability's rarer outcome, a zero-heavy mean's non-zero paths).

Difference SEs (every set ran the same paths, so path i of set s and of set 0 share their random numbers):

- a mean of per-path values (probabilities included): the SE of the mean of the per-path difference,
  sd(x_s - x_0)/sqrt(n); positively correlated paths make it smaller than sqrt(se_s^2 + se_0^2). NaN when
  fewer than ``MIN_TAIL_PATHS`` paths differ between the sets (it rests on those paths alone).
- ES at level a: the same on the Rockafellar-Uryasev per-path values Y = VaR + (x - VaR)^+ / (1 - a) of each
  set (their mean is the ES; VaR's own estimation error does not enter to first order). NaN when fewer than
  ``MIN_TAIL_PATHS`` paths lie beyond the VaR in either set.
- VaR at level a (a quantile): batch means. The paths are cut in ``BATCHES`` = 20 batches by path index (the
  same batches in every set); the SE is sd over batches of (batch VaR_s - batch VaR_0) / sqrt(20). NaN when a
  batch has fewer than one path beyond the quantile on average (n (1 - a) / 20 < 1), or when fewer than
  ``MIN_TAIL_PATHS`` paths lie beyond the VaR in either set (as for the ES).

Set 0 against itself: a difference of exactly 0, SE 0.

One set's SE where summarize gives none (``metric_se``) follows the same rules on that set's values alone.
``perpjax simulate --compare-modes`` computes its SEs here too (``set_se``, ``diff_se``), so a mode
comparison and a sweep give the same SEs for the same per-path values.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..metrics import LEVELS, MIN_TAIL_PATHS, level_key

BATCHES = 20


def _drawdown(o):
    return -np.minimum(o.path_fund_min, 0.0)


def _metrics() -> dict:
    """metric -> (kind, per-path value): kind "mean", ("var", a) or ("es", a)."""
    m = {
        "p_any_liquidation": ("mean", lambda o: (o.path_n_liquidations > 0).astype(np.float64)),
        "expected_liquidations": ("mean", lambda o: o.path_n_liquidations),
        "liquidation_events_mean": ("mean", lambda o: o.path_liq_events),
        "liquidated_notional_mean": ("mean", lambda o: o.path_liq_notional),
        "bad_debt_mean": ("mean", lambda o: o.path_bad_debt),
        "p_bad_debt": ("mean", lambda o: (o.path_bad_debt > 0).astype(np.float64)),
        "trader_loss_mean": ("mean", lambda o: o.path_trader_loss),
        "p_insurance_fund_depleted": ("mean", lambda o: ((o.path_adl + o.path_uncovered) > 0).astype(np.float64)),
        "p_adl": ("mean", lambda o: (o.path_adl > 0).astype(np.float64)),
        "adl_mean": ("mean", lambda o: o.path_adl),
        "uncovered_bad_debt_mean": ("mean", lambda o: o.path_uncovered),
    }
    for name, value in (("bad_debt", lambda o: o.path_bad_debt), ("trader_loss", lambda o: o.path_trader_loss),
                        ("insurance_fund_drawdown", _drawdown)):
        for a in LEVELS:
            m[f"{name}_var_{level_key(a)}"] = (("var", a), value)
            m[f"{name}_es_{level_key(a)}"] = (("es", a), value)
    return m


METRICS = _metrics()
"""Every metric of the table, in table order."""


def _sd_mean(v) -> float:
    v = np.asarray(v, np.float64)
    return float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("nan")


def mean_se(x) -> float:
    """sd(x)/sqrt(n); NaN when fewer than ``MIN_TAIL_PATHS`` paths differ from the most common value."""
    x = np.asarray(x, np.float64)
    if not x.size:
        return float("nan")
    off_mode = x.size - int(np.unique(x, return_counts=True)[1].max())
    return _sd_mean(x) if off_mode >= MIN_TAIL_PATHS else float("nan")


def _ru(x, a: float):
    """Rockafellar-Uryasev per-path values of ES at level a (their mean is ``metrics.var_es``'s ES)."""
    x = np.asarray(x, np.float64)
    var = float(np.quantile(x, a, method="inverted_cdf"))
    return var + np.maximum(x - var, 0.0) / (1 - a)


def _batch_var(x, a: float):
    return np.array([np.quantile(b, a, method="inverted_cdf")
                     for b in np.array_split(np.asarray(x, np.float64), BATCHES)])


def _tail_se(kind, xs: list) -> float:
    """SE of a VaR / ES (one set: ``xs = [x]``) or of its difference (``xs = [x, x0]``, same paths): NaN below
    ``MIN_TAIL_PATHS`` paths beyond the VaR in any of the sets, and for a VaR below one path beyond it per
    batch (module doc)."""
    what, a = kind
    tail = np.zeros(xs[0].shape, bool)
    for v in xs:
        tail |= v > np.quantile(v, a, method="inverted_cdf")
    if np.count_nonzero(tail) < MIN_TAIL_PATHS or (what == "var" and len(xs[0]) * (1 - a) / BATCHES < 1):
        return float("nan")
    each = _ru if what == "es" else _batch_var  # per-path RU values; batch VaRs
    return _sd_mean(each(xs[0], a) - (each(xs[1], a) if len(xs) > 1 else 0.0))


def metric_se(kind, x) -> float:
    """SE of one set's metric from its per-path values ``x``: ``mean_se`` for a mean, else the VaR / ES rule
    of ``diff_se`` on this set alone (Rockafellar-Uryasev values, batch VaRs)."""
    x = np.asarray(x, np.float64)
    return mean_se(x) if kind == "mean" else _tail_se(kind, [x])


def diff_se(kind, x, x0) -> float:
    """SE of (metric of set s) - (metric of set 0) from their per-path values ``x``, ``x0`` (same paths)."""
    x, x0 = np.asarray(x, np.float64), np.asarray(x0, np.float64)
    if kind == "mean":
        return _sd_mean(x - x0) if np.count_nonzero(x != x0) >= MIN_TAIL_PATHS else float("nan")
    return _tail_se(kind, [x, x0])


def set_se(summary: dict, name: str, kind, x) -> float:
    """One set's SE of metric ``name``: summarize's own (``NAME_se``; None, too few tail paths, is NaN) where
    it gives one, else ``metric_se`` of the per-path values ``x``."""
    if f"{name}_se" in summary:
        se = summary[f"{name}_se"]
        return float("nan") if se is None else float(se)
    return metric_se(kind, x)


def sweep_table(sets, summaries: list[dict], outcomes: list) -> pd.DataFrame:
    """The long table: columns ``set``, one per varied key, ``metric``, ``value``, ``se``, ``diff_vs_base``,
    ``diff_se`` (see the module docstring)."""
    keys = list(sets[0].texts)
    rows = []
    base_vals = {name: value(outcomes[0]) for name, (_, value) in METRICS.items()}
    for s, summ, out in zip(sets, summaries, outcomes, strict=True):
        vals = s.values
        for name, (kind, value) in METRICS.items():
            x = value(out)
            se = set_se(summ, name, kind, x)
            v = float(summ[name]) + 0.0  # never -0.0
            d_se = 0.0 if s.index == 0 else diff_se(kind, x, base_vals[name])
            rows.append({"set": s.index, **{k: vals[k] for k in keys}, "metric": name, "value": v, "se": se,
                         "diff_vs_base": v - float(summaries[0][name]), "diff_se": d_se})
    df = pd.DataFrame(rows, columns=["set", *keys, "metric", "value", "se", "diff_vs_base", "diff_se"])
    for k in keys:
        df[k] = _column(df[k])
    return df


def _column(col: pd.Series) -> pd.Series:
    """A varied key's column: numbers as float, booleans as bool, anything else (strings, lists) as text."""
    vals = list(col)
    if all(isinstance(v, bool) for v in vals):
        return col.astype(bool)
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals):
        return col.astype(np.float64)
    return pd.Series([v if isinstance(v, str) else str(v) for v in vals], index=col.index, dtype=object)
