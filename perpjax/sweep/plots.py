"""One PNG per metric: the metric against each varied parameter with +-1.96 SE error bars (headless, Agg)."""

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


def metric_png(table, metric: str, keys: list[str]) -> bytes:
    """The PNG of ``metric`` (rows of the sweep table): one panel per varied key, one series per combination
    of the other keys."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table[table["metric"] == metric]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.8 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        others = [k for k in keys if k != key]
        groups = rows.groupby(others, sort=False, dropna=False) if others else [((), rows)]
        xs_all, cats = _xs(list(rows[key]))
        pos = dict(zip(map(str, rows[key]), xs_all, strict=False))
        for label, g in groups:
            label = label if isinstance(label, tuple) else (label,)
            x = np.array([pos[str(v)] for v in g[key]])
            order = np.argsort(x, kind="stable")
            name = ", ".join(f"{k}={v}" for k, v in zip(others, label, strict=True)) or None
            ax.errorbar(x[order], g["value"].to_numpy()[order], yerr=Z95 * g["se"].to_numpy()[order],
                        marker="o", capsize=3, label=name)
        if cats is not None:
            ax.set_xticks(range(len(cats)), cats)
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if others and len(rows) <= 60:
            ax.legend(fontsize=7)
    fig.suptitle(f"{metric} (error bars: ±1.96 Monte Carlo SE)", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()
