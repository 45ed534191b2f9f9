"""Out-of-sample validation on the shared data: fit on 2020-09 .. 2021-12, backtest every day of 2022.

    python benchmarks/validation.py [--paths 20000] [--out validation-out] [--models refit,block_refit]
    python benchmarks/validation.py --diagnose validation-out/refit.residuals.npz   # fit-window diagnostics
    python benchmarks/validation.py --symbols BNBUSDT,LINKUSDT,AVAXUSDT --out held-out-perp   # other assets
    python benchmarks/validation.py --data ../shared/data/binance_spot_1h_xrp_ada_ltc.csv.gz \
        --symbols XRPUSDT,ADAUSDT,LTCUSDT --out held-out-spot

Runs, side by side: the unconditional fit (`perpjax fit`: Student-t + GARCH from the long-run state,
no daily state), the conditional FHS model (`perpjax fit --conditional`: GARCH-standardised
residuals bootstrapped, the state filtered daily by `perpjax backtest`), the same re-estimated
every 30 origins on the 365 days before the origin, both again with the residuals bootstrapped
in moving blocks of one day (`--block-bars 24`), and the refit one with blocks of 10 bars (a
sensitivity run), and writes the tables of
`benchmarks/VALIDATION.md` (case, mean predicted, expected and realised count, exact coverage-test p,
VaR exceptions and traffic-light zone) to stdout.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

# name -> (tag, `perpjax fit` flags, `perpjax backtest` flags)
MODELS = {
    "unconditional": ("unconditional", [], ["--no-conditional"]),
    "conditional FHS": ("conditional", ["--conditional", "--block-bars", "1"], ["--conditional"]),
    "conditional FHS, monthly refit": ("refit", ["--conditional", "--block-bars", "1"],
                                       ["--conditional", "--refit-every", "30", "--fit-window-days", "365"]),
    "FHS, daily blocks": ("block", ["--conditional", "--block-bars", "24"], ["--conditional"]),
    "FHS, daily blocks, monthly refit": ("block_refit", ["--conditional", "--block-bars", "24"],
                                         ["--conditional", "--refit-every", "30", "--fit-window-days", "365"]),
    "FHS, 10-bar blocks, monthly refit": ("block10_refit", ["--conditional", "--block-bars", "10"],
                                          ["--conditional", "--refit-every", "30", "--fit-window-days", "365"]),
    "FHS, 10-bar blocks (fitted once)": ("block10", ["--conditional", "--block-bars", "10"], ["--conditional"]),
}


def sh(*args):
    print("+", " ".join(args), file=sys.stderr, flush=True)
    subprocess.run(args, check=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--paths", type=int, default=20_000)
    ap.add_argument("--out", default="validation-out")
    ap.add_argument("--start", default="2022-01-01")
    ap.add_argument("--end", default="2023-01-01")
    ap.add_argument("--fit-start", default="2020-09-01", help="first bar of the estimation window")
    ap.add_argument("--fit-end", default="2022-01-01", help="end of the estimation window (exclusive)")
    ap.add_argument("--data", help="price file (default: the shared Binance USD-M hourly file)")
    ap.add_argument("--symbols", help="comma-separated symbols (default: perpjax fit's, BTC ETH SOL DOGE)")
    ap.add_argument("--diagnose", metavar="RESIDUALS_NPZ",
                    help="only print the in-sample diagnostics of a fit's residual file (`perpjax fit --conditional`)")
    ap.add_argument("--models", default=",".join(t for t, _, _ in MODELS.values()),
                    help="comma-separated tags to run (default: all): " + ", ".join(t for t, _, _ in MODELS.values()))
    a = ap.parse_args()
    tags = a.models.split(",")
    if a.diagnose:
        print(diagnose(a.diagnose))
        return
    out = Path(a.out)
    out.mkdir(exist_ok=True)
    res = {}
    for name, (tag, flags, bt_flags) in MODELS.items():
        if tag not in tags:
            continue
        cfg = out / f"{tag}.yaml"
        cli = (sys.executable, "-m", "perpjax")
        data = [a.data] if a.data else []
        fit_sym = []
        if a.symbols:
            names = [x.strip().removesuffix("USDT") for x in a.symbols.split(",")]
            fit_sym = ["--symbols", a.symbols, "--names", ",".join(names), "--base", held_out_base(names, out)]
        bt_sym = (["--symbols", a.symbols] if a.symbols else []) + (["--data", a.data] if a.data else [])
        sh(*cli, "fit", *data, *fit_sym, "--start", a.fit_start, "--end", a.fit_end, *flags, "--out", str(cfg))
        bt = out / f"backtest_{tag}"
        sh(*cli, "backtest", str(cfg), *bt_sym, "--start", a.start, "--end", a.end, "--paths", str(a.paths),
           "--out", str(bt), "--no-progress", *bt_flags)
        res[name] = (pd.read_csv(bt / "liquidation_cases.csv"), pd.read_csv(bt / "var_series.csv"))
    print(table(res))


def held_out_base(names: list, out: Path) -> str:
    """A base config for ``perpjax fit`` of assets the packaged default does not list: the default's first
    ``len(names)`` assets renamed (their depth, spread and ladders kept: venue settings that prices do not
    estimate and the backtest's isolated cases do not use), accounts on other assets dropped."""
    import yaml

    from perpjax.config import default_config_path

    cfg = yaml.safe_load(Path(default_config_path()).read_text())
    old = [x["name"] for x in cfg["assets"]]
    if len(names) > len(old):
        raise SystemExit(f"--symbols: at most {len(old)} assets (the default config's)")
    rename = dict(zip(old[:len(names)], names, strict=True))
    cfg["assets"] = [{**x, "name": rename[x["name"]]} for x in cfg["assets"][:len(names)]]
    cfg["correlation"] = [row[:len(names)] for row in cfg["correlation"][:len(names)]]
    cfg["ladders"] = {rename[k]: v for k, v in cfg["ladders"].items() if k in rename}
    accounts = [acc for acc in cfg["book"]["accounts"] if all(p["asset"] in rename for p in acc["positions"])]
    for acc in accounts:
        acc["positions"] = [{**p, "asset": rename[p["asset"]]} for p in acc["positions"]]
    cfg["book"] = {"accounts": accounts}
    path = out / ("base-" + "-".join(names) + ".yaml")
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


def diagnose(residuals_file: str, block: int = 24, draws: int = 200_000) -> str:
    """In-sample diagnostics of the fit window's GARCH-standardised residuals (the FHS sample), for the
    choice of the bootstrap: per asset the variance ratio of the ``block``-bar sums (Lo & MacKinlay 1988,
    overlapping sums; SE under i.i.d. ``sqrt(2 (2q - 1)(q - 1) / (3 q n))``), the leverage effect
    ``sum_k corr(z_t, z_{t+k}^2)``, k = 1 .. block (SE ~ ``sqrt(block / n)`` under independence), and the 1 %
    / 99 % quantiles of the ``block``-bar sums: the data's (every start), an i.i.d. bootstrap's and the
    moving-block bootstrap's (``draws`` each, seed 0)."""
    import math

    import numpy as np

    f = np.load(residuals_file)
    z, names = np.asarray(f["residuals"], np.float64), [str(a) for a in f["assets"]]
    z = (z - z.mean(0)) / z.std(0)
    n, q = len(z), block
    rng = np.random.default_rng(0)
    lines = [f"| asset | VR({q}) (SE) | leverage sum (SE) | {q}-bar sum q1 / q99: data | i.i.d. bootstrap | "
             f"{q}-bar blocks |", "|---|---|---|---|---|---|"]
    se_vr, se_lev = math.sqrt(2 * (2 * q - 1) * (q - 1) / (3 * q * n)), math.sqrt(q / n)
    for i, name in enumerate(names):
        x = z[:, i]
        sums = np.lib.stride_tricks.sliding_window_view(x, q).sum(-1)
        lev = sum(np.corrcoef(x[:-k], x[k:] ** 2)[0, 1] for k in range(1, q + 1))
        iid = x[rng.integers(0, n, (draws, q))].sum(1)
        blk = sums[rng.integers(0, n - q + 1, draws)]
        qs = [f"{np.quantile(v, 0.01):.2f} / {np.quantile(v, 0.99):.2f}" for v in (sums, iid, blk)]
        lines.append(f"| {name} | {sums.var() / q:.3f} ({se_vr:.3f}) | {lev:+.3f} ({se_lev:.3f}) | "
                     + " | ".join(qs) + " |")
    return "\n".join(lines)


def table(res: dict) -> str:
    names = list(res)
    liq = {n: r[0].set_index("case") for n, r in res.items()}
    first = liq[names[0]]
    lines = ["| case | realised | " + " | ".join(f"{n}: mean p / expected / coverage p" for n in names) + " |",
             "|---|---|" + "---|" * len(names)]
    for case in first.index:
        cells = []
        for n in names:
            r = liq[n].loc[case]
            flag = " **rejected**" if r["coverage_p"] < 0.05 else ""
            cells.append(f"{r['mean_predicted']:.4f} / {r['expected']:.1f} / {r['coverage_p']:.3f}{flag}")
        lines.append(f"| {case} | {int(first.loc[case, 'realised'])} | " + " | ".join(cells) + " |")
    lines.append("| **not rejected at 5 %** | | " + " | ".join(
        f"**{int((liq[n]['coverage_p'] >= 0.05).sum())} of {len(liq[n])}**" for n in names) + " |")
    lines += ["", "| 99 % VaR series | " + " | ".join(f"{n}: exceptions / Kupiec p / zone" for n in names) + " |",
              "|---|" + "---|" * len(names)]
    var = {n: r[1].set_index(["asset", "side"]) for n, r in res.items()}
    for key in var[names[0]].index:
        cells = [f"{int(var[n].loc[key, 'exceptions'])} / {var[n].loc[key, 'kupiec_p']:.3f} / {var[n].loc[key, 'zone']}"
                 for n in names]
        lines.append(f"| {key[0]} {key[1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
