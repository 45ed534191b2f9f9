"""A backtest's verdict: per case and pooled coverage tests, VaR traffic lights, Brier score and the
reliability diagram; written as CSV / JSON / PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_write_bytes, atomic_write_json, atomic_write_text
from .run import Forecasts
from .stats import brier_score, christoffersen_independence, coverage_test, kupiec_pof, reliability_table, traffic_light


def liquidation_table(liq: pd.DataFrame) -> pd.DataFrame:
    """One row per case: windows, mean predicted probability, expected and realised count, the exact
    Poisson-binomial coverage p-value, Christoffersen's independence p-value and the Brier score."""
    rows = []
    for case, g in liq.groupby("case", sort=False):
        g = g.sort_values("origin")
        cov = coverage_test(g["realised"].to_numpy(), g["predicted"].to_numpy())
        ind = christoffersen_independence(g["realised"].to_numpy()) if len(g) > 1 else {"p_value": np.nan}
        rows.append({"case": case, "asset": g["asset"].iloc[0], "side": g["side"].iloc[0],
                     "leverage": g["leverage"].iloc[0], "windows": len(g), "mean_predicted": g["predicted"].mean(),
                     "expected": cov["expected"], "realised": cov["hits"], "coverage_p": cov["p_value"],
                     "independence_p": ind["p_value"], "brier": brier_score(g["predicted"], g["realised"]),
                     "rejected_5pct": cov["p_value"] < 0.05})
    return pd.DataFrame(rows)


def var_table(var: pd.DataFrame) -> pd.DataFrame:
    """One row per VaR series (asset, side, level): exceptions, Kupiec POF, independence, traffic light."""
    rows = []
    for (asset, side, level), g in var.groupby(["asset", "side", "level"], sort=False):
        hits = g.sort_values("origin")["exceeded"].to_numpy()
        pof = kupiec_pof(hits, 1 - level)
        tl = traffic_light(int(hits.sum()), len(hits), 1 - level)
        rows.append({"asset": asset, "side": side, "level": level, "windows": len(hits),
                     "expected": pof["expected"], "exceptions": pof["hits"], "kupiec_p": pof["p_value"],
                     "independence_p": christoffersen_independence(hits)["p_value"] if len(hits) > 1 else np.nan,
                     "zone": tl["zone"], "mean_var": g["var"].mean(), "mean_es": g["es"].mean()})
    return pd.DataFrame(rows)


def verdict(f: Forecasts) -> dict:
    """Pooled summary: cases not rejected at 5 %, VaR series per traffic-light zone, Brier, reliability."""
    lt, vt = liquidation_table(f.liquidations), var_table(f.var)
    liq = f.liquidations
    pooled = coverage_test(liq["realised"].to_numpy(), liq["predicted"].to_numpy())
    return {"cases": len(lt), "cases_not_rejected_5pct": int((~lt["rejected_5pct"]).sum()),
            "var_series": len(vt), "var_zones": vt["zone"].value_counts().to_dict(),
            "pooled_expected_liquidations": pooled["expected"], "pooled_realised_liquidations": pooled["hits"],
            "pooled_brier": brier_score(liq["predicted"], liq["realised"]),
            "reliability": reliability_table(liq["predicted"], liq["realised"]),
            "origins": int(liq["origin"].nunique()), "wall_seconds": f.wall_seconds,
            "compile_seconds": f.compile_seconds}


def write(out_dir, f: Forecasts, manifest: dict) -> dict:
    """Write forecasts, tables, summary and plots into ``out_dir`` atomically; returns the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lt, vt, summary = liquidation_table(f.liquidations), var_table(f.var), verdict(f)
    atomic_write_text(out / "liquidation_forecasts.csv", f.liquidations.to_csv(index=False))
    atomic_write_text(out / "var_forecasts.csv", f.var.to_csv(index=False))
    atomic_write_text(out / "liquidation_cases.csv", lt.to_csv(index=False))
    atomic_write_text(out / "var_series.csv", vt.to_csv(index=False))
    atomic_write_json(out / "summary.json", summary)
    atomic_write_json(out / "manifest.json", manifest)
    _plots(out, f, lt, summary)
    return summary


def _plots(out: Path, f: Forecasts, lt: pd.DataFrame, summary: dict) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4.5))
    rel = pd.DataFrame(summary["reliability"])
    if len(rel):
        err = np.vstack([rel["realised"] - rel["realised_lo95"], rel["realised_hi95"] - rel["realised"]])
        ax[0].errorbar(rel["mean_predicted"], rel["realised"], yerr=err, fmt="o", capsize=3, label="realised (95 % CI)")
        hi = float(max(rel["realised_hi95"].max(), rel["mean_predicted"].max())) * 1.05 + 1e-6
        ax[0].plot([0, hi], [0, hi], "k--", lw=1, label="perfect calibration")
        ax[0].set_xscale("symlog", linthresh=1e-3)
        ax[0].set_yscale("symlog", linthresh=1e-3)
    ax[0].set(xlabel="predicted P(liquidation)", ylabel="realised frequency", title="reliability (all cases)")
    ax[0].legend(loc="upper left")
    x = np.arange(len(lt))
    ax[1].bar(x - 0.2, lt["expected"], 0.4, label="expected")
    ax[1].bar(x + 0.2, lt["realised"], 0.4, label="realised")
    ax[1].set_xticks(x, lt["case"], rotation=90, fontsize=7)
    ax[1].set(ylabel="liquidations", title="per case")
    ax[1].legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(out / "reliability.png", buf.getvalue())
