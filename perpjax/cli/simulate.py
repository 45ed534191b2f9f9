"""``perpjax simulate``: one run (or liquidation modes side by side) of a config, summary printed and
written to the out dir."""

from __future__ import annotations

import sys


def register(sub) -> None:
    s = sub.add_parser("simulate", help="simulate a book and report liquidation and tail-loss metrics")
    s.add_argument("config", nargs="?", help="YAML config (default: the packaged default config)")
    s.add_argument("--scenario", metavar="NAME",
                   help="apply a packaged stress scenario over the config (see `perpjax scenarios`)")
    s.add_argument("--paths", type=int, help="number of Monte Carlo paths")
    s.add_argument("--seed", type=int, help="random seed")
    s.add_argument("--out", default="perpjax-out", help="output directory (default: perpjax-out)")
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set mark.window_seconds=300 (repeatable)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("--resume", action="store_true",
                   help="continue a killed run from DIR/checkpoint.npz (progress is saved there after every chunk)")
    s.add_argument("--compare-modes", metavar="M1,M2,...",
                   help="run these liquidation modes (full, buffer, tier_step, fraction) on the same random "
                        "paths and print their venue metrics side by side")
    s.set_defaults(func=run_command)
    sc = sub.add_parser("scenarios", help="list the packaged stress scenarios")
    sc.set_defaults(func=scenarios)


def run_command(args) -> int:
    from ..config import ConfigError, apply_overrides, apply_scenario, build_model, load_config

    try:
        cfg = load_config(args.config)
        if args.scenario:
            cfg = apply_scenario(cfg, args.scenario)
        cfg = apply_overrides(cfg, args.overrides)
        if args.paths is not None:
            cfg["paths"] = args.paths
        if args.seed is not None:
            cfg["seed"] = args.seed
        build_model(cfg)  # validate everything before any compute
    except ConfigError as e:
        print(f"perpjax: config error: {e}", file=sys.stderr)
        return 2

    from tqdm import tqdm

    from ..api import run

    bar = None if args.no_progress else tqdm(total=cfg.get("paths", 100_000), unit="path", desc="simulate",
                                             file=sys.stderr)

    def progress(done, total):
        if bar is not None:
            bar.update(done - bar.n)

    if args.compare_modes:
        return compare(cfg, args, progress, bar)
    from pathlib import Path

    ckpt = Path(args.out) / "checkpoint.npz"
    if not args.resume:
        ckpt.unlink(missing_ok=True)
    try:
        res = run(cfg, progress=progress, checkpoint=ckpt)
    except ValueError as e:
        if "checkpoint:" not in str(e):
            raise
        print(f"perpjax: {e}", file=sys.stderr)
        return 2
    if bar is not None:
        bar.close()
    res.write(args.out)
    ckpt.unlink(missing_ok=True)
    print(summary_table(res.summary, res.accounts))
    print(f"\nwrote {args.out}/summary.json, accounts.csv, tiers.csv, manifest.json")
    return 0


def summary_table(summary: dict, accounts) -> str:
    keys = ["paths", "steps", "seed", "p_any_liquidation", "expected_liquidations", "bad_debt_mean", "p_bad_debt",
            "bad_debt_var_99", "bad_debt_es_99", "bad_debt_es_99_9", "trader_loss_var_99", "trader_loss_es_99",
            "liquidated_notional_p99", "liquidation_events_mean", "insurance_fund_drawdown_es_99",
            "p_insurance_fund_depleted", "p_adl", "adl_mean", "uncovered_bad_debt_mean", "stress_time_share",
            "cascade_amplification", "cascade_amplification_p99", "cascade_rounds_mean", "cascade_rounds_p99",
            "cascade_size_p99", "path_steps_per_second"]
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


COMPARE_KEYS = ["p_any_liquidation", "liquidation_events_mean", "liquidated_notional_mean", "liquidated_notional_p99",
                "over_liquidated_notional_mean", "excess_liquidation_cost_mean", "mark_lag_artefact_share",
                "slippage_mean", "fees_mean", "backstop_pnl_mean", "bad_debt_mean", "bad_debt_es_99",
                "insurance_fund_drawdown_es_99",
                "p_insurance_fund_depleted", "p_adl", "adl_mean", "uncovered_bad_debt_mean", "trader_loss_mean",
                "trader_loss_es_99"]


def compare(cfg, args, progress, bar) -> int:
    import copy
    from pathlib import Path

    import pandas as pd

    from ..api import run
    from ..config import ConfigError, build_model
    from ..io import atomic_write_text

    modes = [m.strip() for m in args.compare_modes.split(",") if m.strip()]
    cfgs = {}
    for m in modes:
        c = copy.deepcopy(cfg)
        c.setdefault("liquidation", {})["mode"] = m
        c["liquidation"].setdefault("fairness", True)  # side by side is about fairness too
        try:
            build_model(c)
        except ConfigError as e:
            print(f"perpjax: config error: --compare-modes {m}: {e}", file=sys.stderr)
            return 2
        cfgs[m] = c
    cols = {}
    for m, c in cfgs.items():
        if bar is not None:
            bar.reset()
            bar.set_description(m)
        res = run(c, progress=progress)
        res.write(Path(args.out) / m)
        cols[m] = {k: res.summary.get(k) for k in COMPARE_KEYS}
    if bar is not None:
        bar.close()
    table = pd.DataFrame(cols)
    atomic_write_text(Path(args.out) / "compare.csv", table.to_csv())
    print(f"liquidation paths on the same {cfg.get('paths', 100_000):,} random paths (seed {cfg.get('seed', 0)})")
    print(table.to_string(float_format=lambda x: f"{x:,.5g}"))
    print(f"\nwrote {args.out}/compare.csv and one folder per mode")
    return 0


def scenarios(args=None) -> int:
    from ..config import list_scenarios

    rows = list_scenarios()
    w = max(len(n) for n, _ in rows)
    print("packaged scenarios (perpjax simulate [CONFIG] --scenario NAME):")
    for name, desc in rows:
        print(f"  {name:<{w}}  {desc}")
    return 0
