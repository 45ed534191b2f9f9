"""``perpjax report``: the risk committee's HTML report of a run, ``--compare-modes`` or backtest directory."""

from __future__ import annotations

import sys


def register(sub) -> None:
    r = sub.add_parser("report", help="write one self-contained HTML report (tail, book, cascades, comparisons, "
                                      "backtest) of an output directory")
    r.add_argument("run_dir", metavar="RUN_DIR", help="a perpjax simulate / --compare-modes / backtest output"
                   " directory")
    r.add_argument("--out", metavar="FILE.html", help="where to write the report (default: RUN_DIR/report.html)")
    r.add_argument("--title", help="the report's title (default: perpjax risk report)")
    r.set_defaults(func=run_command)


def run_command(a) -> int:
    return html_report(a.run_dir, a.out, title=a.title)


def html_report(run_dir, out=None, *, title=None) -> int:
    """Write the HTML report of ``run_dir`` (``report.write_report``) and say where; exit code 2 when
    ``run_dir`` is not an output directory (nothing written)."""
    from ..report import NotARunError, write_report

    try:
        path = write_report(run_dir, out, title=title)
    except NotARunError as e:
        print(f"perpjax: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
