"""The report's HTML building blocks: units from column names, number formats, tables, inline images, and
the ``± SE`` text shared by the report and the CLI's tables.

Every number carries its unit; ``a ± b`` is a value and one Monte Carlo standard error; where the SE rests
on too few paths (``metrics.MIN_TAIL_PATHS``) it is not given: ``a ± n/a (0 paths beyond)``."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable

from ..metrics.tails import MIN_TAIL_PATHS, missing_se

FEW = f"fewer than {MIN_TAIL_PATHS} paths carry it"
"""Why a table's SE is n/a (``metrics.tails.MIN_TAIL_PATHS``)."""
FEW_DIFF = f"fewer than {MIN_TAIL_PATHS} paths differ"
"""Why a paired difference's SE is n/a."""

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
    if "paths_beyond" in base or base == "se_min_tail_paths":
        return "count"
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



def num(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def scaled(x, k: float) -> float | None:
    """``x * k`` for a finite number ``x``, else None (formatted as n/a)."""
    v = num(x)
    return None if v is None else v * k


def fmt(x, unit: str = "", digits: int | None = None) -> str:
    """A number for a table: USD with thousands separators, probabilities with 4 decimals."""
    v = num(x)
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


def fmt_pm(v, se, unit: str = "", missing: str | None = None) -> str:
    """``value ± SE`` (the SE in the value's format); where there is no SE, ``value ± n/a (missing)`` when
    ``missing`` says why (e.g. "0 paths beyond", ``metrics.missing_se``), else the value alone."""
    s = fmt(v, unit)
    e = num(se)
    if num(v) is None:
        return s
    if e is None:
        return f"{s} <span class='pm'>± n/a ({esc(missing)})</span>" if missing else s
    return f"{s} <span class='pm'>± {fmt(e, unit)}</span>"


def pm_of(summary: dict, key: str, unit: str = "") -> str:
    """``fmt_pm`` of summary metric ``key`` with its ``KEY_se``, or why that SE is not given."""
    return fmt_pm(summary.get(key), summary.get(f"{key}_se"), unit, missing_se(summary, key))


def pm_suffix(summary: dict, key: str, fmt_se: Callable[[float], str]) -> str:
    """Plain text after the value of summary metric ``key`` (the CLI's tables): `` ± SE`` (``fmt_se(SE)``),
    `` ± n/a (0 paths beyond)`` where the SE rests on too few paths, '' where the metric has no SE."""
    e = num(summary.get(f"{key}_se"))
    if e is not None:
        return f" ± {fmt_se(e)}"
    why = missing_se(summary, key)
    return f" ± n/a ({why})" if why else ""


def esc(x) -> str:
    return html.escape(str(x), quote=True)


def img(png: bytes, alt: str, width_px: int | None = None) -> str:
    b64 = base64.b64encode(png).decode()
    style = f" style='max-width:min(100%, {width_px}px)'" if width_px else ""
    return f"<figure><img alt='{esc(alt)}' src='data:image/png;base64,{b64}'{style}></figure>"


def table(header: list, rows: list, *, cls: str = "", caption: str = "", left: int = 1) -> str:
    """rows of already-formatted HTML cells; the first ``left`` columns left-aligned (text), the rest numeric."""
    cap = f"<caption>{caption}</caption>" if caption else ""

    def a(i):
        return " class='l'" if i < left else ""

    head = "".join(f"<th{a(i)}>{h}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td{a(i)}>{c}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table class='{cls}'>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def kv(rows: list, cls: str = "kv") -> str:
    """(label, value, unit) rows as a two/three-column table."""
    body = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td><td class='unit'>{esc(u)}</td></tr>" for k, v, u in rows)
    return f"<table class='{cls}'><tbody>{body}</tbody></table>"



def card(label: str, value, se, unit: str, warn: bool = False, shown_unit: str | None = None,
         missing: str | None = None) -> str:
    """A headline number with its SE (or ``± n/a (missing)``, as ``fmt_pm``)."""
    if num(se) is not None:
        pm = f" <span class='pm'>± {fmt(se, unit)}</span>"
    else:
        pm = f" <span class='pm'>± n/a ({esc(missing)})</span>" if missing and num(value) is not None else ""
    return (f"<div class='card{' warn' if warn else ''}'><div class='k'>{esc(label)}</div>"
            f"<div class='v'>{fmt(value, unit)}{pm}</div><div class='u'>{esc(shown_unit or unit)}</div></div>")
