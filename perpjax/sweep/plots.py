"""One PNG per metric: each set's paired difference to set 0 against each varied parameter, with its 95 %
interval (± 1.96 paired SEs on common random numbers: the decision a sweep informs is "does this set move
the metric from the base set's"), headless (Agg)."""

from __future__ import annotations

import io

import numpy as np

Z95 = 1.959963984540054


def _xs(values):
    """Plot positions of a parameter's values: the numbers themselves, else categories 0, 1, ..."""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values], None
    cats = list(dict.fromkeys(str(v) for v in values))
    return [float(cats.index(str(v))) for v in values], cats


def plot_differences(ax, x, diff, se, base, *, color=None, label=None) -> None:
    """One series of differences to the base set on ``ax``: a 95 % bar (± 1.96 ``se``) where the SE is
    known, a hollow marker without a bar where it is not (NaN: too few paths differ), a star at the base
    set (``base``: a boolean mask; its difference is 0 by construction)."""
    x, diff, se, base = (np.asarray(v) for v in (x, diff, se, base))
    se = se.astype(float)
    order = np.argsort(x, kind="stable")
    x, diff, se, base = x[order], diff[order].astype(float), se[order], base[order].astype(bool)
    line = ax.plot(x, diff, "-", lw=1.0, color=color, label=label)[0]
    c = line.get_color()
    known = np.isfinite(se) & ~base
    if known.any():
        ax.errorbar(x[known], diff[known], yerr=Z95 * se[known], fmt="o", ms=4, capsize=3, lw=1.2, color=c)
    unknown = ~np.isfinite(se) & ~base
    if unknown.any():
        ax.plot(x[unknown], diff[unknown], "o", ms=5, mfc="white", color=c)
    if base.any():
        ax.plot(x[base], diff[base], "*", ms=9, color="black")


def finish_axes(ax) -> None:
    """The zero line (no difference to set 0) and a legend of the marker kinds."""
    from matplotlib.lines import Line2D

    ax.axhline(0.0, color="black", lw=0.8)
    kinds = [Line2D([], [], marker="o", ls="-", color="grey", label="set − set 0, 95 % interval (paired)"),
             Line2D([], [], marker="o", ls="", mfc="white", color="grey", label="paired SE n/a (too few paths "
                                                                                 "differ)"),
             Line2D([], [], marker="*", ls="", ms=9, color="black", label="set 0 (base)")]
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + kinds, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)  # below


def metric_png(table, metric: str, keys: list[str]) -> bytes:
    """The PNG of ``metric`` (rows of the sweep table): one panel per varied key, one series per combination
    of the other keys; y: the set's difference to set 0 (``diff_vs_base``) with its paired 95 % interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table[table["metric"] == metric]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.8 * len(keys), 3.8), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        others = [k for k in keys if k != key]
        groups = rows.groupby(others, sort=False, dropna=False) if others else [((), rows)]
        xs_all, cats = _xs(list(rows[key]))
        pos = dict(zip(map(str, rows[key]), xs_all, strict=False))
        for label, g in groups:
            label = label if isinstance(label, tuple) else (label,)
            name = ", ".join(f"{k}={v}" for k, v in zip(others, label, strict=True)) or None
            plot_differences(ax, [pos[str(v)] for v in g[key]], g["diff_vs_base"], g["diff_se"], g["set"] == 0,
                             label=name if len(rows) <= 60 else None)
        if cats is not None:
            ax.set_xticks(range(len(cats)), cats)
        ax.set_xlabel(key)
        ax.set_ylabel(f"Δ {metric} vs set 0")
        ax.grid(alpha=0.3)
        finish_axes(ax)
    fig.suptitle(f"{metric}: difference to set 0 (bars: ±1.96 paired SE, common random numbers)", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
