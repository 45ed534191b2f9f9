"""Risk sensitivities (``perpjax sensitivities``): a tornado per metric and the pathwise gradients beside
the hard engine's finite differences.

Reads ``sensitivities.csv`` (columns ``parameter, metric, unit, gradient, gradient_se, fd, fd_se, z,
agree, method``). A tornado bar is the gradient times a bump of its parameter: the bump the manifest
states (a ``bump`` / ``bumps`` entry: one number, or one per parameter; the finite difference's step),
else one unit of the parameter; whiskers ± 1.96 standard errors of the gradient; the finite difference
times the same bump is the marker beside the bar."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...sensitivities.estimates import ZERO_BY_CONSTRUCTION, moved_reason
from .. import figures
from ..format import esc, fmt, fmt_pm, img, num, table
from ..load import Run


def _why(se, reason: str) -> str | None:
    """The reason an SE is n/a, only where it is (``fmt_pm`` shows the SE otherwise)."""
    return reason if num(se) is None else None


def bumps(manifest: dict) -> tuple[dict, float | None]:
    """(per-parameter bumps, one bump for all) from the first manifest entry (top level or one level down)
    whose key contains 'bump'."""
    places = [manifest] + [v for v in manifest.values() if isinstance(v, dict)]
    for d in places:
        for k, v in d.items():
            if "bump" not in str(k).lower():
                continue
            if isinstance(v, dict):
                return {str(p): num(h) for p, h in v.items() if num(h) is not None}, None
            if num(v) is not None:
                return {}, num(v)
    return {}, None


def _effects(t: pd.DataFrame, per: dict, common: float | None) -> pd.DataFrame:
    h = t["parameter"].map(lambda p: per.get(str(p), common if common is not None else 1.0)).astype(float)
    g, fd = pd.to_numeric(t["gradient"], errors="coerce"), pd.to_numeric(t["fd"], errors="coerce")
    se = pd.to_numeric(t["gradient_se"], errors="coerce")
    pathwise = t["method"].astype(str).str.startswith("path")
    effect = np.where(pathwise & g.notna(), g * h, fd * h)  # finite difference only: its bar is the FD's
    half = np.where(pathwise & g.notna(), 1.96 * se * h, 1.96 * pd.to_numeric(t["fd_se"], errors="coerce") * h)
    return pd.DataFrame({"label": [f"{p} (× {hh:g})" for p, hh in zip(t["parameter"], h, strict=True)],
                         "effect": effect, "half_ci": np.abs(half),
                         "fd_effect": np.where(pathwise, fd * h, np.nan)}, index=t.index)


def _breakable(name) -> str:
    """A metric or parameter key that may break after its underscores (a narrow page keeps the table inside)."""
    return esc(name).replace("_", "_<wbr>")


def charted(t: pd.DataFrame) -> pd.Series:
    """Rows that get a tornado bar: a pathwise gradient with a z (one that resolves something), or a finite
    difference alone with its SE; not a column zero by construction, nor one below both engines' resolution,
    nor a finite difference that too few paths move."""
    method = t["method"].astype(str)
    z = pd.to_numeric(t["z"], errors="coerce")
    fd, fd_se = pd.to_numeric(t["fd"], errors="coerce"), pd.to_numeric(t["fd_se"], errors="coerce")
    return (method.str.startswith("path") & z.notna()) | ((method == "finite-difference") & fd.notna() & fd_se.notna())


def section(run: Run) -> str:
    t = run.tables["sensitivities"]
    per, common = bumps(run.manifest)
    stated = ("the bump the manifest states" + (f" ({common:g} for every parameter)" if common is not None else
                                               " per parameter") if per or common is not None
              else "one unit of the parameter (the manifest states no bump)")
    paths = num(run.manifest.get("paths"))
    ran = f"On {paths:,.0f} Monte Carlo paths (seed {esc(run.manifest.get('seed', 'n/a'))}). " if paths else ""
    out = ["<section id='sensitivities'><h2>Risk sensitivities</h2>",
           f"<p class='note'>{ran}Bars: the pathwise gradient (relaxed engine, common random numbers) times "
           f"{esc(stated)}; whiskers: 95 % confidence (± 1.96 standard errors); diamonds: the hard engine's "
           "central finite difference times the same bump. Where the relaxed engine has no gradient the bar "
           "is the finite difference's. Table: gradients in metric units per parameter unit; z: (gradient − "
           "FD) over their combined standard error. Zero by construction: a parameter the relaxed engine does "
           "not see (the fund moves only the depletion proxy); below resolution: both estimates and their "
           "errors below the float32 floor (nothing moves the metric on these paths). Neither is charted nor "
           "given a z.</p>"]
    units = run.manifest.get("parameter_units") if isinstance(run.manifest.get("parameter_units"), dict) else {}
    if per and units:
        out.append("<p class='note'>Bumps: " + "; ".join(
            f"{esc(p)} {h:g} × ({esc(units[p])})" for p, h in per.items() if p in units) + ".</p>")
    figs, flat = [], []
    for m, g in t.groupby("metric", sort=False):
        g = g[charted(g)]
        e = _effects(g, per, common)
        vals = np.r_[e["effect"].to_numpy(float), e["fd_effect"].to_numpy(float)]
        if not np.nan_to_num(vals).any():
            flat.append(str(m))  # no parameter moves it on these paths: no chart
        elif np.isfinite(e["effect"].to_numpy(float)).any():
            unit = str(g["unit"].iloc[0])
            figs.append(img(figures.tornado(e, title=str(m).replace("_", " "),
                                            xlabel=f"change of the metric ({unit.split(' per ')[0]})"),
                            f"tornado {m}", 620))
    if figs:
        out.append(f"<div class='grid'>{''.join(figs)}</div>")
    if flat:
        out.append(f"<p class='note'>No parameter moves {esc(', '.join(flat))} on these paths (every gradient and "
                   "finite difference is zero or below the engines' resolution, or zero by construction): no "
                   "chart.</p>")
    notes = "note" in t.columns and t["note"].fillna("").astype(str).str.strip().ne("").any()
    rows = []
    for r in t.itertuples(index=False):
        agree = str(r.agree).strip().lower() in ("true", "1", "yes")
        flag = ("<span class='zone-green'>&nbsp;agree&nbsp;</span>" if agree else
                "<span class='zone-red'>&nbsp;disagree&nbsp;</span>") if num(r.z) is not None else "n/a"
        if str(r.method) == ZERO_BY_CONSTRUCTION:
            flag = "<span class='words'>zero by construction</span>"
        elif str(r.method).startswith("path") and num(r.z) is None:
            flag = ("<span class='words'>below resolution</span>" if str(getattr(r, "note", "")).startswith("below")
                    else "<span class='words'>too few paths</span>")
        row = [_breakable(r.metric), _breakable(r.parameter), esc(r.unit),
               fmt_pm(r.gradient, r.gradient_se, "", _why(r.gradient_se, "too few paths")),
               fmt_pm(r.fd, r.fd_se, "", _why(r.fd_se, moved_reason(getattr(r, "fd_paths", None)) or "too few paths")),
               fmt(r.z, digits=2), flag,
               f"<span class='words'>{esc(r.method)}</span>"]
        if notes:
            note = getattr(r, "note", "")
            row.append(f"<div class='text'>{esc(note)}</div>" if isinstance(note, str) and note else "")
        rows.append(row)
    out.append("<div class='wide'>" + table(
        ["metric", "parameter", "unit", "pathwise gradient<span class='u'>± 1 SE</span>",
         "finite difference<span class='u'>± 1 SE</span>", "z<span class='u'>SE</span>", "agreement", "method"]
        + (["note"] if notes else []),
        rows, cls="stack", left=3, caption="Pathwise gradients beside the hard engine's finite differences")
        + "</div>")
    out.append("</section>")
    return "".join(out)
