"""``perpjax calibrate``: maintenance ladders tuned by gradient (config section ``calibration``)."""

from __future__ import annotations

import sys
from pathlib import Path

from .common import add_config_args, load


def register(sub) -> None:
    cb = sub.add_parser("calibrate", help="tune the maintenance ladders by gradient (config section calibration)")
    add_config_args(cb, progress_help="no per-iteration lines")
    cb.add_argument("--out", default="perpjax-calibration", help="output directory")
    cb.add_argument("--resume", action="store_true", help="continue from DIR/calibration_checkpoint.npz")
    cb.add_argument("--report", action="store_true", help="also write OUT/report.html (see `perpjax report`)")
    cb.set_defaults(func=run_command)


def run_command(a) -> int:
    import time

    from ..calibrate import check_calibratable, ladder_space, run_calibration
    from ..config import ConfigError, build_model, resolve_calibration
    from ..io import atomic_write_json, manifest
    from ..runtime import CompileClock
    from .report import html_report

    try:
        cfg = load(a)
        model, _, resolved = build_model(cfg)
        check_calibratable(model)
        ladder_space(model, resolved["asset_names"], resolve_calibration(resolved))  # raises naming the field
    except (ConfigError, ValueError) as e:
        print(f"perpjax: config error: {e}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    with CompileClock() as clock:
        res = run_calibration(cfg, out_dir=a.out, resume=a.resume, log=None if a.no_progress else print)
    m = res["metrics"]
    # last: what produced the directory (the resolved config before calibration; the tuned one is calibrated.yaml)
    atomic_write_json(Path(a.out) / "manifest.json", manifest(
        resolved, seed=resolved["seed"], wall_seconds=time.perf_counter() - t0,
        extra={"kind": "calibrate", "config_file": a.config, "book_file": a.book, "iterations": m["iterations"],
               **clock.record()}))
    print(res["ladder"].to_string(index=False, float_format=lambda x: f"{x:,.6g}"))
    print(metrics_table(m))
    print(f"\nwrote {a.out}/ladder.csv, ladder_before.csv, history.csv, metrics.json, calibrated.yaml, *.png, "
          "manifest.json")
    return html_report(a.out, sample_paths=0) if a.report else 0


def metrics_table(m: dict) -> str:
    import pandas as pd

    t = pd.DataFrame({"before": m["before"], "after": m["after"]})
    text = (f"\nhard engine on {m['eval_paths']:,} fresh paths (seed {m['eval_seed']}):\n"
            + t.to_string(float_format=lambda x: f"{x:,.6g}"))
    c = m.get("constraint")
    if c:
        text += (f"\nconstraint P(insurance-fund loss > {c['exceed_budget_usd']:,.0f} USD) <= {c['limit']:.4g}: "
                 f"before {c['before']:.4g}, after {c['after']:.4g} ({'met' if c['met_after'] else 'NOT met'})")
    return text
