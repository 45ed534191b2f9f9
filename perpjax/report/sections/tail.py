"""The venue's tail: headline cards, VaR / ES with standard errors, other venue metrics, per-path histograms."""

from __future__ import annotations

import numpy as np

from ...metrics.tails import missing_se
from .. import figures
from ..format import card, esc, img, kv, num, pm_of, table
from ..load import Run

LEVELS = (("95", "95 %"), ("99", "99 %"), ("99_9", "99.9 %"))


def section(run: Run) -> str:
    s = run.summary
    hours = (num(s.get("horizon_seconds")) or 0) / 3600 or None
    h = f" within {hours:g} h" if hours else ""
    def headline(label, key, unit, **kw):
        return card(label, s.get(key), s.get(f"{key}_se"), unit, missing=missing_se(s, key), **kw)

    cards = [headline(f"P(any liquidation{h})", "p_any_liquidation", "probability"),
             headline("bad debt, mean", "bad_debt_mean", "USD", shown_unit="USD per path"),
             headline("P(bad debt > 0)", "p_bad_debt", "probability"),
             headline("bad debt ES 99 %", "bad_debt_es_99", "USD"),
             headline("P(insurance fund depleted)", "p_insurance_fund_depleted", "probability",
                      warn=(num(s.get("p_insurance_fund_depleted")) or 0) > 0),
             headline("P(auto-deleveraging)", "p_adl", "probability", warn=(num(s.get("p_adl")) or 0) > 0)]
    out = ["<section id='tail'><h2>The venue's tail</h2>", "<div class='cards'>" + "".join(cards) + "</div>"]
    header = ["metric"] + [f"VaR {lab}<span class='u'>USD ± 1 SE</span>" for _, lab in LEVELS] + \
             [f"ES {lab}<span class='u'>USD ± 1 SE</span>" for _, lab in LEVELS]
    rows = []
    for key, label in (("bad_debt", "bad debt"), ("trader_loss", "trader loss"),
                       ("insurance_fund_drawdown", "insurance-fund drawdown")):
        if not any(f"{key}_var_{lv}" in s for lv, _ in LEVELS):
            continue
        rows.append([esc(label)] + [pm_of(s, f"{key}_{kind}_{lv}", "USD")
                                    for kind in ("var", "es") for lv, _ in LEVELS])
    if rows:
        cap = "Value-at-risk and expected shortfall over paths (USD per path over the horizon)"
        out.append("<div class='wide'>" + table(header, rows, cls="stack", caption=cap) + "</div>")
    other = []

    def add(label, key, unit):
        if key in s:
            other.append((label, pm_of(s, key, unit), unit))

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
    if (run.config.get("liquidation") or {}).get("fairness") or num(s.get("over_liquidated_notional_mean")):
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
        if num(s.get(key)):
            add(label, key, unit)
    if other:
        half = (len(other) + 1) // 2
        out.append(f"<div class='grid'><div>{kv(other[:half])}</div><div>{kv(other[half:])}</div></div>")
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
        return {"VaR 99 %": num(s.get(f"{key}_var_99")), "ES 99 %": num(s.get(f"{key}_es_99")),
                "VaR 99.9 %": num(s.get(f"{key}_var_99_9"))}

    if "bad_debt" in p:
        share = float((p["bad_debt"] > 0).mean())
        figs.append(img(figures.tail_histogram(p["bad_debt"], title=f"Bad debt per path ({share:.2%} of paths "
                                                "> 0)", xlabel="bad debt (USD)", marks=marks("bad_debt"), log_y=True),
                         "bad debt histogram", 640))
    if "trader_loss" in p:
        figs.append(img(figures.tail_histogram(p["trader_loss"], title="Trader loss per path",
                                                xlabel="trader loss (USD; negative = traders gain)",
                                                marks=marks("trader_loss")), "trader loss histogram", 640))
    dd = -np.minimum(p["insurance_fund_min_change"].to_numpy(float), 0.0) if "insurance_fund_min_change" in p \
        else np.zeros(0)
    if dd.any():  # a histogram of zeros only would draw one bar and axis ticks that say nothing
        figs.append(img(figures.tail_histogram(dd, title="Insurance-fund drawdown per path",
                                                xlabel="largest drawdown of the fund (USD)",
                                                marks=marks("insurance_fund_drawdown"), log_y=True),
                         "insurance fund drawdown histogram", 640))
    if "liquidated_notional" in p:
        figs.append(img(figures.tail_histogram(p["liquidated_notional"], title="Liquidated notional per path",
                                                xlabel="liquidated notional (USD)",
                                                marks={"p99": num(s.get("liquidated_notional_p99")),
                                                       "p99.9": num(s.get("liquidated_notional_p99_9"))}),
                         "liquidated notional histogram", 640))
    if not figs:
        return ""
    none = " No path drew on the insurance fund (its drawdown is 0 on every path): no histogram of it." \
        if "insurance_fund_min_change" in p and not dd.any() else ""
    return (f"<h3>Distributions over {len(p):,} paths</h3><div class='grid'>{''.join(figs)}</div>"
            "<p class='note'>Vertical lines: the VaR and ES of summary.json (the same numbers as the table). "
            f"Log-scale counts where most paths are at zero.{none}</p>")

