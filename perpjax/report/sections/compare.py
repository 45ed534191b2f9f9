"""``--compare-modes``: the liquidation modes side by side on common random numbers."""

from __future__ import annotations

from .. import figures
from ..format import FEW, FEW_DIFF, column_unit, esc, fmt, fmt_pm, img, num, table
from ..load import Run
from .book import MAX_UNITS


def section(run: Run) -> str:
    t, modes = run.compare, list(run.modes)
    first = modes[0]
    head = ["metric", "unit"] + [f"{esc(m)}<span class='u'>± 1 SE</span>" for m in modes] + \
           [f"{esc(m)} − {esc(first)}<span class='u'>paired, ± 1 SE</span>" for m in modes[1:]]
    rows = []
    for key, r in t.iterrows():
        u = column_unit(str(key))
        row = [esc(str(key).replace("_", " ")), esc(u)]
        row += [fmt_pm(r.get(m), r.get(f"{m}_se"), u, FEW) for m in modes]
        for m in modes[1:]:
            d, e = num(r.get(f"{m}_minus_{first}")), num(r.get(f"{m}_minus_{first}_se"))
            cell = fmt_pm(d, e, u, FEW_DIFF)
            if d is not None and e is not None and e > 0 and abs(d) > 2 * e:
                cell = f"<b>{cell}</b>"
            row.append(cell)
        rows.append(row)
    out = ["<section id='compare'><h2>Liquidation modes side by side</h2>",
           f"<p class='note'>The same {fmt(run.summary.get('paths'), 'count')} random paths (common random numbers) "
           f"under each liquidation mode; differences are paired per path. Bold: the difference exceeds two "
           f"standard errors.</p>",
           "<div class='wide'>" + table(head, rows, left=2) + "</div>"]
    groups = [("bad_debt_mean", "bad debt mean"), ("bad_debt_es_99", "bad debt ES 99 %"),
              ("excess_liquidation_cost_mean", "excess cost mean"), ("slippage_mean", "slippage mean")]
    bars = [(lab, {m: (num(t.loc[k, m]), num(t.loc[k, f"{m}_se"]) if f"{m}_se" in t.columns else None)
                   for m in modes}) for k, lab in groups if k in t.index]
    figs = []
    if bars:
        figs.append(img(figures.compare_bars(bars, modes, title="Venue cost by liquidation mode",
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
            figs.append("<div class='wide'>" + table(head2, rows2, caption="Per unit and mode") + "</div>")
    out.append(f"<div class='grid'>{''.join(figs)}</div>")
    out.append("</section>")
    return "".join(out)

