"""Command line: ``perpjax simulate [CONFIG] [--paths N] [--seed S] [--out DIR] [--set k=v ...]``."""

from __future__ import annotations

import argparse
import sys


def _table(summary: dict, accounts) -> str:
    keys = ["paths", "steps", "seed", "p_any_liquidation", "expected_liquidations", "bad_debt_mean", "p_bad_debt",
            "bad_debt_var_99", "bad_debt_es_99", "bad_debt_es_99_9", "trader_loss_var_99", "trader_loss_es_99",
            "liquidated_notional_p99", "liquidation_events_mean", "insurance_fund_drawdown_es_99",
            "p_insurance_fund_depleted", "p_adl", "adl_mean", "uncovered_bad_debt_mean", "path_steps_per_second"]
    lines = ["venue", "-----"]
    for k in keys:
        if k in summary:
            v = summary[k]
            se = summary.get(f"{k}_se")
            txt = f"{v:,.6g}" if isinstance(v, float) else f"{v:,}"
            if se is not None:
                txt += f"  ± {se:,.3g}"
            lines.append(f"  {k:<28} {txt}")
    cols = ["unit", "mode", "p_liquidation", "p_liquidation_lo95", "p_liquidation_hi95", "mean_hours_to_liquidation",
            "expected_loss", "expected_bad_debt"]
    lines += ["", "accounts", "--------", accounts[cols].to_string(index=False, float_format=lambda x: f"{x:,.4g}")]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="perpjax", description="Monte Carlo risk engine for perpetual-futures venues.")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("simulate", help="simulate a book and report liquidation and tail-loss metrics")
    s.add_argument("config", nargs="?", help="YAML config (default: the packaged default config)")
    s.add_argument("--paths", type=int, help="number of Monte Carlo paths")
    s.add_argument("--seed", type=int, help="random seed")
    s.add_argument("--out", default="perpjax-out", help="output directory (default: perpjax-out)")
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set mark.window_seconds=300 (repeatable)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)

    from .config import ConfigError, build_model, load_config

    try:
        cfg = load_config(args.config, args.overrides)
        if args.paths is not None:
            cfg["paths"] = args.paths
        if args.seed is not None:
            cfg["seed"] = args.seed
        build_model(cfg)  # validate everything before any compute
    except ConfigError as e:
        print(f"perpjax: config error: {e}", file=sys.stderr)
        return 2

    from tqdm import tqdm

    from .api import run

    bar = None if args.no_progress else tqdm(total=cfg.get("paths", 100_000), unit="path", desc="simulate",
                                             file=sys.stderr)

    def progress(done, total):
        if bar is not None:
            bar.update(done - bar.n)

    res = run(cfg, progress=progress)
    if bar is not None:
        bar.close()
    res.write(args.out)
    print(_table(res.summary, res.accounts))
    print(f"\nwrote {args.out}/summary.json, accounts.csv, manifest.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
