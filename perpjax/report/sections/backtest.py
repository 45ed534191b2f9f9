"""A backtest: reliability of liquidation forecasts and the VaR series' Basel traffic light."""

from __future__ import annotations

from .. import figures
from ..format import esc, fmt, img, kv, num, scaled, table
from ..load import Run


def section(run: Run) -> str:
    s, b = run.summary, run.backtest
    out = ["<section id='backtest'><h2>Backtest: forecasts against what happened</h2>"]
    facts = [("origins (forecast dates)", fmt(s.get("origins"), "count"), "count"),
          ("liquidation cases", fmt(s.get("cases"), "count"), "count"),
          ("cases not rejected at 5 %", fmt(s.get("cases_not_rejected_5pct"), "count"), "count"),
          ("pooled expected liquidations", fmt(s.get("pooled_expected_liquidations"), digits=1), "count"),
          ("pooled realised liquidations", fmt(s.get("pooled_realised_liquidations"), "count"), "count"),
          ("pooled Brier score", fmt(s.get("pooled_brier"), digits=4), "probability²"),
          ("VaR series", fmt(s.get("var_series"), "count"), "count")]
    zones = s.get("var_zones") or {}
    for z in ("green", "yellow", "red"):
        facts.append((f"VaR series in the {z} zone", fmt(zones.get(z, 0), "count"), "count"))
    rel = s.get("reliability")
    fig = img(figures.reliability(rel), "reliability diagram", 560) if isinstance(rel, list) and rel else ""
    out.append(f"<div class='grid'><div>{kv(facts)}</div><div>{fig}</div></div>")
    lt = b.get("liquidation_cases")
    if lt is not None and len(lt):
        rows = []
        for _, r in lt.iterrows():
            rej = bool(r.get("rejected_5pct")) if "rejected_5pct" in lt else (num(r.get("coverage_p")) or 1) < 0.05
            rows.append([esc(r.get("case", "")), esc(r.get("asset", "")), esc(r.get("side", "")),
                         fmt(r.get("leverage"), digits=0), fmt(r.get("windows"), "count"),
                         fmt(r.get("mean_predicted"), "probability"), fmt(r.get("expected"), digits=2),
                         fmt(r.get("realised"), "count"), fmt(r.get("coverage_p"), digits=3),
                         fmt(r.get("independence_p"), digits=3), fmt(r.get("brier"), digits=4),
                         f"<span class='zone-{'red' if rej else 'green'}'>"
                         f"&nbsp;{'rejected' if rej else 'ok'}&nbsp;</span>"])
        out.append("<div class='wide'>" + table(
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
            lvl = num(r.get("level"))
            rows.append([esc(r.get("asset", "")), esc(r.get("side", "")),
                         f"{lvl * 100:g} %" if lvl is not None else "n/a", fmt(r.get("windows"), "count"),
                         fmt(r.get("expected"), digits=2), fmt(r.get("exceptions"), "count"),
                         fmt(r.get("kupiec_p"), digits=3), fmt(r.get("independence_p"), digits=3),
                         fmt(scaled(r.get("mean_var"), 100), digits=2),
                         fmt(scaled(r.get("mean_es"), 100), digits=2),
                         f"<span class='zone-{esc(z)}'>&nbsp;{esc(z)}&nbsp;</span>"])
        out.append("<div class='wide'>" + table(
            ["asset", "side", "VaR level", "windows<span class='u'>count</span>",
             "expected<span class='u'>count</span>",
             "exceptions<span class='u'>count</span>", "Kupiec p<span class='u'>p-value</span>",
             "independence p<span class='u'>p-value</span>", "mean VaR<span class='u'>% of notional</span>",
             "mean ES<span class='u'>% of notional</span>", "traffic light"], rows,
            left=2, caption="VaR series: Basel traffic light") + "</div>")
    out.append("</section>")
    return "".join(out)

