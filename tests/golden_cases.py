"""Reference runs stored bit for bit (``tests/golden/``): every later build must reproduce them.

A stored result changes only in a commit that says why. Regenerate with
``python -m tests.golden_cases --write`` (x64 on, as in the test suite).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

GOLDEN = Path(__file__).parent / "golden"
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "binance_usdm_perp_1h.csv.gz"
TIMING = {"path_steps_per_second", "wall_seconds"}
MECH = ["liquidation.adl=true", "liquidation.fairness=true"]


def _run_case(config, overrides=(), paths=2000, scenario=None):
    from perpjax import config as C
    from perpjax.api import run

    cfg = C.load_config(config, overrides)
    if scenario is not None:
        cfg = C.apply_scenario(cfg, scenario)
    r = run(cfg, paths=paths, seed=7)
    summary = {k: v for k, v in r.summary.items() if k not in TIMING}
    return {"summary": summary, "accounts": r.accounts, "paths": r.paths}


def _calibration(tmp):
    from perpjax.calibrate import run_calibration

    out = run_calibration(None, overrides=["time.horizon_seconds=7200", "calibration={iterations: 3, paths: 64, "
                                           "eval_paths: 256, block_steps: 30, assets: [BTC, ETH]}"],
                          out_dir=tmp, log=None)
    hist = pd.DataFrame(out["history"]).drop(columns=[c for c in pd.DataFrame(out["history"]) if "second" in c])
    metrics = {k: v for k, v in out["metrics"].items() if k not in TIMING}
    return {"summary": metrics, "accounts": out["ladder"], "paths": hist}


def _fit(tmp):
    from perpjax import config as C
    from perpjax import estimate as F

    closes = F.read_prices(DATA)
    fit = F.fit_market(closes, ["BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT"], start="2022-01-01", end="2022-07-01")
    cfg = F.market_config(fit, ["BTC", "ETH", "SOL", "DOGE"], C.load_config())
    return {"summary": json.loads(json.dumps(cfg, default=float)), "accounts": fit.summary_table(), "paths": None}


CASES = {
    "default": lambda tmp: _run_case(None),
    "workload": lambda tmp: _run_case(ROOT / "benchmarks" / "workload.yaml"),
    "float64": lambda tmp: _run_case(None, ["dtype=float64"], paths=500),
    "mode_full_adl_fair": lambda tmp: _run_case(None, MECH),
    "mode_buffer_adl_fair": lambda tmp: _run_case(None, ["liquidation.mode=buffer", *MECH]),
    "mode_tier_step_adl_fair": lambda tmp: _run_case(None, ["liquidation.mode=tier_step", *MECH]),
    "mode_fraction_adl_fair": lambda tmp: _run_case(None, ["liquidation.mode=fraction",
                                                           "liquidation.cooldown_seconds=120", *MECH]),
    "mechanics_backstop_throttle": lambda tmp: _run_case(None, [
        "liquidation.backstop_fraction_of_mm=0.66", "liquidation.throttle_notional_per_step=200000",
        "liquidation.delay_seconds=60", "liquidation.depth_vol_elasticity=1.0", "liquidation.forced_cost=0.001",
        "liquidation.ledger=true", "time.horizon_seconds=21600"]),
    "bridge": lambda tmp: _run_case(None, ["liquidation.bridge=true", "time.horizon_seconds=21600"]),
    "cascade_crash": lambda tmp: _run_case(None, scenario="crash_20pct_1h", paths=1000),
    "regimes_garch": lambda tmp: _run_case(None, scenario="correlated_selloff", paths=1000),
    "replay_2022_11_08": lambda tmp: _run_case(None, scenario="replay_2022_11_08", paths=500),
    "calibration": _calibration,
    "fit": _fit,
}
NEEDS_DATA = {"replay_2022_11_08", "fit"}


def _frame_arrays(df):
    if df is None:
        return {}
    return {c: df[c].to_numpy() for c in df.columns}


def save(name, res):
    (GOLDEN / f"{name}.json").write_text(json.dumps(res["summary"], indent=1, sort_keys=True, default=str) + "\n")
    arrays = {f"accounts__{k}": v for k, v in _frame_arrays(res["accounts"]).items()}
    arrays.update({f"paths__{k}": v for k, v in _frame_arrays(res["paths"]).items()})
    arrays = {k: (v.astype(str) if v.dtype == object else v) for k, v in arrays.items()}
    np.savez_compressed(GOLDEN / f"{name}.npz", **arrays)


def compare(name, res):
    """Assert ``res`` equals the stored result of case ``name`` bit for bit; returns nothing."""
    want = json.loads((GOLDEN / f"{name}.json").read_text())
    got = json.loads(json.dumps(res["summary"], sort_keys=True, default=str))
    assert got == want, _diff(want, got)
    arrays = {f"accounts__{k}": v for k, v in _frame_arrays(res["accounts"]).items()}
    arrays.update({f"paths__{k}": v for k, v in _frame_arrays(res["paths"]).items()})
    with np.load(GOLDEN / f"{name}.npz") as z:
        assert sorted(z.files) == sorted(arrays), (sorted(z.files), sorted(arrays))
        for k in z.files:
            v = arrays[k]
            v = v.astype(str) if v.dtype == object else v
            np.testing.assert_array_equal(v, z[k], err_msg=f"{name}: {k}", strict=False)


def _diff(want, got, path=""):
    if isinstance(want, dict) and isinstance(got, dict):
        for k in sorted(set(want) | set(got)):
            if want.get(k, "<missing>") != got.get(k, "<missing>"):
                return _diff(want.get(k, "<missing>"), got.get(k, "<missing>"), f"{path}.{k}")
    return f"{path}: stored {want!r} != now {got!r}"


if __name__ == "__main__":
    import sys
    import tempfile

    import jax

    import perpjax  # noqa: F401

    jax.config.update("jax_enable_x64", True)
    GOLDEN.mkdir(exist_ok=True)
    only = [a for a in sys.argv[1:] if not a.startswith("--")] or list(CASES)
    for name in only:
        with tempfile.TemporaryDirectory() as tmp:
            res = CASES[name](tmp)
        if "--write" in sys.argv:
            save(name, res)
            print("wrote", name, flush=True)
        else:
            compare(name, res)
            print("same", name, flush=True)
