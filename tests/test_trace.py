"""``engine.trace``: chosen paths of a run re-simulated step by step are the run's own paths (their rows of
the per-path table bit for bit in float64), and the recorded liquidation events add up to the run's totals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import perpjax
from perpjax.cli import main
from perpjax.config import build_model
from perpjax.engine.trace import MAX_TRACED, check_indices, trace_paths
from perpjax.report.sections.sample_paths import DERIVED_KEYS, pick_paths

PATHS = 96


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("trace") / "r"
    assert main(["simulate", "--paths", str(PATHS), "--no-progress", "--out", str(out), "--set", "dtype=float64",
                 "--set", "time.horizon_seconds=14400", "--set", "seed=11"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    table = pd.read_parquet(out / "paths").sort_values("path").reset_index(drop=True)
    model, labels, resolved = build_model({k: v for k, v in manifest["config"].items() if k not in DERIVED_KEYS})
    picks = [i for i, _ in pick_paths(perpjax.load(out).paths, 4)]  # the public table picks, by path index
    traces = trace_paths(model, seed=manifest["seed"], indices=picks, asset_names=resolved["asset_names"],
                         unit_names=list(labels.unit))
    return table, traces, resolved, labels


def test_traced_paths_are_the_runs_paths_bit_for_bit(run):
    table, traces, _, _ = run
    assert len(traces) == 4
    for tr in traces:
        row = table.loc[table["path"] == tr.path].iloc[0]
        assert set(tr.row) == set(table.columns) - {"path"}
        for k, v in tr.row.items():
            assert v == row[k], (tr.path, k, v, row[k])  # exact, float64
        # the recording scan is the kernel's scan: its final running sums give the stored totals exactly
        assert float(np.sum(tr.final.liq_notional.astype(np.float64))) == row["path_liq_notional"]
        assert float(np.sum(tr.final.bad_debt.astype(np.float64))) == row["path_bad_debt"]
        assert int(np.sum(tr.final.liq_notional > 0)) == row["path_n_liquidations"]


def test_events_add_up_to_the_paths_totals(run):
    table, traces, resolved, labels = run
    fee_rate = resolved["liquidation"]["fee_rate"]
    assert any(len(tr.events) for tr in traces)
    for tr in traces:
        row = table.loc[table["path"] == tr.path].iloc[0]
        ev = tr.events
        per_unit = ev.drop_duplicates(["step", "unit"]) if len(ev) else ev
        # every liquidation event of the path (full mode: one per liquidated unit), its notional and bad debt
        assert len(per_unit) == row["path_liq_events"] == row["path_n_liquidations"]
        np.testing.assert_allclose(per_unit["unit_notional"].sum(), row["path_liq_notional"], rtol=1e-12)
        np.testing.assert_allclose(per_unit["unit_bad_debt"].sum(), row["path_bad_debt"], rtol=1e-12, atol=1e-9)
        # the fee: fee_rate x filled notional, capped by the equity left after the fill (none when bankrupt)
        assert (per_unit["unit_fee"] <= fee_rate * per_unit["unit_notional"] * (1 + 1e-12)).all()
        assert (per_unit.loc[per_unit["unit_bad_debt"] > 0, "unit_fee"] == 0).all()
        for e in ev.itertuples():
            assert (e.fill_price > 0 or np.isnan(e.fill_price)) and e.size_closed > 0 and e.unit in labels.unit
        assert tr.index.shape == tr.mark.shape == (len(tr.seconds), len(resolved["asset_names"]))
        np.testing.assert_array_equal(tr.index[0], [a["price"] for a in resolved["assets"]])


def test_fill_price_of_a_single_position_unit_is_its_notional_over_size(run):
    """A unit closing one position: the recorded fill price times the size closed is the filled notional."""
    _, traces, _, _ = run
    ev = pd.concat([tr.events for tr in traces])
    one = ev.groupby(["step", "unit"]).filter(lambda g: len(g) == 1)
    assert len(one)
    np.testing.assert_allclose(one["fill_price"] * one["size_closed"], one["unit_notional"], rtol=1e-12)
    several = ev.groupby(["step", "unit"]).filter(lambda g: g["asset"].nunique() > 1)
    assert several["fill_price"].isna().all()  # no per-asset fill where a unit closed several assets


def test_bad_indices_and_oversized_traces_are_refused(run, monkeypatch):
    import perpjax.engine.trace as T
    with pytest.raises(ValueError, match="paths: index -1"):
        check_indices([-1])
    with pytest.raises(ValueError, match="paths: index 10 is outside"):
        check_indices([3, 10], n_paths=10)
    with pytest.raises(ValueError, match=f"1..{MAX_TRACED}"):
        check_indices([])
    _, _, resolved, labels = run
    model = build_model({k: v for k, v in resolved.items() if k not in DERIVED_KEYS})[0]
    # records: (steps + 1) x (3 x assets + positions + 3 x units + 1) float64 values per path
    per_step = 3 * model.prices.n_assets + len(T.positions(model).unit) + 3 * model.n_units + 1
    n = (model.grid.n_steps + 1) * per_step * 8
    assert T.trace_bytes(model, 3) == 3 * n
    monkeypatch.setattr(T, "MAX_TRACE_BYTES", 2 * n)
    with pytest.raises(ValueError, match="paths: tracing 3 path"):
        trace_paths(model, seed=0, indices=[0, 1, 2], asset_names=resolved["asset_names"],
                    unit_names=list(labels.unit))
