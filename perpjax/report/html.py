"""The risk committee's report: one self-contained HTML file (inline CSS, figures as base64 PNG, no
network) from a run, ``--compare-modes``, backtest, calibration, sweep or sensitivities directory.

Every number carries its unit; ``a ± b`` is a value and one Monte Carlo standard error. Sections appear
when their inputs do: the tail histograms and sample paths need the per-path Parquet files, the cascade
section the ``cascade_*`` keys of summary.json, and so on. This module holds the page (style, header,
market table); each section is a module of ``report.sections``.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from ..metrics.tails import MIN_TAIL_PATHS
from .format import column_unit, esc, fmt, kv, num, scaled, table
from .load import Run, load
from .sections import backtest, book, calibration, cascades, compare, sensitivities, sweep, tail
from .sections import sample_paths as samples
from .sections.book import MAX_UNITS

__all__ = ["CSS", "MAX_UNITS", "SCRIPT", "column_unit", "fmt", "render", "write_report"]


CSS = """
:root { --ink:#1c2430; --muted:#5b6573; --line:#d8dde4; --band:#f4f6f9; --accent:#1f5f9e; }
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", "DejaVu Sans", "Liberation Sans", Helvetica, Arial, sans-serif;
       color: var(--ink); margin: 0; background: #fff; font-size: 14px; line-height: 1.45; }
main { max-width: 1280px; margin: 0 auto; padding: 22px 26px 48px; }
header.top { border-bottom: 3px solid var(--accent); padding-bottom: 10px; margin-bottom: 18px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 30px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 8px; color: var(--accent); }
p.sub, p.note { color: var(--muted); margin: 4px 0; }
p.note { font-size: 12.5px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 460px), 1fr)); gap: 14px 28px;
        align-items: start; }
.grid > * { min-width: 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 10px; margin: 8px 0 14px; }
.card { background: var(--band); border-left: 4px solid var(--accent); padding: 8px 12px; }
.card .k { font-size: 12px; color: var(--muted); }
.card .v { font-size: 18px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .pm { display: block; font-size: 12px; }
.card .u { font-size: 11.5px; color: var(--muted); }
.card.warn { border-left-color: #b8322a; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 12.5px; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: 4px 0; color: var(--ink); }
th, td { padding: 4px 7px; border-bottom: 1px solid var(--line); vertical-align: top; }
thead th { background: var(--band); text-align: right; font-weight: 600; border-bottom: 2px solid var(--line);
           vertical-align: bottom; }
th.l, td.l { text-align: left; }
td.l { white-space: normal; }  /* text wraps at spaces (and <wbr>) rather than widen the table */
td .text { white-space: normal; text-align: left; min-width: 16em; }  /* a sentence in a numeric table */
td .words { white-space: normal; }  /* a few words in a numeric column may wrap */
td { text-align: right; white-space: nowrap; }
table.kv { width: 100%; }
table.kv th { text-align: left; font-weight: normal; color: var(--muted); background: none; padding-right: 14px;
              white-space: nowrap; width: 1%; }
table.kv td { text-align: right; font-weight: 600; white-space: normal; }
table.spec td { text-align: left; }
table.kv td.unit, td.unit { text-align: left; font-weight: normal; color: var(--muted); font-size: 12px;
                           white-space: nowrap; width: 1%; }
th .u { display: block; font-weight: normal; font-size: 11px; color: var(--muted); }
.pm { color: var(--muted); font-weight: normal; }
table.stack td .pm { display: block; font-size: 11.5px; white-space: normal; }
.mono { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12px; white-space: normal;
        word-break: break-all; }
figure { margin: 6px 0 12px; }
figure img { display: block; max-width: 100%; height: auto; }
.zone-green { background: #dff3e4; color: #1d6b36; font-weight: 600; }
.zone-yellow { background: #fff3c4; color: #7a5b00; font-weight: 600; }
.zone-red { background: #f9d9d6; color: #9a231b; font-weight: 600; }
.wide { overflow-x: auto; }
footer { margin-top: 36px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--line); padding-top: 8px; }
"""

KINDS = {"run": "Monte Carlo run", "compare": "liquidation-mode comparison", "backtest": "backtest",
         "calibrate": "ladder calibration", "sweep": "parameter sweep", "sensitivities": "risk sensitivities"}

# Leaves the page's title alone: once every image has loaded it sets the <html> element's data-images
# attribute to "ok N" (N images), else "FAIL k/N"; a resource or script error sets it to "error: ...". A
# headless browser's --dump-dom shows it (tests/test_report.py).
SCRIPT = """
window.addEventListener('error', function (e) {
  document.documentElement.setAttribute('data-images', 'error: ' + (e.message || 'resource'));
}, true);
window.addEventListener('load', function () {
  var root = document.documentElement;
  if ((root.getAttribute('data-images') || '').indexOf('error') === 0) return;
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  root.setAttribute('data-images', ok === imgs.length ? 'ok ' + ok : 'FAIL ' + ok + '/' + imgs.length);
});
"""


# --------------------------------------------------------------------------------------------- header

def _header(run: Run, title: str) -> str:
    m, s = run.manifest, run.summary
    dev = m.get("device") or {}
    device = f"{dev.get('platform', '?')} ({dev.get('kind', '?')}, {dev.get('count', '?')} device(s))" if dev else "n/a"
    bt = m.get("backtest") if isinstance(m.get("backtest"), dict) else None
    paths = s.get("paths", (bt or {}).get("paths", run.config.get("paths")))
    if run.kind in ("sweep", "sensitivities") and m.get("paths") is not None:  # run at their own path count,
        paths = m["paths"]  # not the config's (``perpjax sensitivities --paths``)
    if run.kind == "calibrate":  # the optimiser's paths (the hard-engine check's are in its section)
        paths = (run.config.get("calibration") or {}).get("paths")
    steps = s.get("steps")
    step_s, horizon_s = s.get("step_seconds"), s.get("horizon_seconds")
    rows = [("config sha256", f"<span class='mono'>{esc(run.config_sha256 or 'n/a')}</span>", ""),
            ("model sha256", f"<span class='mono'>{esc(run.model_sha256 or 'n/a')}</span>", "config less seed, paths"),
            ("seed", esc(m.get("seed", s.get("seed", "n/a"))), ""),
            ("Monte Carlo paths", fmt(paths, "count"), "count")]
    if steps is not None:
        rows.append(("time steps", f"{fmt(steps, 'count')} × {fmt(step_s, digits=0)} s", "count × seconds"))
    if horizon_s is not None:
        rows.append(("horizon", fmt(scaled(horizon_s, 1 / 3600), "hours"), "hours"))
    rows += [("perpjax version", esc(m.get("perpjax_version", "n/a")), ""),
             ("device", esc(device), ""),
             ("wall time", fmt(m.get("wall_seconds"), digits=1), "seconds"),
             ("run at (UTC)", esc(m.get("utc_time", "n/a")), ""),
             ("git commit", f"<span class='mono'>{esc(m.get('git_commit') or 'n/a')}</span>", ""),
             ("scenario", esc(m.get("scenario") or run.config.get("scenario") or "none"), "")]
    half = (len(rows) + 1) // 2
    left, right = rows[:half], rows[half:]
    if m.get("command"):
        cmd = " ".join(str(c) for c in m["command"])
        right.append(("command", f"<span class='mono'>{esc(cmd)}</span>", ""))
    kind = KINDS[run.kind]
    gen = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"<header class='top'><h1>{esc(title)}</h1><p class='sub'>{esc(kind)} · "
            f"<span class='mono'>{esc(run.dir.resolve())}</span> · report generated {gen}</p></header>"
            f"<section id='run'><h2>What was run</h2><div class='grid'><div>{kv(left, 'kv spec')}</div>"
            f"<div>{kv(right, 'kv spec')}</div></div><div class='grid'>{_market(run)}</div></section>")


def _market_caption(c: dict) -> str:
    if (c.get("innovations") or {}).get("kind") == "historical":
        return "Market (historical innovations: the simulated vol is this vol x the residual sample's own std)"
    return "Market"


def _market(run: Run) -> str:
    c = run.config
    if not c:
        return "<div><p class='note'>The manifest has no config.</p></div>"
    out = []
    assets = c.get("assets") or []
    if assets:
        rows = [[esc(a.get("name", "?")), fmt(a.get("price"), "USD"), fmt(scaled(a.get("vol"), 100), digits=1),
                 fmt(a.get("depth_usd"), "USD"), fmt(scaled(a.get("spread"), 1e4), digits=2)] for a in assets]
        dd = num((c.get("liquidation") or {}).get("depth_distance"))
        within = f"USD within {dd * 100:g} %" if dd else "USD"
        out.append("<div>" + table(["asset", "price<span class='u'>USD</span>", "vol<span class='u'>% per year</span>",
                                     f"depth<span class='u'>{within}</span>", "spread<span class='u'>bp</span>"],
                                    rows, caption=_market_caption(c)) + "</div>")
    bt = run.manifest.get("backtest")
    if run.kind == "backtest" and isinstance(bt, dict):
        units = {"every": "seconds", "horizon": "seconds", "step": "seconds", "paths": "count", "mmr": "rate"}
        rows = [(k, esc(", ".join(f"{a}={b}" for a, b in v.items()) if isinstance(v, dict) else v), units.get(k, ""))
                for k, v in bt.items()]
        out.append("<div>" + kv(rows, "kv spec").replace("<tbody>", "<caption>Backtest</caption><tbody>", 1) +
                   "</div>")
        return "".join(out)
    liq = c.get("liquidation") or {}
    mark = c.get("mark") or {}
    fund = c.get("funding") or {}
    inn = c.get("innovations") or {}
    venue = [("liquidation mode", esc(liq.get("mode", "n/a")), ""),
             ("liquidation fee", fmt(scaled(liq.get("fee_rate"), 100), digits=2), "% of notional"),
             ("margin check every", fmt(liq.get("check_every_seconds"), digits=0), "seconds"),
             ("auto-deleveraging", "on" if liq.get("adl") else "off", ""),
             ("fairness metrics", "on" if liq.get("fairness") else "off", ""),
             ("mark price", esc(f"{mark.get('kind', 'n/a')}" + (f", window {mark['window_seconds']:g} s"
                                                                  if num(mark.get("window_seconds")) else "")), ""),
             ("insurance fund", fmt(c.get("insurance_fund"), "USD"), "USD")]
    if fund:
        if fund.get("enabled", True):
            f = (f"every {num(fund.get('interval_seconds')) / 3600:g} h; interest "
                 f"{fmt(scaled(fund.get('interest'), 1e4), digits=2)}"
                 f" bp; clamp ±{fmt(scaled(fund.get('clamp'), 1e4), digits=1)}"
                 f" bp; cap ±{fmt(scaled(fund.get('cap'), 1e4), digits=0)}"
                 f" bp; paid on {fund.get('price', 'mark')}") if num(fund.get("interval_seconds")) else "on"
        else:
            f = "off"
        venue.append(("funding", esc(f), "per interval"))
    if inn:
        venue.append(("innovations", esc(inn.get("kind", "n/a") + (f", ν = {inn['nu']:g}" if num(inn.get("nu"))
                                                                     else "")), ""))
    j = c.get("jumps") or {}
    if num(j.get("intensity_per_year")):
        venue.append(("jumps", esc(f"{j['intensity_per_year']:g} per year, mean {j.get('mean', 0):g}, "
                                   f"std {j.get('std', 0):g}"), "log return"))
    if c.get("cascade"):
        cas = c["cascade"]
        venue.append(("price impact (cascade)", esc(f"{cas.get('impact', 'on')}"), ""))
    book = (c.get("book") or {}).get("accounts")
    if book:
        venue.append(("book", f"{len(book)} accounts", "count"))
    out.append("<div><table class='kv spec'><caption>Venue</caption><tbody>" +
               "".join(f"<tr><th>{esc(k)}</th><td>{v}</td><td class='unit'>{esc(u)}</td></tr>" for k, v, u in venue)
               + "</tbody></table></div>")
    return "".join(out)



# ------------------------------------------------------------------------------------------------ page

def _run_sections(run: Run, sample: int) -> list:
    return [tail.section(run), book.section(run), cascades.section(run), samples.section(run, sample)]


def render(run: Run | str | Path, *, title: str | None = None, sample_paths: int = samples.DEFAULT_COUNT) -> str:
    """The report of ``run`` (a :class:`Run` or a directory) as one self-contained HTML string;
    ``sample_paths``: how many of a run's paths to re-simulate and draw (0: none)."""
    if not isinstance(run, Run):
        run = load(run)
    title = title or "perpjax risk report"
    body = [_header(run, title)]
    if run.kind == "run":
        body += _run_sections(run, sample_paths)
    elif run.kind == "compare":
        body.append(compare.section(run))
        first = next(iter(run.modes.values()))
        body += [f"<p class='note'>Below: the first mode, <b>{esc(next(iter(run.modes)))}</b>, in detail.</p>",
                 *_run_sections(first, sample_paths)]
    else:
        body.append({"backtest": backtest, "calibrate": calibration, "sweep": sweep,
                     "sensitivities": sensitivities}[run.kind].section(run))
    notes = "".join(f"<li>{esc(n)}</li>" for n in run.warnings)
    footer = ("<footer><p>± is one Monte Carlo standard error; ± n/a (k paths beyond): the standard error rests "
              f"on fewer than {MIN_TAIL_PATHS} paths (beyond the VaR, with or without the event) and is not given. "
              "VaR / ES: the quantile / expected shortfall over paths at the stated level. Probabilities are per "
              "horizon. [lo, hi]: 95 % Wilson interval. USD amounts are per path over the horizon unless stated."
              f"</p>{'<ul>' + notes + '</ul>' if notes else ''}</footer>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{esc(title)}</title><style>{CSS}</style><script>{SCRIPT}</script></head>"
            f"<body><main>{''.join(body)}{footer}</main></body></html>")


def write_report(run_dir, out=None, *, title: str | None = None,
                 sample_paths: int = samples.DEFAULT_COUNT) -> Path:
    """Render the report of ``run_dir`` and write it atomically to ``out`` (default ``run_dir/report.html``).
    Raises :class:`~perpjax.report.load.NotARunError` before writing anything if ``run_dir`` is not a run."""
    from ..io import atomic_write_text

    run = load(run_dir)
    text = render(run, title=title, sample_paths=sample_paths)
    path = Path(out) if out is not None else Path(run_dir) / "report.html"
    atomic_write_text(path, text)
    return path
