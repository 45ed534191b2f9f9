"""Sample paths: a handful of the run's paths re-simulated step by step (``engine.trace``), with the index,
the mark and the liquidation fills.

The paths are picked from the per-path table (``RUN/paths/``): the worst bad-debt path, the worst
trader-loss path, a median path and a typical path with a liquidation. The model is rebuilt from the
manifest's resolved config and the paths re-run by global index with the run's seed, so they are the
run's own paths (each traced row is checked against the stored one)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import figures
from ..format import esc, fmt, img, num, table
from ..load import Run

DEFAULT_COUNT = 4
MOST_ASSETS = 6  # assets drawn per path: those with liquidations first
DERIVED_KEYS = ("guardrails_fired", "asset_names")  # written into the resolved config by build_model


def pick_paths(p: pd.DataFrame, count: int = DEFAULT_COUNT) -> list:
    """[(path index, why)]: the worst bad debt (when any path has some), the worst trader loss, the median
    trader loss and the median liquidated notional among paths with a liquidation; a path picked twice
    keeps both reasons. Then, up to ``count``, the paths with the most liquidation events."""
    picks: dict = {}

    def add(i, why):
        i = int(p.index[i])
        picks.setdefault(i, []).append(why)

    if "bad_debt" in p and (p["bad_debt"] > 0).any():
        add(int(np.argmax(p["bad_debt"].to_numpy())), "worst bad debt")
    if "trader_loss" in p:
        loss = p["trader_loss"].to_numpy(float)
        add(int(np.argmax(loss)), "worst trader loss")
        add(int(np.argmin(np.abs(loss - np.median(loss)))), "median trader loss")
    if "liquidated_notional" in p and (p["liquidated_notional"] > 0).any():
        n = p["liquidated_notional"].to_numpy(float)
        hit = np.nonzero(n > 0)[0]
        add(int(hit[np.argmin(np.abs(n[hit] - np.median(n[hit])))]), "a typical path with a liquidation")
    if "liquidation_events" in p:
        for i in np.argsort(-p["liquidation_events"].to_numpy(), kind="stable"):
            if len(picks) >= count:
                break
            if int(p.index[i]) not in picks:
                add(int(i), "most liquidation events")
    return [(i, ", ".join(w)) for i, w in list(picks.items())[:count]]


def trace_run(run: Run, picks: list) -> list:
    """Re-simulate the picked paths of ``run`` (``engine.trace.trace_paths``) from its manifest's config."""
    from ...config import build_model
    from ...engine.trace import trace_paths

    cfg = {k: v for k, v in run.config.items() if k not in DERIVED_KEYS}
    model, labels, resolved = build_model(cfg)
    seed = run.manifest.get("seed", cfg.get("seed"))
    return trace_paths(model, seed=int(seed), indices=[i for i, _ in picks], asset_names=resolved["asset_names"],
                       unit_names=list(labels.unit))


def traced_row(tr, p: pd.DataFrame) -> dict:
    """The traced path's per-path table row (``tr.row`` holds the chunk files' fields) under the table's
    own names and values (``engine.outputs.path_columns``; cascade columns when ``p`` has them)."""
    from ...engine.outputs import path_columns

    cascade_on = any(c.startswith("cascade_") for c in p.columns)
    return {k: float(v) for k, v in path_columns(tr.row, tr.asset_names, cascade_on).items()}


def _mismatch(tr, p: pd.DataFrame) -> list:
    """Per-path table columns where the traced path differs from the stored row (a different run)."""
    if tr.path not in p.index:
        return ["path"]
    r = p.loc[tr.path]
    return [k for k, v in traced_row(tr, p).items()
            if k in r.index and not np.isclose(v, r[k], rtol=1e-6, atol=1e-6)]


def price(x) -> str:
    """A price to six significant digits (a DOGE fill and a BTC fill alike)."""
    v = num(x)
    return "n/a" if v is None else f"{v:,.6g}" if abs(v) < 1e6 else f"{v:,.0f}"


def section(run: Run, count: int = DEFAULT_COUNT) -> str:
    """The sample-paths section ('' when there is no per-path table or ``count`` is 0)."""
    p = run.paths
    if count <= 0 or p is None or not len(p) or not run.config:
        return ""
    picks = pick_paths(p, count)
    out = ["<section id='samplepaths'><h2>Sample paths</h2>"]
    try:
        traces = trace_run(run, picks)
    except Exception as e:  # noqa: BLE001 - a config that no longer builds (data file moved): say so, go on
        out.append(f"<p class='note'>The paths could not be re-simulated from the manifest's config "
                   f"({esc(type(e).__name__)}: {esc(e)}).</p></section>")
        return "".join(out)
    out.append("<p class='note'>Paths of this run re-simulated step by step from the manifest's config and seed "
               "(the same paths: each is keyed by its index). Grey: index price; blue: mark price; markers: "
               "liquidation fills (the unit's average fill price, USD; hollow at the mark, fill n/a, where a cross "
               "unit closed several assets at once: only its total notional is known); dotted red lines: steps "
               "with a liquidation in the asset.</p>")
    for (_, why), tr in zip(picks, traces, strict=True):
        out.append(_one(run, tr, why, p))
    out.append("</section>")
    return "".join(out)


def _one(run: Run, tr, why: str, p: pd.DataFrame) -> str:
    ev = tr.events
    involved = list(dict.fromkeys(ev["asset"])) if len(ev) else []
    assets = (involved + [a for a in tr.asset_names if a not in involved])[:MOST_ASSETS]
    r = traced_row(tr, p)
    head = (f"path {tr.path:,} ({why}): bad debt {fmt(r.get('bad_debt'), 'USD')} USD, trader loss "
            f"{fmt(r.get('trader_loss'), 'USD')} USD, {fmt(r.get('liquidation_events'), 'count')} liquidation "
            f"event(s), liquidated notional {fmt(r.get('liquidated_notional'), 'USD')} USD")
    parts = [f"<h3>{esc(head)}</h3>"]
    bad = _mismatch(tr, p)
    if bad:
        parts.append(f"<p class='note'><b>The re-simulated path differs from the stored row</b> in "
                     f"{esc(', '.join(bad[:6]))}: the run directory was not produced by this version or config.</p>")
    parts.append(img(figures.sample_path(tr, assets, f"path {tr.path:,}: {why}"), f"sample path {tr.path}", 1040))
    if len(ev):
        rows = [[fmt(e.seconds / 3600, digits=2), esc(e.unit), esc(e.asset), esc(e.side), fmt(e.size_closed),
                 price(e.fill_price), price(e.mark), fmt(e.unit_notional, "USD"), fmt(e.unit_fee, "USD"),
                 fmt(e.unit_bad_debt, "USD")] for e in ev.head(12).itertuples()]
        more = f" (first 12 of {len(ev)})" if len(ev) > 12 else ""
        parts.append("<div class='wide'>" + table(
            ["time<span class='u'>hours</span>", "unit", "asset", "side closed", "size<span class='u'>units</span>",
             "fill<span class='u'>USD</span>", "mark<span class='u'>USD</span>",
             "unit's notional<span class='u'>USD</span>", "fee<span class='u'>USD</span>",
             "bad debt<span class='u'>USD</span>"], rows, left=4, caption=f"Liquidations on this path{more}")
                     + "</div>")
    return "".join(parts)
