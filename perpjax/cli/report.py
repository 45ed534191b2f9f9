"""``perpjax report``: the risk committee's HTML report of a run, ``--compare-modes``, backtest, calibration,
sweep or sensitivities directory."""

from __future__ import annotations

import sys


def register(sub) -> None:
    r = sub.add_parser("report", help="write one self-contained HTML report (tail, book, cascades, sample paths, "
                                      "comparisons, backtest, calibration, sweep, sensitivities) of an output "
                                      "directory")
    r.add_argument("run_dir", metavar="RUN_DIR", help="a perpjax simulate / --compare-modes / backtest / calibrate /"
                   " sweep / sensitivities output directory")
    r.add_argument("--out", metavar="FILE.html", help="where to write the report (default: RUN_DIR/report.html)")
    r.add_argument("--title", help="the report's title (default: perpjax risk report)")
    r.add_argument("--sample-paths", type=int, default=4, metavar="N",
                   help="paths of a run to re-simulate and draw step by step (default 4; 0: none)")
    r.set_defaults(func=run_command)


def run_command(a) -> int:
    if not 0 <= a.sample_paths <= 16:
        print(f"perpjax: --sample-paths: must be in [0, 16] (got {a.sample_paths})", file=sys.stderr)
        return 2
    return html_report(a.run_dir, a.out, title=a.title, sample_paths=a.sample_paths)


def html_report(run_dir, out=None, *, title=None, sample_paths: int = 4) -> int:
    """Write the HTML report of ``run_dir`` (``report.write_report``) and say where; exit code 2 when
    ``run_dir`` is not an output directory (nothing written)."""
    from ..report import NotARunError, write_report

    try:
        path = write_report(run_dir, out, title=title, sample_paths=sample_paths)
    except NotARunError as e:
        print(f"perpjax: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
