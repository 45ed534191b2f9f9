"""The book: P(liquidation) per margin unit with Wilson intervals, the per-unit and per-tier tables."""

from __future__ import annotations

import pandas as pd

from .. import figures
from ..format import FEW, column_unit, esc, fmt, fmt_pm, img, num, table
from ..load import Run

MAX_UNITS = 40  # margin units drawn and tabulated (the most likely to be liquidated); all are in accounts.csv

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


def section(run: Run) -> str:
    acc, tiers = run.accounts, run.tiers
    if acc is None and tiers is None:
        return ""
    out = ["<section id='book'><h2>The book</h2>"]
    hours = (num(run.summary.get("horizon_seconds")) or 0) / 3600 or None
    if acc is not None and "p_liquidation" in acc:
        a = acc.sort_values("p_liquidation", ascending=False, kind="stable")
        shown = a.head(MAX_UNITS)
        if len(a) > MAX_UNITS:
            out.append(f"<p class='note'>{len(a):,} margin units: the {MAX_UNITS} most likely to be liquidated are "
                       "shown; all are in accounts.csv.</p>")
        out.append(img(figures.liquidation_dots(shown, hours), "liquidation probability per margin unit", 820))
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
                    row.append(fmt_pm(r[c], r[f"{c}_se"], "USD", FEW))
                elif pd.api.types.is_numeric_dtype(a[c]):
                    row.append(fmt(r[c], column_unit(c)))
                else:  # an isolated unit "account:ASSET" may break after its colon
                    row.append(esc(r[c]).replace(":", ":<wbr>"))
            rows.append(row)
        head = [_th(c) if c != "p_liquidation" else "P(liquidation)<span class='u'>probability [95 % Wilson]</span>"
                for c in cols]
        cap = "Per margin unit (sorted by P(liquidation); time to liquidation: mean over paths that liquidate)"
        out.append("<div class='wide'>" + table(head, rows, cls="stack", left=3, caption=cap) + "</div>")
    if tiers is not None and len(tiers):
        cols = [c for c in tiers.columns if not c.endswith("_sum_over_units")
                and c != "expected_liquidation_events_mean_per_unit"]
        cols = [c for c in cols if not (pd.api.types.is_numeric_dtype(tiers[c]) and tiers[c].fillna(0).eq(0).all())]
        rows = [[fmt(r[c], column_unit(c)) if pd.api.types.is_numeric_dtype(tiers[c]) else esc(r[c]) for c in cols]
                for _, r in tiers.iterrows()]
        out.append("<div class='wide'>" + table([_th(c) for c in cols], rows, caption="Per maintenance tier "
                                                 "(each unit counted in the tier of its largest position; columns that "
                                                 "are zero for every tier are left out)") + "</div>")
    out.append("</section>")
    return "".join(out)

