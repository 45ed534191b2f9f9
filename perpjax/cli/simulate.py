"""``perpjax simulate``: one run (or liquidation modes side by side) of a config, summary printed and
written to the out dir."""

from __future__ import annotations

import sys

import numpy as np

from .common import add_config_args, load
from .report import html_report


def register(sub) -> None:
    s = sub.add_parser("simulate", help="simulate a book and report liquidation and tail-loss metrics")
    add_config_args(s)
    s.add_argument("--scenario", metavar="NAME",
                   help="apply a packaged stress scenario over the config (see `perpjax scenarios`)")
    s.add_argument("--paths", type=int, help="number of Monte Carlo paths")
    s.add_argument("--seed", type=int, help="random seed")
    s.add_argument("--devices", type=int, help="local devices to split the paths over (default: all; config key "
                                                "devices)")
    s.add_argument("--out", default="perpjax-out", help="output directory (default: perpjax-out)")
    d = s.add_argument_group("several processes / hosts (jax.distributed; --out must be a shared directory)")
    d.add_argument("--coordinator", metavar="HOST:PORT",
                   help="process 0's address and a free port, or 'auto' under Slurm / Open MPI "
                        "(env PERPJAX_COORDINATOR)")
    d.add_argument("--num-processes", metavar="N", help="number of processes (env PERPJAX_NUM_PROCESSES)")
    d.add_argument("--process-id", metavar="I", help="this process, 0..N-1 (env PERPJAX_PROCESS_ID)")
    d.add_argument("--init-timeout", metavar="S",
                   help="seconds to wait for the other processes at start-up (default 120; env PERPJAX_INIT_TIMEOUT)")
    s.add_argument("--report", action="store_true", help="also write DIR/report.html (see `perpjax report`)")
    s.add_argument("--resume", action="store_true",
                   help="continue a killed run: the chunks already in DIR/paths/ are kept (each finished chunk "
                        "is saved there); refused if the config, seed, paths or chunk size differ")
    s.add_argument("--compare-modes", metavar="M1,M2,...",
                   help="run these liquidation modes (full, buffer, tier_step, fraction) on the same random "
                        "paths and print their venue metrics side by side")
    s.set_defaults(func=run_command)
    sc = sub.add_parser("scenarios", help="list the packaged stress scenarios")
    sc.set_defaults(func=scenarios)


def _name_account(msg: str, cfg: dict) -> str:
    """Append the account id to a ``book.accounts[i]...`` message."""
    import re

    m = re.match(r"book\.accounts\[(\d+)\]", msg)
    try:
        acc = cfg["book"]["accounts"][int(m.group(1))] if m else None
        return f"{msg} (account {acc['id']!r})" if isinstance(acc, dict) and "id" in acc else msg
    except (KeyError, IndexError, TypeError):
        return msg


def _load(args):
    """The run's config with scenario, --book, overrides, --paths and --seed applied (``common.load``)."""
    cfg = load(args, scenario=args.scenario)
    if args.paths is not None:
        cfg["paths"] = args.paths
    if args.seed is not None:
        cfg["seed"] = args.seed
    if args.devices is not None:
        cfg["devices"] = args.devices
    return cfg


def _check(cfg, warn):
    """Everything that can be checked before compute: the config, the path cap, the book at t = 0."""
    from ..config import ConfigError, build_model
    from ..engine.driver import check_path_count
    from ..solvency import check_solvency

    model, labels, resolved = build_model(cfg)
    check_path_count(resolved["paths"], ConfigError)
    check_solvency(model, labels, resolved, warn=warn)
    return resolved


def _warn(msg):
    print(f"perpjax: {msg}", file=sys.stderr)


def run_command(args) -> int:
    from ..config import ConfigError
    from ..distributed import initialize

    cfg = {}
    try:
        cfg = _load(args)
        cluster = initialize(args.coordinator, args.num_processes, args.process_id, args.init_timeout)
        if args.compare_modes and cluster.num_processes > 1:
            raise ConfigError("--compare-modes: not supported on several processes (run each mode on its own)")
        _check(cfg, _warn)  # validate everything before any compute
    except ConfigError as e:
        print(f"perpjax: config error: {_name_account(str(e), cfg)}", file=sys.stderr)
        return 2

    from tqdm import tqdm

    from ..api import run

    bar = None if args.no_progress else tqdm(total=cfg.get("paths", 100_000), unit="path", desc="simulate",
                                             file=sys.stderr)

    def progress(done, total):
        if bar is not None:
            bar.update(done - bar.n)

    extra = {"scenario": args.scenario, "config_file": args.config, "book_file": args.book}
    try:
        if args.compare_modes:
            return compare(cfg, args, progress, bar, extra)
        res = run(cfg, progress=progress, out=args.out, resume=args.resume, check_book=False,
                  manifest_extra=extra)
    except ConfigError as e:  # out dir refused, checkpoint of another run, corrupted chunk file
        print(f"perpjax: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a disk that fills up or goes away while results are written
        where = e.filename or args.out
        print(f"perpjax: cannot write the results to {where}: {e.strerror or e}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    if res is None:
        print(f"process {cluster.process_id} of {cluster.num_processes}: its chunks are in {args.out}/paths; "
              "process 0 writes the results")
        return 0
    print(summary_table(res.summary, res.accounts))
    print(f"\nwrote {args.out}/summary.json, accounts.csv, tiers.csv, manifest.json and paths/ "
          "(per-path values, one Parquet file per chunk)")
    return html_report(args.out) if args.report else 0


# (key, label, unit): the printed venue table. Units: USD, probability (0..1), hours, count per path.
SUMMARY_ROWS = [
    ("paths", "paths", "count"), ("steps", "time steps", "count"), ("horizon_hours", "horizon", "hours"),
    ("seed", "seed", ""),
    ("p_any_liquidation", "P(any liquidation)", "probability"),
    ("expected_liquidations", "units liquidated per path, mean", "count"),
    ("liquidation_events_mean", "liquidation events per path, mean", "count"),
    ("bad_debt_mean", "bad debt, mean", "USD"), ("p_bad_debt", "P(bad debt > 0)", "probability"),
    ("bad_debt_var_99", "bad debt VaR 99%", "USD"), ("bad_debt_es_99", "bad debt ES 99%", "USD"),
    ("bad_debt_es_99_9", "bad debt ES 99.9%", "USD"),
    ("trader_loss_var_99", "trader loss VaR 99%", "USD"), ("trader_loss_es_99", "trader loss ES 99%", "USD"),
    ("liquidated_notional_p99", "liquidated notional p99", "USD"),
    ("insurance_fund_drawdown_es_99", "insurance fund drawdown ES 99%", "USD"),
    ("p_insurance_fund_depleted", "P(insurance fund depleted)", "probability"),
    ("p_adl", "P(auto-deleveraging)", "probability"), ("adl_mean", "ADL charges, mean", "USD"),
    ("uncovered_bad_debt_mean", "uncovered bad debt, mean", "USD"),
    ("stress_time_share", "time in stress regime", "share"),
    ("cascade_amplification", "cascade amplification (mean drawdown)", "ratio"),
    ("cascade_amplification_p99", "cascade amplification (p99 drawdown)", "ratio"),
    ("cascade_rounds_mean", "cascade rounds, mean", "count"), ("cascade_rounds_p99", "cascade rounds p99", "count"),
    ("cascade_size_p99", "cascade size p99", "USD"),
    ("path_steps_per_second", "speed", "path-steps/s"),
]


def fmt(v, unit: str = "") -> str:
    """One number, formatted by its unit; never ``-0``."""
    if v is None:
        return "n/a"
    if isinstance(v, bool) or isinstance(v, int):
        return f"{v:,}"
    v = float(v) + 0.0  # -0.0 -> 0.0
    if v != v:
        return "n/a"
    if unit == "USD":
        txt = f"{v:,.2f}"
    elif unit in ("probability", "share"):
        txt = f"{v:.4f}"
    elif unit == "path-steps/s":
        txt = f"{v:,.0f}"
    elif unit in ("count", "hours", "ratio"):
        txt = f"{v:,.4f}" if v != int(v) else f"{int(v):,}"
    else:
        txt = f"{v:,.4g}"
    if txt.startswith("-") and not txt.strip("-0.,"):  # rounds to zero: no "-0.00"
        txt = txt[1:]
    return txt


def summary_table(summary: dict, accounts) -> str:
    s = {**summary, "horizon_hours": summary.get("horizon_seconds", 0) / 3600.0}
    rows = []
    for k, label, unit in SUMMARY_ROWS:
        if k not in s:
            continue
        txt = fmt(s[k], unit)
        se = summary.get(f"{k}_se")
        if se is not None:
            txt += f" ± {fmt(se, unit)}"
        rows.append((label, txt, unit))
    w = max(len(r[0]) for r in rows)
    wv = max(len(r[1]) for r in rows)
    lines = ["venue", "-----"] + [f"  {lab:<{w}}  {txt:>{wv}}  {unit}" for lab, txt, unit in rows]
    lines.append("  (± = one Monte Carlo standard error; VaR/ES: quantile / expected shortfall over paths)")
    cols = [("unit", "unit", None), ("mode", "mode", None), ("p_liquidation", "P(liq)", "probability"),
            ("p_liquidation_lo95", "P lo95", "probability"), ("p_liquidation_hi95", "P hi95", "probability"),
            ("mean_hours_to_liquidation", "hours to liq", "hours"),
            ("expected_loss", "E[loss] USD", "USD"), ("expected_bad_debt", "E[bad debt] USD", "USD")]
    table = accounts[[c for c, _, _ in cols]].copy()
    for c, _, unit in cols:
        if unit is not None:
            table[c] = [fmt(v, unit) for v in table[c]]
    table.columns = [h for _, h, _ in cols]
    lines += ["", "accounts (per margin unit; P lo95/hi95: 95% Wilson interval; hours to liq: mean over paths "
              "that liquidate, n/a if none)", "--------", table.to_string(index=False)]
    return "\n".join(lines)


# Compared metric -> (kind, per-path value): kind "mean" (mean of the value), "es" (expected shortfall at
# the level), "q" (quantile at the level), None (a ratio of sums: no per-path value, no SE).
def _liq_any(o):
    return (o.path_n_liquidations > 0).astype(np.float64)


COMPARE = {
    "p_any_liquidation": ("mean", _liq_any),
    "liquidation_events_mean": ("mean", lambda o: o.path_liq_events),
    "liquidated_notional_mean": ("mean", lambda o: o.path_liq_notional),
    "liquidated_notional_p99": (("q", 0.99), lambda o: o.path_liq_notional),
    "over_liquidated_notional_mean": ("mean", lambda o: o.path_over_notional),
    "excess_liquidation_cost_mean": ("mean", lambda o: o.path_excess_cost),
    "mark_lag_artefact_share": (None, None),
    "slippage_mean": ("mean", lambda o: o.path_slippage),
    "fees_mean": ("mean", lambda o: o.path_fees),
    "backstop_pnl_mean": ("mean", lambda o: o.path_backstop_pnl),
    "bad_debt_mean": ("mean", lambda o: o.path_bad_debt),
    "bad_debt_es_99": (("es", 0.99), lambda o: o.path_bad_debt),
    "insurance_fund_drawdown_es_99": (("es", 0.99), lambda o: -np.minimum(o.path_fund_min, 0.0)),
    "p_insurance_fund_depleted": ("mean", lambda o: ((o.path_adl + o.path_uncovered) > 0).astype(np.float64)),
    "p_adl": ("mean", lambda o: (o.path_adl > 0).astype(np.float64)),
    "adl_mean": ("mean", lambda o: o.path_adl),
    "uncovered_bad_debt_mean": ("mean", lambda o: o.path_uncovered),
    "trader_loss_mean": ("mean", lambda o: o.path_trader_loss),
    "trader_loss_es_99": (("es", 0.99), lambda o: o.path_trader_loss),
}
COMPARE_KEYS = list(COMPARE)
BATCHES = 20


def _influence(kind, x):
    """Per-path values whose mean is the metric (to first order): SEs and paired differences from them."""
    if kind == "mean":
        return np.asarray(x, np.float64)
    _, a = kind
    var = float(np.quantile(x, a, method="inverted_cdf"))
    return var + np.maximum(np.asarray(x, np.float64) - var, 0.0) / (1 - a)


def _batch_values(kind, x, batches=BATCHES):
    _, a = kind
    return np.array([np.quantile(b, a) for b in np.array_split(np.asarray(x, np.float64), batches)])


def _se(v):
    v = np.asarray(v, np.float64)
    return float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")


def compare_table(outcomes: dict, summaries: dict):
    """Rows: metrics; columns: each mode's value and SE, and each later mode's difference from the first
    with its SE on common random numbers (paired per-path differences; quantiles: batch means)."""
    import pandas as pd

    modes = list(outcomes)
    first = modes[0]
    table = {}
    for key, (kind, value) in COMPARE.items():
        row = {}
        xs = {m: (value(outcomes[m]) if value is not None else None) for m in modes}
        infl = {}
        for m in modes:
            row[m] = summaries[m].get(key)
            if kind is None:
                row[f"{m}_se"] = float("nan")
            elif kind == "mean" or kind[0] == "es":
                infl[m] = _influence(kind, xs[m])
                row[f"{m}_se"] = _se(infl[m])
            else:
                infl[m] = _batch_values(kind, xs[m])
                row[f"{m}_se"] = _se(infl[m])
        for m in modes[1:]:
            a, b = row[m], row[first]
            row[f"{m}_minus_{first}"] = (a - b) if a is not None and b is not None else None
            row[f"{m}_minus_{first}_se"] = _se(infl[m] - infl[first]) if kind is not None else float("nan")
        table[key] = row
    return pd.DataFrame(table).T


def compare(cfg, args, progress, bar, extra) -> int:
    import copy

    from ..api import run
    from ..config import ConfigError, build_model
    from ..io import atomic_write_text
    from ..store import OutDir

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
    outcomes, summaries = {}, {}
    with OutDir(args.out) as d:
        for m, c in cfgs.items():  # each mode stored (and resumable) in its own folder
            if bar is not None:
                bar.reset()
                bar.set_description(m)
            res = run(c, progress=progress, out=d.path / m, resume=args.resume, check_book=False,
                      manifest_extra={**extra, "compare_modes": modes})
            outcomes[m], summaries[m] = res.outcome, res.summary
        table = compare_table(outcomes, summaries)
        atomic_write_text(d.path / "compare.csv", table.to_csv())
    print(f"liquidation paths on the same {cfg.get('paths', 100_000):,} random paths (seed {cfg.get('seed', 0)}); "
          f"± = one Monte Carlo standard error; '{modes[0]}→X': X minus {modes[0]} on common random numbers")
    shown = {}
    for m in modes:
        shown[m] = [f"{fmt(v)} ± {fmt(e)}" for v, e in zip(table[m], table[f"{m}_se"], strict=True)]
    for m in modes[1:]:
        shown[f"{modes[0]}→{m}"] = [f"{fmt(v)} ± {fmt(e)}" for v, e in
                                    zip(table[f"{m}_minus_{modes[0]}"], table[f"{m}_minus_{modes[0]}_se"],
                                        strict=True)]
    import pandas as pd

    print(pd.DataFrame(shown, index=table.index).to_string())
    print(f"\nwrote {args.out}/compare.csv and one folder per mode")
    return html_report(args.out) if args.report else 0


def scenarios(args=None) -> int:
    from ..config import list_scenarios

    rows = list_scenarios()
    w = max(len(n) for n, _ in rows)
    print("packaged scenarios (perpjax simulate [CONFIG] --scenario NAME):")
    for name, desc in rows:
        print(f"  {name:<{w}}  {desc}")
    return 0
