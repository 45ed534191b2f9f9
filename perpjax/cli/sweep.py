"""``perpjax sweep``: parameter sets (a grid or a table) on common random numbers, each group of sets with the
same compiled structure as one batched kernel; a tidy table, plots and a manifest in the out dir."""

from __future__ import annotations

import sys

from .common import add_config_args, load

HEADLINE = ("p_any_liquidation", "bad_debt_mean", "bad_debt_es_99", "p_insurance_fund_depleted")


def register(sub) -> None:
    s = sub.add_parser("sweep", help="run parameter sets on the same random paths in one compiled kernel and "
                                     "tabulate every venue metric with standard errors")
    add_config_args(s, config_help="YAML config: the base every set changes (default: the packaged default config)")
    s.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="a dotted config key (as --set takes it) and its values; several --grid: their Cartesian "
                        "product (set 0 = the first value of each)")
    s.add_argument("--table", metavar="FILE.csv", help="parameter sets as rows of a CSV whose header names "
                                                       "dotted config keys (instead of --grid)")
    s.add_argument("--paths", type=int, help="Monte Carlo paths of every set")
    s.add_argument("--seed", type=int, help="random seed (the same for every set: common random numbers)")
    s.add_argument("--out", default="perpjax-sweep", help="output directory (default: perpjax-sweep)")
    s.add_argument("--report", action="store_true", help="also write OUT/report.html (`perpjax report`)")
    s.set_defaults(func=run_command)


def prepare(args, warn=None):
    """(base config, validated sets) from the arguments; a ``ConfigError`` before any compute."""
    from ..sweep import build_sets, parse_grid, read_table, set_texts

    base = load(args)
    if args.paths is not None:
        base["paths"] = args.paths
    if args.seed is not None:
        base["seed"] = args.seed
    rows = set_texts(parse_grid(args.grid), read_table(args.table) if args.table else None)
    return base, build_sets(base, rows, warn=warn)


def _warn(msg):
    print(f"perpjax: {msg}", file=sys.stderr)


def run_command(args) -> int:
    from ..config import ConfigError

    try:
        base, sets = prepare(args, _warn)
    except ConfigError as e:
        print(f"perpjax: config error: {e}", file=sys.stderr)
        return 2
    from tqdm import tqdm

    from ..sweep import run_sweep

    total = sets[0].resolved["paths"] * len(sets)
    bar = None if args.no_progress else tqdm(total=total, unit="path", desc=f"sweep ({len(sets)} sets)",
                                             file=sys.stderr)
    try:
        sw = run_sweep(base, sets, out=args.out, progress=None if bar is None else bar.update)
    except ConfigError as e:  # out dir refused
        print(f"perpjax: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"perpjax: cannot write the results to {e.filename or args.out}: {e.strerror or e}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    print(describe(sw))
    print(f"\nwrote {args.out}/sweep.csv, sweep.parquet, sweep_<metric>.png ({len(sw.table.metric.unique())} "
          "metrics) and manifest.json")
    if args.report:
        from .report import html_report

        try:
            return html_report(args.out)
        except Exception as e:  # noqa: BLE001 - the results are written; the report is extra
            print(f"perpjax: report: not written ({type(e).__name__}: {e})", file=sys.stderr)
            return 1
    return 0


def describe(sw) -> str:
    """Groups, compiles and a few headline metrics per set, as printed."""
    from .simulate import fmt

    m = sw.manifest
    lines = [f"{len(sw.sets)} parameter sets x {m['paths']:,} paths (seed {m['seed']}, the same paths in every set) "
             f"in {len(sw.groups)} compiled group(s), {m['compiles']} compile(s), {m['wall_seconds']:.1f} s"]
    if m["structural_keys"]:
        lines.append(f"  keys that change the compiled program (separate groups): {', '.join(m['structural_keys'])}")
    for g in sw.groups:
        lines.append(f"  group sets {g['sets']}: batched leaves {g['batched_leaves'] or '-'}, "
                     f"{g['chunk_paths_per_set']:,} paths per set per chunk")
    import pandas as pd

    lines += ["", "± = one Monte Carlo standard error; Δ set 0 = this set minus set 0 on common random numbers "
              f"(every metric: {len(sw.table.metric.unique())} in sweep.csv)"]
    index = [f"{s.index}: {s.describe()}" for s in sw.sets]
    for metric in HEADLINE:
        r = sw.table[sw.table.metric == metric]
        lines += ["", metric, pd.DataFrame({
            "value": [f"{fmt(v)} ± {fmt(e)}" for v, e in zip(r.value, r.se, strict=True)],
            "Δ set 0": [f"{fmt(v)} ± {fmt(e)}" for v, e in zip(r.diff_vs_base, r.diff_se, strict=True)]},
            index=index).to_string()]
    return "\n".join(lines)
