"""``perpjax simulate``: one run (or liquidation modes side by side) of a config, summary printed and
written to the out dir."""

from __future__ import annotations

import math
import sys

from ..metrics import MIN_TAIL_PATHS, missing_se
from ..report.format import FEW_DIFF, pm_suffix
from ..sweep.table import METRICS, diff_se, set_se
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
        txt = fmt(s[k], unit) + pm_suffix(summary, k, lambda e, unit=unit: fmt(e, unit))
        rows.append((label, txt, unit))
    w = max(len(r[0]) for r in rows)
    wv = max(len(r[1]) for r in rows)
    lines = ["venue", "-----"] + [f"  {lab:<{w}}  {txt:>{wv}}  {unit}" for lab, txt, unit in rows]
    lines.append(f"  (± = one Monte Carlo standard error; ± n/a: not estimated, fewer than {MIN_TAIL_PATHS} paths "
                 "carry it (beyond the VaR, or with / without the event); VaR/ES: quantile / expected shortfall "
                 "over paths)")
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


def _path(field):
    return lambda o: getattr(o, field)


# Compared metric -> (kind, per-path value), as ``sweep.table.METRICS`` (whose entries it reuses): kind "mean"
# (mean of the value), ("var", a) (quantile at a), ("es", a) (expected shortfall at a), None (a ratio of sums:
# no per-path value, no SE).
COMPARE = {
    "p_any_liquidation": METRICS["p_any_liquidation"],
    "liquidation_events_mean": METRICS["liquidation_events_mean"],
    "liquidated_notional_mean": METRICS["liquidated_notional_mean"],
    "liquidated_notional_p99": (("var", 0.99), METRICS["liquidated_notional_mean"][1]),
    "over_liquidated_notional_mean": ("mean", _path("path_over_notional")),
    "excess_liquidation_cost_mean": ("mean", _path("path_excess_cost")),
    "mark_lag_artefact_share": (None, None),
    "slippage_mean": ("mean", _path("path_slippage")),
    "fees_mean": ("mean", _path("path_fees")),
    "backstop_pnl_mean": ("mean", _path("path_backstop_pnl")),
    **{k: METRICS[k] for k in ("bad_debt_mean", "bad_debt_es_99", "insurance_fund_drawdown_es_99",
                               "p_insurance_fund_depleted", "p_adl", "adl_mean", "uncovered_bad_debt_mean",
                               "trader_loss_mean", "trader_loss_es_99")},
}
COMPARE_KEYS = list(COMPARE)


def compare_table(outcomes: dict, summaries: dict):
    """Rows: metrics; columns: each mode's value and SE, and each later mode's difference from the first
    with its SE on common random numbers. The SEs are the sweep's (``sweep.table``: ``set_se``, summarize's
    own where it gives one; ``diff_se``, paired per-path differences, batch VaRs), NaN where they would rest
    on fewer than ``MIN_TAIL_PATHS`` paths; NaN too for a ratio of sums (no per-path value)."""
    import pandas as pd

    modes = list(outcomes)
    first = modes[0]
    table = {}
    for key, (kind, value) in COMPARE.items():
        row = {}
        xs = {m: (value(outcomes[m]) if value is not None else None) for m in modes}
        for m in modes:
            row[m] = summaries[m].get(key)
            row[f"{m}_se"] = float("nan") if kind is None else set_se(summaries[m], key, kind, xs[m])
        for m in modes[1:]:
            a, b = row[m], row[first]
            row[f"{m}_minus_{first}"] = (a - b) if a is not None and b is not None else None
            row[f"{m}_minus_{first}_se"] = float("nan") if kind is None else diff_se(kind, xs[m], xs[first])
        table[key] = row
    return pd.DataFrame(table).T


def _few(kind, paired: bool) -> str:
    """Why an SE of ``compare_table`` is not given (``sweep.table``'s rules)."""
    if kind == "mean":
        return FEW_DIFF if paired else f"fewer than {MIN_TAIL_PATHS} paths off the most common value"
    return f"fewer than {MIN_TAIL_PATHS} paths beyond"


def _shown(v, se, kind, why: str | None) -> str:
    """``value ± SE``; ``value ± n/a (why)`` where the SE is not estimated; the value alone without an SE."""
    e = None if se is None else float(se)
    if kind is None or v is None or float(v) != float(v):
        return fmt(v)
    return f"{fmt(v)} ± {fmt(e)}" if e is not None and math.isfinite(e) else f"{fmt(v)} ± n/a ({why})"


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
          f"± = one Monte Carlo standard error (± n/a: fewer than {MIN_TAIL_PATHS} paths carry it, so it is not "
          f"estimated); '{modes[0]}→X': X minus {modes[0]} on common random numbers")
    kinds = [COMPARE[k][0] for k in table.index]
    shown = {}
    for m in modes:
        shown[m] = [_shown(v, e, kind, missing_se(summaries[m], k) or _few(kind, False))
                    for k, kind, v, e in zip(table.index, kinds, table[m], table[f"{m}_se"], strict=True)]
    for m in modes[1:]:
        shown[f"{modes[0]}→{m}"] = [_shown(v, e, kind, _few(kind, True)) for kind, v, e in
                                    zip(kinds, table[f"{m}_minus_{modes[0]}"], table[f"{m}_minus_{modes[0]}_se"],
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
