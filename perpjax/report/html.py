"""The risk committee's report: one self-contained HTML file (inline CSS, figures as base64 PNG, no
network) from a run, ``--compare-modes`` or backtest directory.

Every number carries its unit; ``a ± b`` is a value and one Monte Carlo standard error. Sections appear
when their inputs do: the tail histograms need the per-path Parquet files, the cascade section the
``cascade_*`` keys of summary.json, and so on.
"""

from __future__ import annotations

import base64
import datetime
import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

from . import figures
from .load import Run, load

LEVELS = (("95", "95 %"), ("99", "99 %"), ("99_9", "99.9 %"))
MAX_UNITS = 40  # margin units drawn and tabulated (the most likely to be liquidated); all are in accounts.csv

# units of per-unit / per-tier columns, by name (exact first, then pattern)
_COLUMN_UNITS = {
    "units": "count", "initial_equity": "USD", "mean_hours_to_liquidation": "hours", "tier": "", "unit": "",
    "account": "", "mode": "", "mark_lag_artefact_share": "share of liquidations",
}


def column_unit(name: str) -> str:
    """The unit of an accounts.csv / tiers.csv column or a summary / compare.csv metric, from its name."""
    base = name.replace("_mean_per_unit", "").replace("_sum_over_units", "")
    if name in _COLUMN_UNITS:
        return _COLUMN_UNITS[name]
    if base in _COLUMN_UNITS:
        return _COLUMN_UNITS[base]
    if base.startswith("p_"):
        return "probability"
    if (base.endswith(("_events", "_liquidations", "_events_mean")) or base.startswith("n_") or "rounds" in base
            or "episodes" in base):
        return "count"
    if base.endswith("_share"):
        return "share"
    if "amplification" in base:
        return "ratio"
    if "hours" in base:
        return "hours"
    if any(w in base for w in ("loss", "debt", "fee", "funding", "slippage", "notional", "cost", "charge", "equity",
                               "pnl", "usd", "adl", "drawdown", "cascade_size")):
        return "USD"
    return ""


# ------------------------------------------------------------------------------------------ formatting

def _num(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _scaled(x, k: float) -> float | None:
    """``x * k`` for a finite number ``x``, else None (formatted as n/a)."""
    v = _num(x)
    return None if v is None else v * k


def fmt(x, unit: str = "", digits: int | None = None) -> str:
    """A number for a table: USD with thousands separators, probabilities with 4 decimals."""
    v = _num(x)
    if v is None:
        return "n/a"
    if v == 0:
        v = 0.0  # no "-0"
    if digits is not None:
        return f"{v:,.{digits}f}"
    if unit == "USD":
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:,.2f}"
    if unit in ("probability", "share", "share of liquidations"):
        return f"{v:.4f}"
    if unit == "count":
        return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.3f}"
    if unit == "hours":
        return f"{v:,.2f}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.4g}"


def fmt_pm(v, se, unit: str = "") -> str:
    """``value ± SE`` (the SE in the value's format), or the value alone when there is no SE."""
    s = fmt(v, unit)
    e = _num(se)
    if e is None or _num(v) is None:
        return s
    return f"{s} <span class='pm'>± {fmt(e, unit)}</span>"


def esc(x) -> str:
    return html.escape(str(x), quote=True)


def _img(png: bytes, alt: str, width_px: int | None = None) -> str:
    b64 = base64.b64encode(png).decode()
    style = f" style='max-width:min(100%, {width_px}px)'" if width_px else ""
    return f"<figure><img alt='{esc(alt)}' src='data:image/png;base64,{b64}'{style}></figure>"


def _table(header: list, rows: list, *, cls: str = "", caption: str = "", left: int = 1) -> str:
    """rows of already-formatted HTML cells; the first ``left`` columns left-aligned (text), the rest numeric."""
    cap = f"<caption>{caption}</caption>" if caption else ""

    def a(i):
        return " class='l'" if i < left else ""

    head = "".join(f"<th{a(i)}>{h}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td{a(i)}>{c}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table class='{cls}'>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _kv(rows: list, cls: str = "kv") -> str:  # noqa: D103
    """(label, value, unit) rows as a two/three-column table."""
    body = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td><td class='unit'>{esc(u)}</td></tr>" for k, v, u in rows)
    return f"<table class='{cls}'><tbody>{body}</tbody></table>"


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
.card .pm { font-size: 12.5px; }
.card .u { font-size: 11.5px; color: var(--muted); }
.card.warn { border-left-color: #b8322a; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 12.5px; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: 4px 0; color: var(--ink); }
th, td { padding: 4px 7px; border-bottom: 1px solid var(--line); vertical-align: top; }
thead th { background: var(--band); text-align: right; font-weight: 600; border-bottom: 2px solid var(--line);
           vertical-align: bottom; }
th.l, td.l { text-align: left; }
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
table.stack td .pm { display: block; font-size: 11.5px; }
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

# sets document.title to "ok N" once every image has loaded (N images), else "FAIL k/N"; errors -> "error: ..."
SCRIPT = """
window.addEventListener('error', function (e) { document.title = 'error: ' + (e.message || 'resource'); }, true);
window.addEventListener('load', function () {
  if (document.title.indexOf('error') === 0) return;
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.title = (ok === imgs.length ? 'ok ' + ok : 'FAIL ' + ok + '/' + imgs.length);
});
"""


# --------------------------------------------------------------------------------------------- header

def _header(run: Run, title: str) -> str:
    m, s = run.manifest, run.summary
    dev = m.get("device") or {}
    device = f"{dev.get('platform', '?')} ({dev.get('kind', '?')}, {dev.get('count', '?')} device(s))" if dev else "n/a"
    bt = m.get("backtest") if isinstance(m.get("backtest"), dict) else None
    paths = s.get("paths", (bt or {}).get("paths", run.config.get("paths")))
    steps = s.get("steps")
    step_s, horizon_s = s.get("step_seconds"), s.get("horizon_seconds")
    rows = [("config sha256", f"<span class='mono'>{esc(run.config_sha256 or 'n/a')}</span>", ""),
            ("model sha256", f"<span class='mono'>{esc(run.model_sha256 or 'n/a')}</span>", "config less seed, paths"),
            ("seed", esc(m.get("seed", s.get("seed", "n/a"))), ""),
            ("Monte Carlo paths", fmt(paths, "count"), "count")]
    if steps is not None:
        rows.append(("time steps", f"{fmt(steps, 'count')} × {fmt(step_s, digits=0)} s", "count × seconds"))
    if horizon_s is not None:
        rows.append(("horizon", fmt(_scaled(horizon_s, 1 / 3600), "hours"), "hours"))
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
    kind = {"run": "Monte Carlo run", "compare": "liquidation-mode comparison", "backtest": "backtest"}[run.kind]
    gen = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"<header class='top'><h1>{esc(title)}</h1><p class='sub'>{esc(kind)} · "
            f"<span class='mono'>{esc(run.dir.resolve())}</span> · report generated {gen}</p></header>"
            f"<section id='run'><h2>What was run</h2><div class='grid'><div>{_kv(left, 'kv spec')}</div>"
            f"<div>{_kv(right, 'kv spec')}</div></div><div class='grid'>{_market(run)}</div></section>")


def _market(run: Run) -> str:
    c = run.config
    if not c:
        return "<div><p class='note'>The manifest has no config.</p></div>"
    out = []
    assets = c.get("assets") or []
    if assets:
        rows = [[esc(a.get("name", "?")), fmt(a.get("price"), "USD"), fmt(_scaled(a.get("vol"), 100), digits=1),
                 fmt(a.get("depth_usd"), "USD"), fmt(_scaled(a.get("spread"), 1e4), digits=2)] for a in assets]
        dd = _num((c.get("liquidation") or {}).get("depth_distance"))
        within = f"USD within {dd * 100:g} %" if dd else "USD"
        out.append("<div>" + _table(["asset", "price<span class='u'>USD</span>", "vol<span class='u'>% per year</span>",
                                     f"depth<span class='u'>{within}</span>", "spread<span class='u'>bp</span>"],
                                    rows, caption="Market") + "</div>")
    bt = run.manifest.get("backtest")
    if run.kind == "backtest" and isinstance(bt, dict):
        units = {"every": "seconds", "horizon": "seconds", "step": "seconds", "paths": "count", "mmr": "rate"}
        rows = [(k, esc(", ".join(f"{a}={b}" for a, b in v.items()) if isinstance(v, dict) else v), units.get(k, ""))
                for k, v in bt.items()]
        out.append("<div>" + _kv(rows, "kv spec").replace("<tbody>", "<caption>Backtest</caption><tbody>", 1) +
                   "</div>")
        return "".join(out)
    liq = c.get("liquidation") or {}
    mark = c.get("mark") or {}
    fund = c.get("funding") or {}
    inn = c.get("innovations") or {}
    venue = [("liquidation mode", esc(liq.get("mode", "n/a")), ""),
             ("liquidation fee", fmt(_scaled(liq.get("fee_rate"), 100), digits=2), "% of notional"),
             ("margin check every", fmt(liq.get("check_every_seconds"), digits=0), "seconds"),
             ("auto-deleveraging", "on" if liq.get("adl") else "off", ""),
             ("fairness metrics", "on" if liq.get("fairness") else "off", ""),
             ("mark price", esc(f"{mark.get('kind', 'n/a')}" + (f", window {mark['window_seconds']:g} s"
                                                                  if _num(mark.get("window_seconds")) else "")), ""),
             ("insurance fund", fmt(c.get("insurance_fund"), "USD"), "USD")]
    if fund:
        if fund.get("enabled", True):
            f = (f"every {_num(fund.get('interval_seconds')) / 3600:g} h; interest "
                 f"{fmt(_scaled(fund.get('interest'), 1e4), digits=2)}"
                 f" bp; clamp ±{fmt(_scaled(fund.get('clamp'), 1e4), digits=1)}"
                 f" bp; cap ±{fmt(_scaled(fund.get('cap'), 1e4), digits=0)}"
                 f" bp; paid on {fund.get('price', 'mark')}") if _num(fund.get("interval_seconds")) else "on"
        else:
            f = "off"
        venue.append(("funding", esc(f), "per interval"))
    if inn:
        venue.append(("innovations", esc(inn.get("kind", "n/a") + (f", ν = {inn['nu']:g}" if _num(inn.get("nu"))
                                                                     else "")), ""))
    j = c.get("jumps") or {}
    if _num(j.get("intensity_per_year")):
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


# ----------------------------------------------------------------------------------------------- tail

def _card(label: str, value, se, unit: str, warn: bool = False, shown_unit: str | None = None) -> str:
    pm = f" <span class='pm'>± {fmt(se, unit)}</span>" if _num(se) is not None else ""
    return (f"<div class='card{' warn' if warn else ''}'><div class='k'>{esc(label)}</div>"
            f"<div class='v'>{fmt(value, unit)}{pm}</div><div class='u'>{esc(shown_unit or unit)}</div></div>")


def _tail(run: Run) -> str:
    s = run.summary
    hours = (_num(s.get("horizon_seconds")) or 0) / 3600 or None
    h = f" within {hours:g} h" if hours else ""
    cards = [_card(f"P(any liquidation{h})", s.get("p_any_liquidation"), s.get("p_any_liquidation_se"),
                   "probability"),
             _card("bad debt, mean", s.get("bad_debt_mean"), s.get("bad_debt_mean_se"), "USD",
                   shown_unit="USD per path"),
             _card("P(bad debt > 0)", s.get("p_bad_debt"), s.get("p_bad_debt_se"), "probability"),
             _card("bad debt ES 99 %", s.get("bad_debt_es_99"), s.get("bad_debt_es_99_se"), "USD"),
             _card("P(insurance fund depleted)", s.get("p_insurance_fund_depleted"),
                   s.get("p_insurance_fund_depleted_se"), "probability",
                   warn=(_num(s.get("p_insurance_fund_depleted")) or 0) > 0),
             _card("P(auto-deleveraging)", s.get("p_adl"), s.get("p_adl_se"), "probability",
                   warn=(_num(s.get("p_adl")) or 0) > 0)]
    out = ["<section id='tail'><h2>The venue's tail</h2>", "<div class='cards'>" + "".join(cards) + "</div>"]
    header = ["metric"] + [f"VaR {lab}<span class='u'>USD ± 1 SE</span>" for _, lab in LEVELS] + \
             [f"ES {lab}<span class='u'>USD ± 1 SE</span>" for _, lab in LEVELS]
    rows = []
    for key, label in (("bad_debt", "bad debt"), ("trader_loss", "trader loss"),
                       ("insurance_fund_drawdown", "insurance-fund drawdown")):
        if not any(f"{key}_var_{lv}" in s for lv, _ in LEVELS):
            continue
        rows.append([esc(label)] + [fmt_pm(s.get(f"{key}_{kind}_{lv}"), s.get(f"{key}_{kind}_{lv}_se"), "USD")
                                    for kind in ("var", "es") for lv, _ in LEVELS])
    if rows:
        cap = "Value-at-risk and expected shortfall over paths (USD per path over the horizon)"
        out.append("<div class='wide'>" + _table(header, rows, cls="stack", caption=cap) + "</div>")
    other = []

    def add(label, key, unit, se_key=None):
        if key in s:
            other.append((label, fmt_pm(s[key], s.get(se_key) if se_key else None, unit), unit))

    add("liquidation events per path, mean", "liquidation_events_mean", "count")
    add("liquidated notional, mean", "liquidated_notional_mean", "USD")
    for q, lab in (("50", "p50"), ("90", "p90"), ("99", "p99"), ("99_9", "p99.9")):
        add(f"liquidated notional {lab} (liquidations-at-risk)", f"liquidated_notional_p{q}", "USD")
    add("trader loss, mean", "trader_loss_mean", "USD")
    add("liquidation fees, mean", "fees_mean", "USD")
    add("slippage paid, mean", "slippage_mean", "USD")
    add("funding paid by the book, mean", "funding_paid_mean", "USD")
    add("insurance fund at start", "insurance_fund", "USD")
    add("ADL charges, mean", "adl_mean", "USD")
    add("ADL charges p99", "adl_p99", "USD")
    add("P(uncovered bad debt)", "p_uncovered_bad_debt", "probability")
    add("uncovered bad debt, mean", "uncovered_bad_debt_mean", "USD")
    if (run.config.get("liquidation") or {}).get("fairness") or _num(s.get("over_liquidated_notional_mean")):
        add("over-liquidated notional, mean", "over_liquidated_notional_mean", "USD")
        add("excess liquidation cost, mean", "excess_liquidation_cost_mean", "USD")
        add("mark-lag artefact share", "mark_lag_artefact_share", "share of liquidations")
    for key, label, unit in (("backstop_pnl_mean", "backstop vault PnL, mean", "USD"),
                             ("p_backstop_loss", "P(backstop loss)", "probability"),
                             ("circuit_breaker_fires_mean", "circuit-breaker fires per path, mean", "count"),
                             ("throttled_steps_mean", "throttled steps per path, mean", "count"),
                             ("guardrail_initial_margin_cuts", "initial-margin cuts at entry", "count"),
                             ("guardrail_open_interest_cuts", "open-interest cuts at entry", "count"),
                             ("stress_time_share", "time in stress regime", "share")):
        if _num(s.get(key)):
            add(label, key, unit)
    if other:
        half = (len(other) + 1) // 2
        out.append(f"<div class='grid'><div>{_kv(other[:half])}</div><div>{_kv(other[half:])}</div></div>")
    out.append(_tail_figures(run))
    out.append("</section>")
    return "".join(out)


def _tail_figures(run: Run) -> str:
    p, s = run.paths, run.summary
    if p is None or not len(p):
        return ("<p class='note'>Per-path distributions: no per-path Parquet files in this run directory "
                "(<code>RUN/paths/</code>), so only the summary statistics above are shown.</p>")
    figs = []

    def marks(key):
        return {"VaR 99 %": _num(s.get(f"{key}_var_99")), "ES 99 %": _num(s.get(f"{key}_es_99")),
                "VaR 99.9 %": _num(s.get(f"{key}_var_99_9"))}

    if "path_bad_debt" in p:
        share = float((p["path_bad_debt"] > 0).mean())
        figs.append(_img(figures.tail_histogram(p["path_bad_debt"], title=f"Bad debt per path ({share:.2%} of paths "
                                                "> 0)", xlabel="bad debt (USD)", marks=marks("bad_debt"), log_y=True),
                         "bad debt histogram", 640))
    if "path_trader_loss" in p:
        figs.append(_img(figures.tail_histogram(p["path_trader_loss"], title="Trader loss per path",
                                                xlabel="trader loss (USD; negative = traders gain)",
                                                marks=marks("trader_loss")), "trader loss histogram", 640))
    if "path_fund_min" in p:
        dd = -np.minimum(p["path_fund_min"].to_numpy(float), 0.0)
        figs.append(_img(figures.tail_histogram(dd, title="Insurance-fund drawdown per path",
                                                xlabel="largest drawdown of the fund (USD)",
                                                marks=marks("insurance_fund_drawdown"), log_y=True),
                         "insurance fund drawdown histogram", 640))
    if "path_liq_notional" in p:
        figs.append(_img(figures.tail_histogram(p["path_liq_notional"], title="Liquidated notional per path",
                                                xlabel="liquidated notional (USD)",
                                                marks={"p99": _num(s.get("liquidated_notional_p99")),
                                                       "p99.9": _num(s.get("liquidated_notional_p99_9"))}),
                         "liquidated notional histogram", 640))
    if not figs:
        return ""
    return (f"<h3>Distributions over {len(p):,} paths</h3><div class='grid'>{''.join(figs)}</div>"
            "<p class='note'>Vertical lines: the VaR and ES of summary.json (the same numbers as the table). "
            "Log-scale counts where most paths are at zero.</p>")


# ----------------------------------------------------------------------------------------------- book

_ACCOUNT_COLS = ["unit", "mode", "tier", "initial_equity", "p_liquidation", "mean_hours_to_liquidation",
                 "expected_loss", "expected_bad_debt",
                 "expected_over_liquidated_notional", "expected_excess_cost", "mark_lag_artefact_share", "p_adl",
                 "expected_adl_charge", "p_starts_cascade"]

_LABELS = {"p_liquidation": "P(liquidation)", "mean_hours_to_liquidation": "time to liquidation",
           "initial_equity": "initial equity", "expected_loss": "E[loss]", "expected_bad_debt": "E[bad debt]",
           "expected_fee": "E[fee]", "expected_slippage": "E[slippage]",
           "expected_over_liquidated_notional": "E[over-liquidated notional]",
           "p_liquidation_lo95": "P(liquidation) lo95", "p_liquidation_hi95": "P(liquidation) hi95",
           "expected_excess_cost": "E[excess cost]", "mark_lag_artefact_share": "mark-lag artefact share",
           "p_adl": "P(ADL)", "expected_adl_charge": "E[ADL charge]", "p_starts_cascade": "P(starts cascade)",
           "expected_liquidation_events": "E[liquidation events]", "expected_funding_paid": "E[funding paid]",
           "units": "units"}


def _label(col: str) -> str:
    suffix = ""
    base = col
    if col.endswith("_mean_per_unit"):
        base, suffix = col[: -len("_mean_per_unit")], " (mean per unit)"
    elif col.endswith("_sum_over_units"):
        base, suffix = col[: -len("_sum_over_units")], " (sum over units)"
    return _LABELS.get(base, base.replace("_", " ")) + suffix


def _th(col: str) -> str:
    u = column_unit(col)
    label = _label(col)
    for q in (" (mean per unit)", " (sum over units)"):
        if label.endswith(q):
            label, u = label[: -len(q)], (u + ", " if u else "") + q.strip(" ()")
    return f"{esc(label)}" + (f"<span class='u'>{esc(u)}</span>" if u else "")


def _book(run: Run) -> str:
    acc, tiers = run.accounts, run.tiers
    if acc is None and tiers is None:
        return ""
    out = ["<section id='book'><h2>The book</h2>"]
    hours = (_num(run.summary.get("horizon_seconds")) or 0) / 3600 or None
    if acc is not None and "p_liquidation" in acc:
        a = acc.sort_values("p_liquidation", ascending=False, kind="stable")
        shown = a.head(MAX_UNITS)
        if len(a) > MAX_UNITS:
            out.append(f"<p class='note'>{len(a):,} margin units: the {MAX_UNITS} most likely to be liquidated are "
                       "shown; all are in accounts.csv.</p>")
        out.append(_img(figures.liquidation_dots(shown, hours), "liquidation probability per margin unit", 820))
        cols = [c for c in _ACCOUNT_COLS if c in a.columns]
        a = shown
        cols = [c for c in cols if not (pd.api.types.is_numeric_dtype(a[c]) and
                                        a[c].fillna(0).eq(0).all() and c != "p_liquidation")]
        rows = []
        for _, r in a.iterrows():
            row = []
            for c in cols:
                if c == "p_liquidation" and {"p_liquidation_lo95", "p_liquidation_hi95"} <= set(a.columns):
                    lo, hi = fmt(r["p_liquidation_lo95"], "probability"), fmt(r["p_liquidation_hi95"], "probability")
                    row.append(f"{fmt(r[c], 'probability')} <span class='pm'>[{lo}, {hi}]</span>")
                elif c in ("expected_loss", "expected_bad_debt") and f"{c}_se" in a.columns:
                    row.append(fmt_pm(r[c], r[f"{c}_se"], "USD"))
                elif pd.api.types.is_numeric_dtype(a[c]):
                    row.append(fmt(r[c], column_unit(c)))
                else:
                    row.append(esc(r[c]))
            rows.append(row)
        head = [_th(c) if c != "p_liquidation" else "P(liquidation)<span class='u'>probability [95 % Wilson]</span>"
                for c in cols]
        cap = "Per margin unit (sorted by P(liquidation); time to liquidation: mean over paths that liquidate)"
        out.append("<div class='wide'>" + _table(head, rows, left=3, caption=cap) + "</div>")
    if tiers is not None and len(tiers):
        cols = [c for c in tiers.columns if not c.endswith("_sum_over_units")
                and c != "expected_liquidation_events_mean_per_unit"]
        cols = [c for c in cols if not (pd.api.types.is_numeric_dtype(tiers[c]) and tiers[c].fillna(0).eq(0).all())]
        rows = [[fmt(r[c], column_unit(c)) if pd.api.types.is_numeric_dtype(tiers[c]) else esc(r[c]) for c in cols]
                for _, r in tiers.iterrows()]
        out.append("<div class='wide'>" + _table([_th(c) for c in cols], rows, caption="Per maintenance tier "
                                                 "(each unit counted in the tier of its largest position; columns that "
                                                 "are zero for every tier are left out)") + "</div>")
    out.append("</section>")
    return "".join(out)


# -------------------------------------------------------------------------------------------- cascades

def has_cascades(s: dict) -> bool:
    return any(k.startswith("cascade_") for k in s)


def _cascades(run: Run) -> str:
    s = run.summary
    if not has_cascades(s):
        return ""
    out = ["<section id='cascades'><h2>Liquidation cascades</h2>"]
    kv = []
    for key, label, unit in (("cascade_amplification", "amplification of mean drawdown",
                              "ratio (with ÷ without feedback)"),
                             ("cascade_amplification_p99", "amplification of p99 drawdown", "ratio"),
                             ("cascade_rounds_mean", "liquidation rounds per episode chain, mean", "count"),
                             ("cascade_rounds_p99", "rounds p99", "count"),
                             ("cascade_rounds_max", "rounds, max", "count"),
                             ("cascade_episodes_mean", "episodes per path, mean", "count"),
                             ("cascade_size_p50", "largest episode per path, p50", "USD"),
                             ("cascade_size_p99", "largest episode per path, p99", "USD")):
        if key in s:
            kv.append((label, fmt(s[key], unit if unit in ("USD", "count") else "", 4 if unit.startswith("ratio")
                                  else None), unit))
    assets = [k[len("cascade_amplification_"):] for k in s if k.startswith("cascade_amplification_")
              and not k.startswith("cascade_amplification_p99")]
    rows = [[esc(a), fmt(_scaled(s.get(f"drawdown_mean_{a}"), 100), digits=2),
             fmt(_scaled(s.get(f"drawdown_no_feedback_mean_{a}"), 100), digits=2),
             fmt(s.get(f"cascade_amplification_{a}"), digits=4), fmt(s.get(f"cascade_amplification_p99_{a}"), digits=4)]
            for a in assets]
    left = _kv(kv)
    if rows:
        left += _table(["asset", "mean drawdown<span class='u'>% with feedback</span>",
                        "mean drawdown<span class='u'>% without</span>", "amplification<span class='u'>ratio</span>",
                        "amplification p99<span class='u'>ratio</span>"], rows, caption="Per asset")
    figs = []
    if isinstance(s.get("cascade_size_distribution"), list) and s["cascade_size_distribution"]:
        figs.append(_img(figures.cascade_sizes(s["cascade_size_distribution"], _num(s.get("paths"))),
                         "cascade episode sizes", 640))
    if run.tiers is not None and "p_starts_cascade_mean_per_unit" in run.tiers:
        t = run.tiers.set_index("tier")["p_starts_cascade_mean_per_unit"]
        figs.append(_img(figures.tier_bars(t, title="Which tiers start cascades",
                                           xlabel="P(a unit of the tier liquidates in an episode's first round) "
                                                  "(probability)"),
                         "tiers starting cascades", 640))
    p = run.paths
    if p is not None and "path_cascade_rounds" in p:
        figs.append(_img(figures.integer_histogram(p["path_cascade_rounds"], title="Liquidation rounds per path",
                                                   xlabel="rounds chained within the cascade window (count)"),
                         "cascade rounds", 640))
    if p is not None and assets:
        a = max(assets, key=lambda x: _num(s.get(f"cascade_amplification_{x}")) or 0)
        if f"path_drawdown__{a}" in p and f"path_drawdown_exog__{a}" in p:
            figs.append(_img(figures.drawdown_scatter(p[f"path_drawdown__{a}"].to_numpy(float),
                                                      p[f"path_drawdown_exog__{a}"].to_numpy(float), a),
                             "drawdown with and without feedback", 640))
    out.append(f"<div class='grid'><div>{left}</div><div>{''.join(figs[:1])}</div></div>")
    if len(figs) > 1:
        out.append(f"<div class='grid'>{''.join(figs[1:])}</div>")
    out.append("</section>")
    return "".join(out)


# -------------------------------------------------------------------------------------------- compare

def _compare(run: Run) -> str:
    t, modes = run.compare, list(run.modes)
    first = modes[0]
    head = ["metric", "unit"] + [f"{esc(m)}<span class='u'>± 1 SE</span>" for m in modes] + \
           [f"{esc(m)} − {esc(first)}<span class='u'>paired, ± 1 SE</span>" for m in modes[1:]]
    rows = []
    for key, r in t.iterrows():
        u = column_unit(str(key))
        row = [esc(str(key).replace("_", " ")), esc(u)]
        row += [fmt_pm(r.get(m), r.get(f"{m}_se"), u) for m in modes]
        for m in modes[1:]:
            d, e = _num(r.get(f"{m}_minus_{first}")), _num(r.get(f"{m}_minus_{first}_se"))
            cell = fmt_pm(d, e, u)
            if d is not None and e is not None and e > 0 and abs(d) > 2 * e:
                cell = f"<b>{cell}</b>"
            row.append(cell)
        rows.append(row)
    out = ["<section id='compare'><h2>Liquidation modes side by side</h2>",
           f"<p class='note'>The same {fmt(run.summary.get('paths'), 'count')} random paths (common random numbers) "
           f"under each liquidation mode; differences are paired per path. Bold: the difference exceeds two "
           f"standard errors.</p>",
           "<div class='wide'>" + _table(head, rows, left=2) + "</div>"]
    groups = [("bad_debt_mean", "bad debt mean"), ("bad_debt_es_99", "bad debt ES 99 %"),
              ("excess_liquidation_cost_mean", "excess cost mean"), ("slippage_mean", "slippage mean")]
    bars = [(lab, {m: (_num(t.loc[k, m]), _num(t.loc[k, f"{m}_se"]) if f"{m}_se" in t.columns else None)
                   for m in modes}) for k, lab in groups if k in t.index]
    figs = []
    if bars:
        figs.append(_img(figures.compare_bars(bars, modes, title="Venue cost by liquidation mode",
                                              ylabel="USD per path (± 1 SE)", usd=True), "mode comparison", 820))
    accs = {m: r.accounts for m, r in run.modes.items() if r.accounts is not None and "p_liquidation" in r.accounts}
    if accs:
        units = accs[first]["unit"].tolist() if "unit" in accs[first] else []
        if units:
            cols = [("p_liquidation", "P(liquidation)", "probability"), ("expected_loss", "E[loss]", "USD")]
            cols = [c for c in cols if all(c[0] in a for a in accs.values())]
            head2 = ["unit"] + [f"{esc(m)}<span class='u'>{lab}, {u}</span>" for c, lab, u in cols for m in accs]
            rows2 = []
            for i, name in enumerate(units[:MAX_UNITS]):
                rows2.append([esc(name)] + [fmt(a[c].iloc[i], u) if i < len(a) else "n/a"
                                            for c, _, u in cols for a in accs.values()])
            figs.append("<div class='wide'>" + _table(head2, rows2, caption="Per unit and mode") + "</div>")
    out.append(f"<div class='grid'>{''.join(figs)}</div>")
    out.append("</section>")
    return "".join(out)


# -------------------------------------------------------------------------------------------- backtest

def _backtest(run: Run) -> str:
    s, b = run.summary, run.backtest
    out = ["<section id='backtest'><h2>Backtest: forecasts against what happened</h2>"]
    kv = [("origins (forecast dates)", fmt(s.get("origins"), "count"), "count"),
          ("liquidation cases", fmt(s.get("cases"), "count"), "count"),
          ("cases not rejected at 5 %", fmt(s.get("cases_not_rejected_5pct"), "count"), "count"),
          ("pooled expected liquidations", fmt(s.get("pooled_expected_liquidations"), digits=1), "count"),
          ("pooled realised liquidations", fmt(s.get("pooled_realised_liquidations"), "count"), "count"),
          ("pooled Brier score", fmt(s.get("pooled_brier"), digits=4), "probability²"),
          ("VaR series", fmt(s.get("var_series"), "count"), "count")]
    zones = s.get("var_zones") or {}
    for z in ("green", "yellow", "red"):
        kv.append((f"VaR series in the {z} zone", fmt(zones.get(z, 0), "count"), "count"))
    rel = s.get("reliability")
    fig = _img(figures.reliability(rel), "reliability diagram", 560) if isinstance(rel, list) and rel else ""
    out.append(f"<div class='grid'><div>{_kv(kv)}</div><div>{fig}</div></div>")
    lt = b.get("liquidation_cases")
    if lt is not None and len(lt):
        rows = []
        for _, r in lt.iterrows():
            rej = bool(r.get("rejected_5pct")) if "rejected_5pct" in lt else (_num(r.get("coverage_p")) or 1) < 0.05
            rows.append([esc(r.get("case", "")), esc(r.get("asset", "")), esc(r.get("side", "")),
                         fmt(r.get("leverage"), digits=0), fmt(r.get("windows"), "count"),
                         fmt(r.get("mean_predicted"), "probability"), fmt(r.get("expected"), digits=2),
                         fmt(r.get("realised"), "count"), fmt(r.get("coverage_p"), digits=3),
                         fmt(r.get("independence_p"), digits=3), fmt(r.get("brier"), digits=4),
                         f"<span class='zone-{'red' if rej else 'green'}'>"
                         f"&nbsp;{'rejected' if rej else 'ok'}&nbsp;</span>"])
        out.append("<div class='wide'>" + _table(
            ["case", "asset", "side", "leverage<span class='u'>×</span>", "windows<span class='u'>count</span>",
             "mean predicted<span class='u'>probability</span>", "expected<span class='u'>count</span>",
             "realised<span class='u'>count</span>", "coverage p<span class='u'>p-value</span>",
             "independence p<span class='u'>p-value</span>", "Brier<span class='u'>probability²</span>",
             "at 5 %"], rows, left=3, caption="Liquidation forecasts per case (exact Poisson-binomial coverage test)") +
                   "</div>")
    vt = b.get("var_series")
    if vt is not None and len(vt):
        rows = []
        for _, r in vt.iterrows():
            z = str(r.get("zone", ""))
            lvl = _num(r.get("level"))
            rows.append([esc(r.get("asset", "")), esc(r.get("side", "")),
                         f"{lvl * 100:g} %" if lvl is not None else "n/a", fmt(r.get("windows"), "count"),
                         fmt(r.get("expected"), digits=2), fmt(r.get("exceptions"), "count"),
                         fmt(r.get("kupiec_p"), digits=3), fmt(r.get("independence_p"), digits=3),
                         fmt(_scaled(r.get("mean_var"), 100), digits=2),
                         fmt(_scaled(r.get("mean_es"), 100), digits=2),
                         f"<span class='zone-{esc(z)}'>&nbsp;{esc(z)}&nbsp;</span>"])
        out.append("<div class='wide'>" + _table(
            ["asset", "side", "VaR level", "windows<span class='u'>count</span>",
             "expected<span class='u'>count</span>",
             "exceptions<span class='u'>count</span>", "Kupiec p<span class='u'>p-value</span>",
             "independence p<span class='u'>p-value</span>", "mean VaR<span class='u'>% of notional</span>",
             "mean ES<span class='u'>% of notional</span>", "traffic light"], rows,
            left=2, caption="VaR series: Basel traffic light") + "</div>")
    out.append("</section>")
    return "".join(out)


# ------------------------------------------------------------------------------------------------ page

def render(run: Run | str | Path, *, title: str | None = None) -> str:
    """The report of ``run`` (a :class:`Run` or a directory) as one self-contained HTML string."""
    if not isinstance(run, Run):
        run = load(run)
    title = title or "perpjax risk report"
    body = [_header(run, title)]
    if run.kind == "run":
        body += [_tail(run), _book(run), _cascades(run)]
    elif run.kind == "compare":
        body.append(_compare(run))
        first = next(iter(run.modes.values()))
        body += [f"<p class='note'>Below: the first mode, <b>{esc(next(iter(run.modes)))}</b>, in detail.</p>",
                 _tail(first), _book(first), _cascades(first)]
    else:
        body.append(_backtest(run))
    notes = "".join(f"<li>{esc(n)}</li>" for n in run.warnings)
    footer = ("<footer><p>± is one Monte Carlo standard error. "
              "VaR / ES: the quantile / expected shortfall over paths at the stated level. Probabilities are per "
              "horizon. [lo, hi]: 95 % Wilson interval. USD amounts are per path over the horizon unless stated."
              f"</p>{'<ul>' + notes + '</ul>' if notes else ''}</footer>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{esc(title)}</title><style>{CSS}</style><script>{SCRIPT}</script></head>"
            f"<body><main>{''.join(body)}{footer}</main></body></html>")


def write_report(run_dir, out=None, *, title: str | None = None) -> Path:
    """Render the report of ``run_dir`` and write it atomically to ``out`` (default ``run_dir/report.html``).
    Raises :class:`~perpjax.report.load.NotARunError` before writing anything if ``run_dir`` is not a run."""
    from ..io import atomic_write_text

    run = load(run_dir)
    text = render(run, title=title)
    path = Path(out) if out is not None else Path(run_dir) / "report.html"
    atomic_write_text(path, text)
    return path
