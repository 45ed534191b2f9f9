"""``perpjax sensitivities``: d(venue metric)/d(parameter), pathwise (relaxed engine) beside the hard
engine's central finite differences on the same paths; table printed and written to the out dir."""

from __future__ import annotations

import sys

from .common import add_config_args, load
from .report import html_report

DEFAULT_PATHS = 10_000


def register(sub) -> None:
    from ..sensitivities import PARAMS, TEMPERATURE
    from ..sensitivities.pathwise import AD_MODES

    s = sub.add_parser("sensitivities", help="risk sensitivities: pathwise gradients of the venue metrics, checked "
                                             "against finite differences of the hard engine")
    add_config_args(s, progress_help="no progress messages (the stage lines on stderr)")
    s.add_argument("--wrt", metavar="P1,P2,...",
                   help=f"parameters (default vol,correlation,mmr,depth,fee; valid: {', '.join(PARAMS)})")
    s.add_argument("--paths", type=int, default=DEFAULT_PATHS,
                   help=f"Monte Carlo paths (default {DEFAULT_PATHS:,}; not the config's paths)")
    s.add_argument("--seed", type=int, help="random seed (default: the config's)")
    s.add_argument("--bump", action="append", default=[], metavar="NAME=H",
                   help="finite-difference half-width in x (log scale; correlation: shift), e.g. vol=0.02")
    s.add_argument("--temperature", type=float, default=TEMPERATURE,
                   help=f"relaxed hazard width, fraction of notional (default {TEMPERATURE:g})")
    s.add_argument("--ad", choices=AD_MODES, default=AD_MODES[0],
                   help="forward mode on the sparse relaxed engine (default; fastest for these few parameters) "
                        "or reverse mode on the dense one (one backward pass per output)")
    s.add_argument("--out", default="perpjax-sensitivities", help="output directory")
    s.add_argument("--report", action="store_true", help="also write DIR/report.html (see `perpjax report`)")
    s.set_defaults(func=run_command)


def run_command(a) -> int:
    from ..config import ConfigError
    from ..io import atomic_write_json, atomic_write_text, manifest
    from ..runtime import CompileClock
    from ..sensitivities import parse_bumps, parse_wrt, prepare, run_sensitivities
    from ..store import OutDir

    try:
        names = parse_wrt(a.wrt)
        cfg = load(a)
        setup = prepare(cfg, names, parse_bumps(a.bump, names), paths=a.paths, seed=a.seed,
                        temperature=a.temperature, ad=a.ad)
    except ConfigError as e:
        print(f"perpjax: config error: {e}", file=sys.stderr)
        return 2
    try:
        with OutDir(a.out) as d:
            for old in ("sensitivities.csv", "manifest.json", "report.html"):  # never beside new numbers
                (d.path / old).unlink(missing_ok=True)
            with CompileClock() as clock:
                table, extra = run_sensitivities(setup, progress=_quiet if a.no_progress else _say)
            atomic_write_text(d.path / "sensitivities.csv", table.to_csv(index=False))
            m = manifest(setup.resolved, seed=setup.seed, wall_seconds=extra["sensitivities_wall_seconds"],
                         extra={**extra, "config_file": a.config, "book_file": a.book, **clock.record()})
            atomic_write_json(d.path / "manifest.json", m)
    except ConfigError as e:  # the out dir refused
        print(f"perpjax: {e}", file=sys.stderr)
        return 2
    print(format_table(table, extra))
    print(f"\nwrote {a.out}/sensitivities.csv and manifest.json")
    return html_report(a.out) if a.report else 0


def _say(msg: str) -> None:
    print(msg, file=sys.stderr)


def _quiet(msg: str) -> None:
    """--no-progress: the stage lines are dropped."""


def _pm(v, e, why: str | None) -> str:
    """``v ± e``; ``v ± n/a (why)`` where the SE is not estimated (NaN); ``n/a`` without a value."""
    import math

    if not math.isfinite(v):
        return "n/a"
    if math.isfinite(e):
        return f"{v:.4g} ± {e:.2g}"
    return f"{v:.4g} ± n/a ({why})" if why else f"{v:.4g} ± n/a"


def format_table(table, extra: dict) -> str:
    """The printed table: gradient +- SE beside FD +- SE, z and the flag, per (metric, parameter). An SE that
    is not estimated is "n/a" with the reason: a finite difference moved by fewer than ``MIN_TAIL_PATHS``
    paths gives their count (``fd_paths``); a gradient over one path, "1 path"."""
    import math

    from ..metrics import MIN_TAIL_PATHS
    from ..sensitivities.estimates import moved_reason

    moved = table["fd_paths"] if "fd_paths" in table else [None] * len(table)
    few = "1 path" if extra.get("paths") == 1 else None
    shown = table.assign(pathwise=[_pm(v, e, few) for v, e in zip(table.gradient, table.gradient_se, strict=True)],
                         finite_difference=[_pm(v, e, moved_reason(k)) for v, e, k in
                                            zip(table.fd, table.fd_se, moved, strict=True)],
                         z=[f"{z:+.2f}" if math.isfinite(z) else ("n/a" if z != z else str(z)) for z in table.z],
                         flag=["" if a == "" else ("ok" if a else "DISAGREE") for a in table.agree])
    cols = ["metric", "parameter", "unit", "pathwise", "finite_difference", "z", "flag", "method"]
    c = extra["cost"]
    head = (f"sensitivities on {extra['paths']:,} paths (seed {extra['seed']}), temperature {extra['temperature']:g}, "
            f"{extra['ad_mode']} mode; ± = one standard error (± n/a: not estimated, fewer than {MIN_TAIL_PATHS} "
            f"paths move it); z = (pathwise - FD) / combined SE; flag: |z| <= {extra['z_agree']:g}")
    tail = ""
    if "ratio_vs_hard_forward" in c:
        tail = (f"\ncost: pathwise gradients for all {len(extra['parameters'])} parameters = "
                f"{c['ratio_vs_hard_forward']:.1f}x a hard-engine forward run on the same paths "
                f"(wall time per path, compilation excluded)")
    if extra.get("relaxed_refusal"):
        tail += f"\nfinite differences only: the relaxed engine refuses this model ({extra['relaxed_refusal']})"
    return head + "\n" + shown[cols].to_string(index=False) + tail
