"""The risk committee's report and the reader of output directories.

``load(RUN_DIR)`` reads a simulate, ``--compare-modes``, backtest, calibrate, sweep or sensitivities
directory back as DataFrames; ``write_report(RUN_DIR)`` writes one self-contained HTML report
(``perpjax report RUN_DIR``): the page and header in ``html``, one module per section in ``sections``,
the figures in ``figures``, number formats and tables in ``format``."""

from .html import render, write_report
from .load import NotARunError, Run, load

__all__ = ["NotARunError", "Run", "load", "render", "write_report"]
