"""Out-of-sample validation on the shared data: fit on 2020-09 .. 2021-12, backtest every day of 2022.

    python benchmarks/validation.py [--paths 20000] [--out validation-out]

Runs, side by side: the unconditional fit (`perpjax fit`: Student-t + GARCH from the long-run state,
no daily state), the conditional FHS model (`perpjax fit --conditional`: GARCH-standardised
residuals bootstrapped, the state filtered daily by `perpjax backtest`), and the same re-estimated
every 30 origins on the 365 days before the origin, and writes the tables of
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
    "conditional FHS": ("conditional", ["--conditional"], ["--conditional"]),
    "conditional FHS, monthly refit": ("refit", ["--conditional"],
                                       ["--conditional", "--refit-every", "30", "--fit-window-days", "365"]),
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
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(exist_ok=True)
    res = {}
    for name, (tag, flags, bt_flags) in MODELS.items():
        cfg = out / f"{tag}.yaml"
        cli = (sys.executable, "-m", "perpjax")
        sh(*cli, "fit", "--start", "2020-09-01", "--end", "2022-01-01", *flags, "--out", str(cfg))
        bt = out / f"backtest_{tag}"
        sh(*cli, "backtest", str(cfg), "--start", a.start, "--end", a.end, "--paths", str(a.paths),
           "--out", str(bt), "--no-progress", *bt_flags)
        res[name] = (pd.read_csv(bt / "liquidation_cases.csv"), pd.read_csv(bt / "var_series.csv"))
    print(table(res))


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
