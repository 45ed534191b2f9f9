"""A ladder calibration (``perpjax calibrate``): the ladder before and after, the optimiser's history and
the metrics (and the fund-loss constraint) on the hard engine before and after."""

from __future__ import annotations

import numpy as np

from .. import figures
from ..format import column_unit, esc, fmt, img, kv, num, table
from ..load import Run

_LABELS = {"p_any_liquidation": "P(any liquidation)", "expected_liquidations": "expected liquidations",
           "bad_debt_mean": "bad debt, mean", "bad_debt_es_99": "bad debt ES 99 %", "p_bad_debt": "P(bad debt > 0)",
           "insurance_fund_drawdown_es_99": "insurance-fund drawdown ES 99 %",
           "p_insurance_fund_depleted": "P(insurance fund depleted)",
           "liquidated_notional_mean": "liquidated notional, mean", "slippage_mean": "slippage, mean",
           "fees_mean": "liquidation fees, mean", "trader_loss_mean": "trader loss, mean"}


def section(run: Run) -> str:
    m, t = run.summary, run.tables
    out = ["<section id='calibration'><h2>Ladder calibration</h2>"]
    info = [("iterations", fmt(m.get("iterations"), "count"), "count"),
            ("optimiser wall time", fmt(m.get("wall_seconds"), digits=1), "seconds"),
            ("hard-engine check: fresh paths", fmt(m.get("eval_paths"), "count"), "count"),
            ("hard-engine check: seed", esc(m.get("eval_seed", "n/a")), "")]
    c = m.get("constraint")
    if isinstance(c, dict):
        info += [("constraint", esc(f"P(insurance-fund loss > {fmt(c.get('exceed_budget_usd'), 'USD')} USD) ≤ "
                                    f"{fmt(c.get('limit'), 'probability')}"), ""),
                 ("constraint, before", fmt(c.get("before"), "probability"), "probability"),
                 ("constraint, after", fmt(c.get("after"), "probability"), "probability"),
                 ("constraint met after", "yes" if c.get("met_after") else "<b>no</b>", "")]
    before, after = m.get("before") or {}, m.get("after") or {}
    rows = []
    for k in before:
        u = column_unit(k) if k != "expected_liquidations" else "count"
        b, a = num(before.get(k)), num(after.get(k))
        rel = f"{(a - b) / abs(b) * 100:+.1f} %" if a is not None and b not in (None, 0.0) else "n/a"
        rows.append([esc(_LABELS.get(k, k.replace("_", " "))), esc(u), fmt(b, u), fmt(a, u),
                     fmt(None if a is None or b is None else a - b, u), rel])
    metrics = table(["metric", "unit", "before", "after", "after − before", "change"], rows, left=2,
                    caption="The hard engine before and after, on the same fresh paths")
    # the settings beside each other; the before / after table below them, full width (beside them it was
    # clipped in a half-width column)
    half = (len(info) + 1) // 2
    out.append(f"<div class='grid'><div>{kv(info[:half])}</div><div>{kv(info[half:])}</div></div>"
               f"<div class='wide'>{metrics}</div>")
    lb, la = t.get("ladder_before"), t.get("ladder")
    assets = list(dict.fromkeys(la["asset"]))
    changed = [a for a in assets if not np.allclose(la.loc[la.asset == a, "mmr"].to_numpy(float),
                                                    lb.loc[lb.asset == a, "mmr"].to_numpy(float), rtol=0, atol=0)]
    shown = changed or assets
    out.append(img(figures.ladder_steps(lb, la, shown), "maintenance ladder before and after", 1040))
    out.append("<div class='wide'>" + table(*_ladder_rows(lb, la, shown), left=2,
                                            caption="Maintenance ladder before and after (tuned assets)") + "</div>")
    hist = t.get("history")
    if hist is not None and len(hist) and {"iteration", "objective"} <= set(hist.columns):
        out.append("<h3>Optimiser history</h3>" + img(figures.calibration_history(hist), "calibration history", 1040))
        out.append("<p class='note'>The objective is the relaxed (smoothed) engine's on the calibration paths; "
                   "the table above is the hard engine's on fresh paths.</p>")
    out.append("</section>")
    return "".join(out)


def _ladder_rows(lb, la, assets) -> tuple:
    head = ["asset", "tier", "floor<span class='u'>USD</span>", "cap<span class='u'>USD</span>",
            "MMR before<span class='u'>%</span>", "MMR after<span class='u'>%</span>",
            "IMR after<span class='u'>%</span>", "max leverage after<span class='u'>×</span>",
            "maintenance amount after<span class='u'>USD</span>"]
    rows = []
    for a in assets:
        b = lb[lb.asset == a].reset_index(drop=True)
        for i, r in la[la.asset == a].reset_index(drop=True).iterrows():
            mb = b["mmr"].iloc[i] if i < len(b) else None
            cap = num(r["cap"])
            rows.append([esc(a), fmt(r["tier"], "count"), fmt(r["floor"], "USD"),
                         fmt(cap, "USD") if cap is not None else "∞",
                         fmt(None if mb is None else mb * 100, digits=3), fmt(r["mmr"] * 100, digits=3),
                         fmt(r["imr"] * 100, digits=3), fmt(r["max_leverage"], digits=1),
                         fmt(r["maintenance_amount"], "USD")])
    return head, rows
