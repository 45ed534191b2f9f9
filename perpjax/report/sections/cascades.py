"""Liquidation cascades: amplification, rounds, episode sizes, which tiers start cascades."""

from __future__ import annotations

from .. import figures
from ..format import esc, fmt, img, kv, num, scaled, table
from ..load import Run


def has_cascades(s: dict) -> bool:
    return any(k.startswith("cascade_") for k in s)


def section(run: Run) -> str:
    s = run.summary
    if not has_cascades(s):
        return ""
    out = ["<section id='cascades'><h2>Liquidation cascades</h2>"]
    facts = []
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
            facts.append((label, fmt(s[key], unit if unit in ("USD", "count") else "", 4 if unit.startswith("ratio")
                                  else None), unit))
    assets = [k[len("cascade_amplification_"):] for k in s if k.startswith("cascade_amplification_")
              and not k.startswith("cascade_amplification_p99")]
    rows = [[esc(a), fmt(scaled(s.get(f"drawdown_mean_{a}"), 100), digits=2),
             fmt(scaled(s.get(f"drawdown_no_feedback_mean_{a}"), 100), digits=2),
             fmt(s.get(f"cascade_amplification_{a}"), digits=4), fmt(s.get(f"cascade_amplification_p99_{a}"), digits=4)]
            for a in assets]
    per_asset = ""
    if rows:
        per_asset = table(["asset", "mean drawdown<span class='u'>% with feedback</span>",
                        "mean drawdown<span class='u'>% without</span>", "amplification<span class='u'>ratio</span>",
                        "amplification p99<span class='u'>ratio</span>"], rows, caption="Per asset")
    figs = []
    if isinstance(s.get("cascade_size_distribution"), list) and s["cascade_size_distribution"]:
        figs.append(img(figures.cascade_sizes(s["cascade_size_distribution"], num(s.get("paths"))),
                         "cascade episode sizes", 640))
    if run.tiers is not None and "p_starts_cascade_mean_per_unit" in run.tiers:
        t = run.tiers.set_index("tier")["p_starts_cascade_mean_per_unit"]
        figs.append(img(figures.tier_bars(t, title="Which tiers start cascades",
                                           xlabel="P(a unit of the tier liquidates in an episode's first round) "
                                                  "(probability)"),
                         "tiers starting cascades", 640))
    p = run.paths
    if p is not None and "cascade_rounds" in p:
        figs.append(img(figures.integer_histogram(p["cascade_rounds"], title="Liquidation rounds per path",
                                                   xlabel="rounds chained within the cascade window (count)"),
                         "cascade rounds", 640))
    if p is not None and assets:
        a = max(assets, key=lambda x: num(s.get(f"cascade_amplification_{x}")) or 0)
        if f"drawdown_{a}" in p and f"drawdown_no_feedback_{a}" in p:  # fractions of the peak
            figs.append(img(figures.drawdown_scatter(p[f"drawdown_{a}"].to_numpy(float),
                                                      p[f"drawdown_no_feedback_{a}"].to_numpy(float), a),
                             "drawdown with and without feedback", 640))
    # the facts and the per-asset table full width (in a half-width column beside a figure they overflowed at
    # 1,000 px), the figures two by two below
    out.append(f"<div>{kv(facts)}</div><div class='wide'>{per_asset}</div>")
    if figs:
        out.append(f"<div class='grid'>{''.join(figs)}</div>")
    out.append("</section>")
    return "".join(out)

