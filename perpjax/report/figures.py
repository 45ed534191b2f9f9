"""The report's figures: matplotlib (Agg) rendered to PNG bytes, embedded inline by ``html.py``."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

BLUE, ORANGE, RED, GREY, GREEN = "#1f5f9e", "#d9822b", "#b8322a", "#6b7280", "#2e8b57"
DPI = 120


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "axes.spines.top": False,
                         "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3, "legend.fontsize": 8,
                         "legend.frameon": False})
    return plt


def _png(fig) -> bytes:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _usd_axis(ax, axis="x"):
    from matplotlib.ticker import FuncFormatter

    def f(v, _):
        a = abs(v)
        if a >= 1e6:
            return f"{v / 1e6:,.1f}M"
        if a >= 1e3:
            return f"{v / 1e3:,.0f}k"
        return f"{v:,.0f}"

    (ax.xaxis if axis == "x" else ax.yaxis).set_major_formatter(FuncFormatter(f))


def tail_histogram(values, *, title: str, xlabel: str, marks: dict, log_y: bool = False) -> bytes:
    """Histogram of per-path ``values`` (USD) with vertical lines at ``marks`` {label: value}."""
    plt = _plt()
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    fig, ax = plt.subplots(figsize=(5.2, 3.0))
    lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    ax.hist(v, bins=60, range=(lo, hi), color=BLUE, alpha=0.8, log=log_y)
    styles = [("--", ORANGE), ("-", RED), (":", "#7b2d8e"), ("-.", GREEN)]
    for (label, x), (ls, c) in zip(marks.items(), styles, strict=False):
        if x is not None and np.isfinite(x):
            ax.axvline(x, ls=ls, color=c, lw=1.4, label=label)
    ax.set(title=title, xlabel=xlabel, ylabel="paths" + (" (log scale)" if log_y else ""))
    _usd_axis(ax)
    if marks:
        ax.legend(loc="upper right")
    return _png(fig)


def liquidation_dots(acc: pd.DataFrame, horizon_hours: float | None) -> bytes:
    """Dot-and-whisker chart: P(liquidation) per margin unit with its 95 % Wilson interval, sorted."""
    plt = _plt()
    a = acc.sort_values("p_liquidation").reset_index(drop=True)
    label = a["unit"] if "unit" in a else a.get("account", pd.Series(range(len(a)))).astype(str)
    y = np.arange(len(a))
    fig, ax = plt.subplots(figsize=(6.8, 0.8 + 0.3 * len(a)))
    mode = a["mode"] if "mode" in a else pd.Series(["unit"] * len(a))
    for m, color in (("cross", BLUE), ("isolated", ORANGE)):
        sel = (mode == m).to_numpy()
        if not sel.any():
            continue
        p = a["p_liquidation"].to_numpy()[sel]
        if {"p_liquidation_lo95", "p_liquidation_hi95"} <= set(a.columns):
            err = np.vstack([p - a["p_liquidation_lo95"].to_numpy()[sel], a["p_liquidation_hi95"].to_numpy()[sel] - p])
            ax.errorbar(p, y[sel], xerr=np.clip(err, 0, None), fmt="o", color=color, ms=4, capsize=3, lw=1.2,
                        label=f"{m} (95 % Wilson interval)")
        else:
            ax.plot(p, y[sel], "o", color=color, ms=4, label=m)
    rest = ~mode.isin(["cross", "isolated"]).to_numpy()
    if rest.any():
        ax.plot(a["p_liquidation"].to_numpy()[rest], y[rest], "o", color=GREY, ms=4)
    ax.set_yticks(y, label)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.7, len(a) - 0.3)
    h = f" within {horizon_hours:g} h" if horizon_hours else ""
    ax.set(xlabel=f"P(liquidation{h}) (probability)", title="Liquidation probability per margin unit")
    ax.legend(loc="lower right")
    return _png(fig)


def cascade_sizes(dist: list, paths: int | None) -> bytes:
    """Episode-size histogram from summary.json's ``cascade_size_distribution`` (log-spaced bins)."""
    plt = _plt()
    d = pd.DataFrame(dist)
    fig, ax = plt.subplots(figsize=(5.2, 3.0))
    lo, hi = d["notional_from"].to_numpy(float), d["notional_to"].to_numpy(float)
    n = d["episodes"].to_numpy(float)
    y = n / paths if paths else n
    ax.bar(lo, y, width=hi - lo, align="edge", color=BLUE, alpha=0.85, edgecolor="white")
    ax.set_xscale("log")
    ax.set(title="Cascade episode sizes", xlabel="liquidated notional per episode (USD, log scale)",
           ylabel="episodes per path" if paths else "episodes")
    _usd_axis(ax)
    return _png(fig)


def tier_bars(values: pd.Series, *, title: str, xlabel: str) -> bytes:
    """Horizontal bars, one per tier (or account)."""
    plt = _plt()
    v = values.sort_values()
    fig, ax = plt.subplots(figsize=(5.2, 0.8 + 0.28 * len(v)))
    ax.barh(np.arange(len(v)), v.to_numpy(float), color=ORANGE, alpha=0.85)
    ax.set_yticks(np.arange(len(v)), [str(i) for i in v.index])
    ax.set_xlim(0, max(1.0, float(v.max()) * 1.05) if len(v) else 1.0)
    ax.set(title=title, xlabel=xlabel)
    return _png(fig)


def integer_histogram(values, *, title: str, xlabel: str) -> bytes:
    plt = _plt()
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)].astype(int)
    k, c = np.unique(v, return_counts=True)
    fig, ax = plt.subplots(figsize=(5.2, 3.0))
    ax.bar(k, c / max(v.size, 1), color=BLUE, alpha=0.85)
    ax.set(title=title, xlabel=xlabel, ylabel="share of paths (probability)")
    return _png(fig)


def drawdown_scatter(dd: np.ndarray, exog: np.ndarray, asset: str) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.0))
    ax.plot(exog * 100, dd * 100, ".", ms=2, alpha=0.4, color=BLUE)
    m = float(np.nanmax(np.r_[dd, exog])) * 100 if dd.size else 1.0
    ax.plot([0, m], [0, m], "k--", lw=1, label="no amplification")
    ax.set(title=f"{asset}: drawdown with vs without forced-flow feedback", xlabel="drawdown without feedback (%)",
           ylabel="drawdown with feedback (%)")
    ax.legend(loc="upper left")
    return _png(fig)


def compare_bars(rows: list, modes: list, *, title: str, ylabel: str, usd: bool) -> bytes:
    """Grouped bars: one group per metric, one bar per mode, ±1 SE error bars. rows: [(label, {mode: (v, se)})]."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.8, 3.2))
    x = np.arange(len(rows))
    w = 0.8 / max(len(modes), 1)
    colors = [BLUE, ORANGE, GREEN, RED, "#7b2d8e", GREY]
    for i, m in enumerate(modes):
        v = np.array([r[1].get(m, (np.nan, np.nan))[0] for r in rows], float)
        e = np.array([r[1].get(m, (np.nan, np.nan))[1] for r in rows], float)
        ax.bar(x + (i - (len(modes) - 1) / 2) * w, v, w, yerr=np.nan_to_num(e), capsize=2, label=m,
               color=colors[i % len(colors)], alpha=0.85)
    ax.set_xticks(x, [r[0] for r in rows])
    ax.set(title=title, ylabel=ylabel)
    if usd:
        _usd_axis(ax, "y")
    ax.legend()
    return _png(fig)


def reliability(rel: list) -> bytes:
    """Reliability diagram of a backtest (summary.json ``reliability``): realised frequency vs predicted."""
    plt = _plt()
    r = pd.DataFrame(rel)
    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    if len(r):
        err = np.vstack([r["realised"] - r["realised_lo95"], r["realised_hi95"] - r["realised"]])
        ax.errorbar(r["mean_predicted"], r["realised"], yerr=np.clip(err, 0, None), fmt="o", color=BLUE, capsize=3,
                    label="realised (95 % Wilson interval)")
        hi = float(max(r["realised_hi95"].max(), r["mean_predicted"].max())) * 1.05 + 1e-6
        ax.plot([0, hi], [0, hi], "k--", lw=1, label="perfect calibration")
        ax.set_xscale("symlog", linthresh=1e-3)
        ax.set_yscale("symlog", linthresh=1e-3)
    ax.set(xlabel="predicted P(liquidation) (probability)", ylabel="realised frequency (probability)",
           title="Reliability of liquidation forecasts")
    ax.legend(loc="upper left")
    return _png(fig)


# ------------------------------------------------------------------------------------------ sample paths

def _asset_grid(n: int, *, width: float = 10.4, row_h: float = 2.3, most_cols: int = 3):
    plt = _plt()
    cols = min(n, most_cols)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width, 0.5 + row_h * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def sample_path(trace, assets: list, title: str) -> bytes:
    """One re-simulated path as PNG (``sample_path_figure``)."""
    return _png(sample_path_figure(trace, assets, title))


def sample_path_figure(trace, assets: list, title: str):
    """One re-simulated path (``engine.trace.PathTrace``): per asset the mark and the index over time,
    each liquidation fill in the asset as a marker (▼ a long sold, ▲ a short bought back; hollow, at the
    mark, where the unit closed several assets at once and no per-asset fill is known) and a dotted
    vertical line at its step. The title sits above the panels, the legend below them (never on each
    other, whatever the legend's width)."""
    fig, axes = _asset_grid(len(assets), width=11.6, most_cols=4)
    hours = trace.seconds / 3600.0
    ev = trace.events
    for k, (ax, a) in enumerate(zip(axes, assets, strict=True)):
        j = trace.asset_names.index(a)
        ax.plot(hours, trace.index[:, j], color=GREY, lw=1.6, alpha=0.6, label="index")
        ax.plot(hours, trace.mark[:, j], color=BLUE, lw=0.9, label="mark")
        e = ev[ev["asset"] == a] if len(ev) else ev
        for t in sorted(set(e["seconds"] / 3600.0)) if len(e) else []:
            ax.axvline(t, color=RED, ls=":", lw=0.9, alpha=0.7)
        for side, marker, color in (("long", "v", RED), ("short", "^", ORANGE)):
            s = e[e["side"] == side] if len(e) else e
            known = s[s["fill_price"].notna()] if len(s) else s
            if len(known):
                ax.plot(known["seconds"] / 3600.0, known["fill_price"], marker, color=color, ms=6, mec="black",
                        mew=0.5, label=f"fill ({side} closed)")
            if len(s) > len(known):  # a unit closing several assets at once: drawn at the mark
                m = s[s["fill_price"].isna()]
                ax.plot(m["seconds"] / 3600.0, m["mark"], marker, color=color, ms=6, mfc="none", mew=1.0,
                        label=f"{side} closed with other assets (at mark)")
        ax.set(title=a, xlabel="hours", ylabel="USD" if k % 4 == 0 else None)
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    handles = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    ncol = min(len(handles), 3)
    legend_rows = -(-len(handles) // max(ncol, 1))
    height = fig.get_size_inches()[1]
    title_in, legend_in = 0.12, 0.08 + 0.22 * legend_rows  # inches kept free above and below the panels
    fig.suptitle(title, fontsize=10, x=0.02, y=1 - 0.08 / height, ha="left", va="top")
    fig.legend(handles.values(), handles.keys(), loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=ncol,
               fontsize=8)
    fig.tight_layout(rect=(0, legend_in / height, 1, 1 - title_in / height))
    return fig


# ------------------------------------------------------------------------------------------ calibration

def ladder_steps(before: pd.DataFrame, after: pd.DataFrame, assets: list) -> bytes:
    """MMR against position notional per asset, before and after calibration (step functions; the last
    tier drawn to twice its floor; notional on a log axis)."""
    fig, axes = _asset_grid(len(assets), row_h=2.5)
    for ax, a in zip(axes, assets, strict=True):
        for tab, label, color, ls in ((before, "before", GREY, "--"), (after, "after", BLUE, "-")):
            t = tab[tab["asset"] == a].sort_values("floor")
            floors = t["floor"].to_numpy(float)
            mmr = t["mmr"].to_numpy(float) * 100
            lo = floors[1] / 10 if len(floors) > 1 and floors[1] > 0 else 1e3
            x = np.r_[max(floors[0], lo), floors[1:], max(floors[-1] * 2, lo * 10)]
            ax.step(x, np.r_[mmr, mmr[-1]], where="post", color=color, ls=ls, lw=1.4, label=label)
        ax.set_xscale("log")
        _usd_axis(ax)
        ax.set(title=a, xlabel="position notional (USD, log scale)", ylabel="MMR (%)")
        ax.legend(loc="upper left")
    fig.tight_layout()
    return _png(fig)


def calibration_history(hist: pd.DataFrame) -> bytes:
    """The optimiser's objective and each tuned tier's MMR against iteration (``history.csv``)."""
    plt = _plt()
    fig, ax = plt.subplots(1, 2, figsize=(10.4, 3.2))
    ax[0].plot(hist["iteration"], hist["objective"], color=BLUE)
    ax[0].set(title="Objective (relaxed engine, calibration paths)", xlabel="iteration", ylabel="objective")
    from matplotlib.ticker import MaxNLocator

    for a in ax:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    series = [c for c in hist.columns if c.startswith("mmr_") and hist[c].nunique() > 1] or \
        [c for c in hist.columns if c.startswith("mmr_")]
    colours = plt.cm.tab20(np.linspace(0, 1, max(len(series), 1)))
    for c, colour in zip(series, colours, strict=False):
        ax[1].plot(hist["iteration"], hist[c] * 100, color=colour, lw=1.1, label=c[4:])
    ax[1].set(title="Maintenance rate per tuned tier", xlabel="iteration", ylabel="MMR (%)")
    if series:
        ax[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return _png(fig)


# ------------------------------------------------------------------------------------------ sweeps

def sweep_metric(groups: list, *, xlabel: str, ylabel: str, title: str, categorical: bool) -> bytes:
    """A metric's difference to the base set against a varied parameter, with 95 % intervals of the paired
    difference (``sweep.plots.plot_differences``); ``groups``: [(label, x, diff, diff_se, is_base)], one
    line per combination of the other varied keys."""
    from ..sweep.plots import finish_axes, plot_differences

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.3))
    colors = [BLUE, ORANGE, GREEN, RED, "#7b2d8e", GREY]
    cats = sorted({v for _, x, *_ in groups for v in x}, key=str) if categorical else None
    for i, (label, x, d, se, base) in enumerate(groups):
        xs = [cats.index(v) for v in x] if categorical else np.asarray(x, float)
        plot_differences(ax, xs, d, se, base, color=colors[i % len(colors)], label=label or None)
    if categorical:
        ax.set_xticks(range(len(cats)), [str(c) for c in cats])
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    finish_axes(ax)
    return _png(fig)


# ------------------------------------------------------------------------------------------ sensitivities

def tornado(rows: pd.DataFrame, *, title: str, xlabel: str) -> bytes:
    """Tornado: one bar per parameter (``effect``), sorted by size, ± ``half_ci`` whiskers, and the finite
    difference's effect (``fd_effect``) as a marker beside each bar."""
    plt = _plt()
    r = rows.reindex(rows["effect"].abs().sort_values().index)
    y = np.arange(len(r))
    fig, ax = plt.subplots(figsize=(5.6, 0.9 + 0.36 * len(r)))
    eff = r["effect"].to_numpy(float)
    ax.barh(y, np.nan_to_num(eff), color=np.where(eff >= 0, BLUE, ORANGE), alpha=0.85, height=0.55,
            xerr=np.nan_to_num(r["half_ci"].to_numpy(float)), capsize=3, label="pathwise gradient × bump (95 % CI)")
    fd = r["fd_effect"].to_numpy(float)
    ok = np.isfinite(fd)
    if ok.any():
        ax.plot(fd[ok], y[ok] + 0.36, "D", color=RED, ms=4.5, label="finite difference × bump")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, r["label"].tolist())
    ax.set_ylim(-0.7, len(r) - 0.1)
    ax.set(title=title, xlabel=xlabel)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3 / (0.9 + 0.36 * len(r)) - 0.18), ncol=2, fontsize=7)
    return _png(fig)
