"""``perpjax sweep``: per-set results equal separate runs, one compile per structural group, common random
numbers, and bad grids refused before anything is written.

Equality: float64, every per-path value and every table metric bit for bit (the batched kernel runs the same
per-path operations; XLA:CPU gives the same bits batched over sets as alone, measured here)."""

import json
import math

import jax
import numpy as np
import pandas as pd
import pytest

from perpjax.api import run
from perpjax.cli import main
from perpjax.config import ConfigError, apply_overrides
from perpjax.engine.outputs import OUTPUTS
from perpjax.sweep import METRICS, build_sets, parse_grid, run_sweep, set_texts
from perpjax.sweep.batch import KERNEL

from .helpers import single_position_config

PER_PATH = [st.key for o in OUTPUTS for st in o.stats if st.how.startswith("path")]
GRID = ["assets.0.vol=0.8,0.85,1.2", "liquidation.fee_rate=0,0.005"]


def tiny(paths=400):
    """A 40x long over 6 hours in 10-minute steps: about half the paths liquidate, some with bad debt."""
    c = single_position_config(step_seconds=600.0, horizon_seconds=6 * 3600.0, leverage=40.0)
    c["paths"], c["chunk_size"] = paths, paths
    return c


def sweep(base, grid):
    compiles = []

    def listen(event, secs, **kw):
        if event == "/jax/core/compile/backend_compile_duration" and KERNEL in str(kw.get("fun_name", "")):
            compiles.append(kw["fun_name"])

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        sw = run_sweep(base, build_sets(base, set_texts(parse_grid(grid))))
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    return sw, compiles


@pytest.fixture(scope="module")
def batched():
    base = tiny()
    return base, *sweep(base, GRID)


def assert_equals_run(base, sw, rtol=0.0):
    """Every set's per-path values and table metrics equal ``api.run`` of that set: bit for bit (``rtol`` 0)
    or within ``rtol``."""
    for s in sw.sets:
        r = run(apply_overrides(base, [f"{k}={v}" for k, v in s.texts.items()]))
        for f in PER_PATH:
            np.testing.assert_allclose(getattr(sw.outcomes[s.index], f), getattr(r.outcome, f), rtol=rtol, atol=0,
                                       err_msg=f)
        rows = sw.table[sw.table.set == s.index].set_index("metric")
        for m in METRICS:
            assert rows.loc[m, "value"] == pytest.approx(r.summary[m], rel=rtol, abs=0), (s.index, m)
            if f"{m}_se" in r.summary and r.summary[f"{m}_se"] is None:  # too few tail paths: no SE
                assert math.isnan(rows.loc[m, "se"]), (s.index, m)
            elif f"{m}_se" in r.summary:
                assert rows.loc[m, "se"] == pytest.approx(r.summary[f"{m}_se"], rel=rtol, abs=0), (s.index, m)


def test_sweep_equals_separate_runs(batched):
    base, sw, _ = batched
    assert sw.table.groupby("set").size().tolist() == [len(METRICS)] * 6
    assert sw.summaries[4]["p_any_liquidation"] > 0.3 and sw.summaries[4]["bad_debt_mean"] > 0  # not vacuous
    assert_equals_run(base, sw)


def test_one_compile_for_the_sweep(batched):
    _, sw, compiles = batched
    assert len(sw.sets) >= 3
    assert len(sw.groups) == 1 and sw.groups[0]["batched_leaves"] == [".prices.vol", ".liquidation.fee_rate"]
    assert len(compiles) == 1, compiles
    assert sw.manifest["compiles"] == 1 and sw.manifest["kind"] == "sweep"


def test_common_random_numbers_shrink_the_difference_se(batched):
    """vol 0.80 vs 0.85 (set 2) or 1.2 (set 4, for the liquidation counts) on the same paths: the paired SE of
    the difference is below the SE of two independent runs, sqrt(se_0^2 + se_s^2) (for means of per-path
    values well below: measured 0.12-0.54 of it); set 0's difference is exactly zero. Between vol 0.80 and 0.85
    only 8 of the 400 paths change whether they liquidate: too few to carry a paired SE (NaN)."""
    from perpjax.metrics import MIN_TAIL_PATHS

    _, sw, _ = batched
    t = sw.table.set_index(["set", "metric"])
    for m, s, below in (("p_any_liquidation", 4, 0.6), ("expected_liquidations", 4, 0.6),
                        ("trader_loss_mean", 2, 0.5), ("trader_loss_es_95", 2, 1.0), ("trader_loss_var_95", 2, 1.0)):
        independent = math.hypot(t.loc[(0, m), "se"], t.loc[(s, m), "se"])  # set 2: vol 0.85, set 4: 1.2; fee 0
        assert 0 < t.loc[(s, m), "diff_se"] < below * independent, m
        assert t.loc[(0, m), "diff_vs_base"] == 0 and t.loc[(0, m), "diff_se"] == 0
    d = sw.outcomes[2].path_trader_loss - sw.outcomes[0].path_trader_loss  # the textbook paired SE
    assert t.loc[(2, "trader_loss_mean"), "diff_se"] == pytest.approx(d.std(ddof=1) / math.sqrt(d.size), rel=1e-12)
    flips = np.count_nonzero((sw.outcomes[2].path_n_liquidations > 0) != (sw.outcomes[0].path_n_liquidations > 0))
    assert 0 < flips < MIN_TAIL_PATHS and math.isnan(t.loc[(2, "p_any_liquidation"), "diff_se"])


def test_no_paired_se_from_too_few_differing_paths():
    """A paired SE rests on the paths whose values differ between the sets (beyond the VaR, for an ES): below
    ``MIN_TAIL_PATHS`` of them it is NaN, not the near-zero sd of a few paths; at the minimum it is given."""
    from perpjax.metrics import MIN_TAIL_PATHS
    from perpjax.sweep.table import diff_se, mean_se

    rng = np.random.default_rng(4)
    x0 = (rng.random(1000) < 0.3).astype(float)
    for k in (1, MIN_TAIL_PATHS - 1, MIN_TAIL_PATHS):
        x = x0.copy()
        x[np.flatnonzero(x0 == 0)[:k]] = 1.0  # k paths flip: a difference of k / n
        assert math.isnan(diff_se("mean", x, x0)) == (k < MIN_TAIL_PATHS), k
    assert math.isnan(mean_se(np.r_[np.ones(MIN_TAIL_PATHS - 1), np.zeros(500)]))  # a 9-in-509 probability
    assert mean_se(np.r_[np.ones(MIN_TAIL_PATHS), np.zeros(500)]) > 0
    loss0 = np.r_[np.zeros(995), np.arange(1.0, 6.0)]  # 5 paths beyond the 99 % VaR in either set
    assert math.isnan(diff_se(("es", 0.99), loss0 * 1.1, loss0))
    loss = rng.exponential(1.0, 1000)
    assert diff_se(("es", 0.99), loss * 1.1, loss) > 0


def test_sweep_plots_show_the_paired_difference_to_the_base_set():
    """The sweep's charts plot each set's difference to set 0 with its 95 % paired interval (± 1.96 diff_se),
    a hollow point without a bar where the paired SE is NaN, and set 0 as a star at 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from perpjax.sweep.plots import Z95, plot_differences

    fig, ax = plt.subplots()
    x, d, se = np.array([0.8, 1.0, 1.2]), np.array([0.0, 2.0, 5.0]), np.array([0.0, 0.5, np.nan])
    plot_differences(ax, x, d, se, np.array([True, False, False]))
    bars = [c for c in ax.containers if isinstance(c, matplotlib.container.ErrorbarContainer)]
    assert len(bars) == 1
    (seg,) = bars[0].lines[2][0].get_segments()  # the one bar: set 1, its difference +- 1.96 SE
    np.testing.assert_allclose(seg, [[1.0, 2.0 - Z95 * 0.5], [1.0, 2.0 + Z95 * 0.5]])
    marks = {ln.get_marker(): ln for ln in ax.lines}
    np.testing.assert_array_equal(marks["*"].get_xydata(), [[0.8, 0.0]])  # the base set
    hollow = [ln for ln in ax.lines if ln.get_marker() == "o" and ln.get_markerfacecolor() == "white"]
    assert len(hollow) == 1 and hollow[0].get_xydata().tolist() == [[1.2, 5.0]]
    plt.close(fig)


def test_shape_changing_key_runs_as_its_own_group():
    """liquidation.mode is static: two compiled groups, named in the manifest, each set equal to its own run
    within 1e-14 relative. Mode "buffer" is not bit for bit: its per-path values differ by a few ulp (measured
    <= 1.4e-15 relative) with the batch size, as ``engine.simulate`` itself does between chunk sizes 200 and 50
    (XLA:CPU blocks a step's positions-to-units sums differently per batch size: see test_devices.py)."""
    base = tiny(paths=200)
    sw, compiles = sweep(base, ["liquidation.mode=full,buffer", "assets.0.vol=0.8,1.2"])
    assert [g["sets"] for g in sw.groups] == [[0, 1], [2, 3]]  # first grid key slowest
    assert sw.manifest["structural_keys"] == ["liquidation.mode"]
    assert len(compiles) == 2
    assert_equals_run(base, sw, rtol=1e-14)


@pytest.mark.parametrize("grid, named", [
    ("assets.0.vool=0.8,0.9", "assets[0].vool: unknown key"),
    ("assets.0.vol=0.8,-1", "sweep set 1 (assets.0.vol=-1): assets[0].vol: must be >= 0"),
    ("assets.3.vol=0.8", "assets.3: no such list index"),
    ("seed=1,2", "seed: cannot vary in a sweep"),
])
def test_bad_grid_exit_2_nothing_written(tmp_path, capsys, grid, named):
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny(50)))
    out = tmp_path / "out"
    assert main(["sweep", str(cfg), "--grid", grid, "--out", str(out), "--no-progress"]) == 2
    assert named in capsys.readouterr().err
    assert not out.exists()


def test_cli_table_outputs(tmp_path, capsys):
    """--table rows: the tidy CSV and Parquet hold the same table, a PNG per metric, the manifest."""
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny(100)))
    table = tmp_path / "sets.csv"
    table.write_text("assets.0.vol,liquidation.mode\n0.8,full\n1.0,full\n1.2,buffer\n")
    out = tmp_path / "out"
    assert main(["sweep", str(cfg), "--table", str(table), "--out", str(out), "--no-progress"]) == 0
    assert "2 compiled group(s)" in capsys.readouterr().out
    csv = pd.read_csv(out / "sweep.csv")
    assert list(csv.columns) == ["set", "assets.0.vol", "liquidation.mode", "metric", "value", "se",
                                 "diff_vs_base", "diff_se"]
    pq = pd.read_parquet(out / "sweep.parquet")
    pd.testing.assert_frame_equal(pq, csv, check_dtype=False)
    assert sorted(p.name for p in out.glob("sweep_*.png")) == sorted(f"sweep_{m}.png" for m in METRICS)
    m = json.loads((out / "manifest.json").read_text())
    assert m["kind"] == "sweep" and m["grid"] == {"assets.0.vol": ["0.8", "1.0", "1.2"],
                                                  "liquidation.mode": ["full", "full", "buffer"][::2]}


def test_grid_parsing():
    assert parse_grid(["a.b=1,[2,3],x"]) == {"a.b": ["1", "[2,3]", "x"]}
    with pytest.raises(ConfigError, match="--grid a: given twice"):
        parse_grid(["a=1", "a=2"])
    with pytest.raises(ConfigError, match="not both"):
        set_texts({"a": ["1"]}, [{"a": "1"}])


DEVICES_SCRIPT = """
import numpy as np, jax
from perpjax.config import apply_overrides
from perpjax.sweep import build_sets, parse_grid, run_sweep, set_texts
from tests.test_sweep import PER_PATH, tiny
assert jax.local_device_count() == 4, jax.devices()
grid = set_texts(parse_grid(["assets.0.vol=0.8,1.0,1.2"]))
runs = {}
for d in (1, 4):
    base = apply_overrides(tiny(200), [f"devices={d}"])
    runs[d] = run_sweep(base, build_sets(base, grid))
assert runs[4].groups[0]["chunk_paths_per_set"] % 4 == 0
for a, b in zip(runs[1].outcomes, runs[4].outcomes):
    for f in PER_PATH:  # float64: to rounding, as test_devices.py states for simulate
        np.testing.assert_allclose(getattr(a, f), getattr(b, f), rtol=1e-13, atol=0, err_msg=f)
print("SAME")
"""


def test_sweep_on_four_devices_equals_one():
    """The flat (sets x paths) axis sharded over 4 forced host devices gives the one-device sweep."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "PYTHONPATH": str(root)}
    r = subprocess.run([sys.executable, "-c", DEVICES_SCRIPT], env=env, capture_output=True, text=True, timeout=600,
                       cwd=root)
    assert r.returncode == 0 and "SAME" in r.stdout, r.stderr[-3000:]
