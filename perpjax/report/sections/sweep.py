"""A parameter sweep (``perpjax sweep``): each metric's difference to the base set (set 0) against the varied
parameters with its paired 95 % interval on common random numbers (the question a sweep answers: does
this set move the metric from the base's?), and the sets side by side with their values and differences.

Reads ``sweep.csv``: one row per (set, metric), columns ``set``, one per varied dotted config key,
``metric``, ``value``, ``se``, ``diff_vs_base``, ``diff_se``."""

from __future__ import annotations

import pandas as pd

from ...metrics.tails import MIN_TAIL_PATHS
from .. import figures
from ..format import FEW, FEW_DIFF, column_unit, esc, fmt, fmt_pm, img, num, table
from ..load import TIDY, Run

MOST_METRICS_TABLE = 8  # metrics tabulated (all are plotted); all are in sweep.csv
MOST_PLOTS = 12


def varied_keys(t: pd.DataFrame) -> list:
    """The varied config keys: the columns that are not the tidy table's own."""
    return [c for c in t.columns if c not in TIDY["sweep"][1]]


def _numeric(s: pd.Series) -> bool:
    return pd.to_numeric(s, errors="coerce").notna().all()


def _plot(t: pd.DataFrame, metric: str, keys: list) -> str:
    d = t[t["metric"] == metric]
    moving = [k for k in keys if d[k].nunique() > 1]
    if not moving:
        return ""
    x, others = moving[0], moving[1:]
    cat = not _numeric(d[x])
    groups = []
    for label, g in (d.groupby(others, sort=True) if others else [("", d)]):
        if cat:
            g = g.sort_values(x, key=lambda s: s.astype(str))
        else:
            g = g.assign(_x=pd.to_numeric(g[x])).sort_values("_x")
        lab = ", ".join(f"{k} = {v}" for k, v in zip(others, label if isinstance(label, tuple) else (label,),
                                                   strict=True)) if others else ""
        groups.append((lab, g[x].tolist() if cat else g["_x"].to_numpy(float),
                       pd.to_numeric(g["diff_vs_base"], errors="coerce").to_numpy(float),
                       pd.to_numeric(g["diff_se"], errors="coerce").to_numpy(float), (g["set"] == 0).to_numpy()))
    u = column_unit(metric)
    png = figures.sweep_metric(groups, xlabel=x, ylabel=f"Δ vs set 0 ({u or 'value'}; ± 1.96 paired SE)",
                               title=f"{metric.replace('_', ' ')}: difference to set 0", categorical=cat)
    return img(png, f"sweep {metric}", 620)


def moved(t: pd.DataFrame) -> list:
    """The metrics some set moves beyond 1.96 standard errors of its difference to set 0, in table order."""
    d, e = pd.to_numeric(t["diff_vs_base"], errors="coerce"), pd.to_numeric(t["diff_se"], errors="coerce")
    hit = t.loc[(e > 0) & (d.abs() > 1.96 * e), "metric"]
    return [m for m in dict.fromkeys(t["metric"]) if m in set(hit)]


def _cell(r, u: str) -> str:
    cell = fmt_pm(r["value"], r["se"], u, FEW)
    d, e = num(r["diff_vs_base"]), num(r["diff_se"])
    if d is not None and r["set"] != 0:
        diff = fmt_pm(d, e, u, FEW_DIFF)
        if e is not None and e > 0 and abs(d) > 1.96 * e:
            diff = f"<b>{diff}</b>"
        cell += f"<span class='pm'>Δ {diff}</span>"
    return cell


def section(run: Run) -> str:
    t = run.tables["sweep"]
    keys = varied_keys(t)
    metrics = list(dict.fromkeys(t["metric"]))
    sets = sorted(t["set"].unique())
    out = ["<section id='sweep'><h2>Parameter sweep</h2>",
           f"<p class='note'>{len(sets)} parameter sets × {len(metrics)} metrics on the same random paths (common "
           f"random numbers). Varied: {esc(', '.join(keys) or 'nothing')}. Charts: each set's difference to set 0 "
           "(the star) with its 95 % interval (± 1.96 standard errors of the paired per-path difference); a "
           "hollow point has no interval (fewer than "
           f"{MIN_TAIL_PATHS} paths differ, or too few lie beyond the VaR). Table: Δ is the same difference "
           "with its standard error; bold where it exceeds 1.96 standard errors.</p>"]
    first = moved(t)
    ordered = first + [m for m in metrics if m not in first]  # what the parameters move, first
    figs = [f for f in (_plot(t, m, keys) for m in ordered[:MOST_PLOTS]) if f]
    if figs:
        more = f" (the first {MOST_PLOTS} of {len(metrics)}; all in sweep.csv)" if len(metrics) > MOST_PLOTS else ""
        out.append(f"<p class='note'>Metrics the sweep moves beyond 1.96 standard errors of the paired difference "
                   f"come first: {esc(', '.join(first) or 'none')}{more}.</p><div class='grid'>{''.join(figs)}</div>")
    shown = ordered[:MOST_METRICS_TABLE]
    wide = t.set_index(["set", "metric"])
    rows = []
    for s in sets:
        first = t[t["set"] == s].iloc[0]
        row = [fmt(s, "count")] + [esc(first[k]) for k in keys]
        for m in shown:
            row.append(_cell(wide.loc[(s, m)].to_dict() | {"set": s}, column_unit(m)) if (s, m) in wide.index
                       else "n/a")
        rows.append(row)
    head = ["set"] + [esc(k) for k in keys] + [f"{esc(m.replace('_', ' '))}<span class='u'>{esc(column_unit(m))}"
                                               f" ± 1 SE</span>" for m in shown]
    more = f" (first {len(shown)} of {len(metrics)} metrics; all in sweep.csv)" if len(metrics) > len(shown) else ""
    out.append("<div class='wide'>" + table(head, rows, cls="stack", left=1 + len(keys),
                                            caption=f"The sets side by side{more}") + "</div>")
    out.append("</section>")
    return "".join(out)
