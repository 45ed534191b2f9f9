"""Command line: ``perpjax simulate [CONFIG] [--paths N] [--seed S] [--out DIR] [--set k=v ...]``."""

from __future__ import annotations

import argparse
import sys


def _table(summary: dict, accounts) -> str:
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="perpjax", description="Monte Carlo risk engine for perpetual-futures venues.")
    sub = p.add_subparsers(dest="cmd", required=True)
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
    sub.add_parser("scenarios", help="list the packaged stress scenarios")
    ft = sub.add_parser("fit", help="fit the market model (vol, nu, jumps, GARCH, calm/stress correlation) to prices")
    ft.add_argument("csv", nargs="?", help="prices in the format of ../shared/data (timestamp, symbol, close, ...); "
                                            "default: the shared Binance USD-M hourly file")
    ft.add_argument("--symbols", default="BTCUSDT,ETHUSDT,SOLUSDT,DOGEUSDT", help="comma-separated symbols")
    ft.add_argument("--names", default="BTC,ETH,SOL,DOGE", help="asset names in the config, one per symbol")
    ft.add_argument("--start", help="first bar (UTC date or unix seconds)")
    ft.add_argument("--end", help="end of the window, exclusive (UTC date or unix seconds)")
    ft.add_argument("--base", help="config whose book, ladders and depth the fitted market goes into "
                                   "(default: the packaged default)")
    ft.add_argument("--out", default="fitted.yaml", help="config file to write (default: fitted.yaml)")
    cb = sub.add_parser("calibrate", help="tune the maintenance ladders by gradient (config section calibration)")
    cb.add_argument("config", nargs="?", help="YAML config (default: the packaged default config)")
    cb.add_argument("--out", default="perpjax-calibration", help="output directory")
    cb.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value, e.g. --set calibration.iterations=50 (repeatable)")
    cb.add_argument("--resume", action="store_true", help="continue from DIR/calibration_checkpoint.npz")
    lp = sub.add_parser("liq-price", help="exact liquidation and bankruptcy price of one position (no Monte Carlo)")
    lp.add_argument("--venue", required=True, help="binance_usdm, hyperliquid or dydx_v4")
    lp.add_argument("--symbol", required=True, help="e.g. BTCUSDT (binance_usdm), BTC (hyperliquid), BTC-USD (dydx_v4)")
    lp.add_argument("--side", required=True, choices=["long", "short"])
    lp.add_argument("--size", type=float, required=True, help="position size in base units (> 0)")
    lp.add_argument("--entry", type=float, required=True, help="entry price (USD)")
    lp.add_argument("--wallet", type=float, required=True,
                    help="wallet balance (cross) or isolated margin (USD); dYdX: equity")
    lp.add_argument("--other-mm", type=float, default=0.0, help="maintenance margin of the account's other positions")
    lp.add_argument("--other-upnl", type=float, default=0.0, help="unrealised PnL of the account's other positions")
    fr = sub.add_parser("funding-rate", help="funding rate of one interval from premium samples (no Monte Carlo)")
    fr.add_argument("--venue", required=True, help="binance_usdm or hyperliquid")
    fr.add_argument("premiums", nargs="+", type=float, help="premium index samples in time order (fractions)")
    args = p.parse_args(argv)
    if args.cmd == "liq-price":
        return _liq_price(args)
    if args.cmd == "funding-rate":
        return _funding_rate(args)
    if args.cmd == "scenarios":
        return _scenarios()
    if args.cmd == "fit":
        return _fit(args)
    if args.cmd == "calibrate":
        return _calibrate(args)

    from .config import ConfigError, apply_overrides, apply_scenario, build_model, load_config

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

    from .api import run

    bar = None if args.no_progress else tqdm(total=cfg.get("paths", 100_000), unit="path", desc="simulate",
                                             file=sys.stderr)

    def progress(done, total):
        if bar is not None:
            bar.update(done - bar.n)

    if args.compare_modes:
        return _compare(cfg, args, progress, bar)
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
    print(_table(res.summary, res.accounts))
    print(f"\nwrote {args.out}/summary.json, accounts.csv, tiers.csv, manifest.json")
    return 0


COMPARE_KEYS = ["p_any_liquidation", "liquidation_events_mean", "liquidated_notional_mean", "liquidated_notional_p99",
                "over_liquidated_notional_mean", "excess_liquidation_cost_mean", "mark_lag_artefact_share",
                "slippage_mean", "fees_mean", "backstop_pnl_mean", "bad_debt_mean", "bad_debt_es_99",
                "insurance_fund_drawdown_es_99",
                "p_insurance_fund_depleted", "p_adl", "adl_mean", "uncovered_bad_debt_mean", "trader_loss_mean",
                "trader_loss_es_99"]


def _compare(cfg, args, progress, bar) -> int:
    import copy
    from pathlib import Path

    import pandas as pd

    from .api import run
    from .config import ConfigError, build_model
    from .io import atomic_write_text

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


def _calibrate(a) -> int:
    from .calibrate import check_calibratable, run_calibration
    from .config import ConfigError, apply_overrides, build_model, load_config, resolve_calibration

    try:
        cfg = apply_overrides(load_config(a.config), a.overrides)
        from .calibrate import LadderSpace

        model, _, resolved = build_model(cfg)
        cal = resolve_calibration(resolved)
        check_calibratable(model)
        names = resolved["asset_names"]
        LadderSpace.from_model(model, [names.index(x) for x in (names if cal["assets"] == "all" else cal["assets"])],
                               cal["min_mmr"], cal["max_mmr"], tuple(cal["tune"]), cal["max_fee_rate"])
    except (ConfigError, ValueError) as e:
        print(f"perpjax: config error: {e}", file=sys.stderr)
        return 2
    res = run_calibration(cfg, out_dir=a.out, resume=a.resume)
    print(res["ladder"].to_string(index=False, float_format=lambda x: f"{x:,.6g}"))
    m = res["metrics"]
    print(pd_table(m))
    print(f"\nwrote {a.out}/ladder.csv, ladder_before.csv, history.csv, metrics.json, calibrated.yaml, *.png")
    return 0


def pd_table(m: dict) -> str:
    import pandas as pd

    t = pd.DataFrame({"before": m["before"], "after": m["after"]})
    return (f"\nhard engine on {m['eval_paths']:,} fresh paths (seed {m['eval_seed']}):\n"
            + t.to_string(float_format=lambda x: f"{x:,.6g}"))


def _scenarios() -> int:
    from .config import list_scenarios

    rows = list_scenarios()
    w = max(len(n) for n, _ in rows)
    print("packaged scenarios (perpjax simulate [CONFIG] --scenario NAME):")
    for name, desc in rows:
        print(f"  {name:<{w}}  {desc}")
    return 0


def _fit(a) -> int:
    from pathlib import Path

    import yaml

    from . import estimate, replay
    from .config import ConfigError, build_model, load_config
    from .io import atomic_write_text

    symbols = [x.strip() for x in a.symbols.split(",") if x.strip()]
    names = [x.strip() for x in a.names.split(",") if x.strip()]
    if len(names) != len(symbols):
        print(f"perpjax: input error: --names has {len(names)} names for {len(symbols)} symbols", file=sys.stderr)
        return 2
    try:
        closes = estimate.read_prices(a.csv if a.csv else replay.default_data_path())
        res = estimate.fit_market(closes, symbols, start=a.start, end=a.end)
        cfg = estimate.market_config(res, names, load_config(a.base))
        build_model(cfg)  # the written config must be valid as it stands
    except (ValueError, ConfigError) as e:
        print(f"perpjax: input error: {e}", file=sys.stderr)
        return 2
    print(estimate.summary_table(res).to_string(float_format=lambda x: f"{x:,.4g}"))
    atomic_write_text(Path(a.out), "# written by `perpjax fit`; the market keys are fitted, the rest is the base "
                      "config\n" + yaml.safe_dump(cfg, sort_keys=False))
    print(f"\nwrote {a.out} (run it: perpjax simulate {a.out})")
    return 0


def _liq_price(a) -> int:
    from . import venues

    try:
        br = venues.brackets(a.venue, a.symbol)
        if a.venue == "binance_usdm":
            lp = venues.binance_liquidation_price(a.wallet, a.size, a.entry, a.side, br, a.other_mm, a.other_upnl)
        elif a.venue == "hyperliquid":
            lp = venues.hyperliquid_liquidation_price(a.wallet + a.other_upnl - a.other_mm, a.size, a.entry, a.side, br)
        else:
            signed = a.size if a.side == "long" else -a.size
            lp = venues.dydx_liquidation_price(a.wallet, signed, a.entry, float(br.mmr[0]), a.other_mm)
        bk = venues.bankruptcy_price(a.wallet + a.other_upnl - a.other_mm, a.size, a.entry, a.side)
    except ValueError as e:
        print(f"perpjax: input error: {e}", file=sys.stderr)
        return 2
    k = br.tier(a.size * lp) if lp > 0 else None
    print(f"venue {a.venue}  symbol {a.symbol}  {a.side} {a.size:g} @ {a.entry:,.2f}  wallet {a.wallet:,.2f}")
    print(f"  liquidation price   {lp:,.2f}" if lp > 0 else "  liquidation price   -- (cannot be liquidated)")
    if k is not None:
        print(f"  bracket at LP       {k + 1} (floor {br.floors[k]:,.0f}, MMR {br.mmr[k]:.4%}, cum {br.cum[k]:,.2f})")
    print(f"  bankruptcy price    {bk:,.2f}" if bk > 0 else "  bankruptcy price    -- (none)")
    return 0


def _funding_rate(a) -> int:
    from . import venues

    try:
        r = venues.funding_rate(a.premiums, a.venue)
    except ValueError as e:
        print(f"perpjax: input error: {e}", file=sys.stderr)
        return 2
    print(f"{a.venue} funding rate {r:.10f} ({r:.6%}) from {len(a.premiums)} premium samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
