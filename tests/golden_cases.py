"""Reference runs stored in ``tests/golden/``: every later build must reproduce them.

Each stored case keeps its summary, its per-account and per-path tables, the machine that wrote it
(``provenance``: CPU model, jax, jaxlib, numpy) and the size of its computation (``tolerance``: the
engine's dtype, the number of time steps, the optimisers' stopping step for fitted values).

How a build is compared (``compare``):

* **Exact tier.** On the machine that wrote the file (same CPU model, same jax, jaxlib and numpy)
  XLA compiles the same program to the same instructions, so the result must be the same bit for bit.
  A one-ulp change of an input parameter fails here (``tests/test_golden.py``).
* **Rounding tier.** Elsewhere XLA compiles for another CPU (instruction choice, FMA contraction,
  vector width and so reduction order differ), and float results may move by rounding. Then:

  - strings, booleans and integers (counts of liquidations, path indices, ...) must be equal;
  - a float ``x`` must satisfy ``|x_now - x_stored| <= 2 gamma_n S`` with ``gamma_n = n u / (1 - n u)``,
    ``u = eps(dtype) / 2`` the unit roundoff of the engine's dtype (float32: 5.96e-8, float64:
    1.11e-16) and ``n`` the case's number of time steps: Higham's forward-error bound for a chain of
    ``n`` accumulations (Accuracy and Stability of Numerical Algorithms, 2nd ed., eq. 4.4,
    ``|s_hat - s| <= gamma_(n-1) sum|x_i|``), doubled because both builds carry it. ``S`` stands for
    ``sum |x_i|``, the magnitude of what the value is accumulated from: for a per-path or per-account
    column, its largest absolute value; for a summary metric of a column (its key begins with the
    column's name: a mean, quantile, ES or SE of it, each 1-Lipschitz in the largest per-path change),
    that column's scale; for a probability or a share (range [0, 1]), 1; otherwise the value itself.
    For the default book's 1,440 one-minute steps in float32 the bound is 1.7e-4 S; in float64 3.2e-13 S.
  - values fitted by an optimiser are determined only to its stopping step (``estimate.garch.XATOL``,
    ``estimate.tails.XATOL``), not to rounding: a case that fits allows ``xatol * max(1, |x|)`` more.

  What the rounding tier cannot see, by construction: a change of an input below the rounding the
  bound allows (one ulp of a float32 parameter moves the outputs as much as another CPU does; measured
  in ``docs/testing.md``). What it does see: any changed count, a liquidation added or removed on one
  path, and an input moved by more than the bound (a 1e-4 relative change of a vol over 120 steps).

A stored result changes only in a commit that says why. Regenerate with
``python -m tests.golden_cases --write`` (x64 on, as in the test suite); ``python -m tests.golden_cases``
compares and prints the tier and the largest deviation relative to its bound for every case.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
from pathlib import Path

import numpy as np
import pandas as pd

GOLDEN = Path(__file__).parent / "golden"
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "binance_usdm_perp_1h.csv.gz"
TIMING = {"path_steps_per_second", "wall_seconds"}
MECH = ["liquidation.adl=true", "liquidation.fairness=true"]


def run_case(config, overrides=(), paths=2000, scenario=None):
    from perpjax import config as C
    from perpjax.api import run

    cfg = C.load_config(config, overrides)
    if scenario is not None:
        cfg = C.apply_scenario(cfg, scenario)
    r = run(cfg, paths=paths, seed=7)
    summary = {k: v for k, v in r.summary.items() if k not in TIMING}
    return {"summary": summary, "accounts": r.accounts, "paths": r.paths,
            "tolerance": {"dtype": str(cfg.get("dtype", "float32")), "steps": int(r.outcome.n_steps)}}


def _calibration(tmp):
    from perpjax.calibrate import run_calibration

    out = run_calibration(None, overrides=["time.horizon_seconds=7200", "calibration={iterations: 3, paths: 64, "
                                           "eval_paths: 256, block_steps: 30, assets: [BTC, ETH]}"],
                          out_dir=tmp, log=None)
    hist = pd.DataFrame(out["history"]).drop(columns=[c for c in pd.DataFrame(out["history"]) if "second" in c])
    metrics = {k: v for k, v in out["metrics"].items() if k not in TIMING}
    return {"summary": metrics, "accounts": out["ladder"], "paths": hist,
            "tolerance": {"dtype": "float32", "steps": 7200 // 60}}


def _fit(tmp):
    from perpjax import config as C
    from perpjax import estimate as F
    from perpjax.estimate import garch, tails

    closes = F.read_prices(DATA)
    fit = F.fit_market(closes, ["BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT"], start="2022-01-01", end="2022-07-01")
    cfg = F.market_config(fit, ["BTC", "ETH", "SOL", "DOGE"], C.load_config())
    lo, hi = (int(pd.Timestamp(t, tz="UTC").timestamp()) for t in ("2022-01-01", "2022-07-01"))
    bars = int(((closes.index >= lo) & (closes.index < hi)).sum())
    return {"summary": json.loads(json.dumps(cfg, default=float)), "accounts": fit.summary_table(), "paths": None,
            "tolerance": {"dtype": "float64", "steps": bars, "xatol": max(garch.XATOL, tails.XATOL)}}


CASES = {
    "default": lambda tmp: run_case(None),
    "workload": lambda tmp: run_case(ROOT / "benchmarks" / "workload.yaml"),
    "float64": lambda tmp: run_case(None, ["dtype=float64"], paths=500),
    "mode_full_adl_fair": lambda tmp: run_case(None, MECH),
    "mode_buffer_adl_fair": lambda tmp: run_case(None, ["liquidation.mode=buffer", *MECH]),
    "mode_tier_step_adl_fair": lambda tmp: run_case(None, ["liquidation.mode=tier_step", *MECH]),
    "mode_fraction_adl_fair": lambda tmp: run_case(None, ["liquidation.mode=fraction",
                                                           "liquidation.cooldown_seconds=120", *MECH]),
    "mechanics_backstop_throttle": lambda tmp: run_case(None, [
        "liquidation.backstop_fraction_of_mm=0.66", "liquidation.throttle_notional_per_step=200000",
        "liquidation.delay_seconds=60", "liquidation.depth_vol_elasticity=1.0", "liquidation.forced_cost=0.001",
        "liquidation.ledger=true", "time.horizon_seconds=21600"]),
    "bridge": lambda tmp: run_case(None, ["liquidation.bridge=true", "time.horizon_seconds=21600"]),
    "cascade_crash": lambda tmp: run_case(None, scenario="crash_20pct_1h", paths=1000),
    "regimes_garch": lambda tmp: run_case(None, scenario="correlated_selloff", paths=1000),
    "replay_2022_11_08": lambda tmp: run_case(None, scenario="replay_2022_11_08", paths=500),
    "calibration": _calibration,
    "fit": _fit,
}
NEEDS_DATA = {"replay_2022_11_08", "fit"}


def provenance() -> dict:
    """What decides the compiled instructions: the CPU model and the jax, jaxlib and numpy versions."""
    import jax
    import jaxlib

    cpu = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            k, _, v = line.partition(":")
            k = k.strip()
            if k in ("vendor_id", "cpu family", "model", "model name", "stepping", "flags") and k not in cpu:
                cpu[k] = v.strip()
    except OSError:
        pass
    name = " / ".join(cpu[k] for k in ("vendor_id", "model name", "cpu family", "model", "stepping") if k in cpu)
    # a VM may expose another instruction set under the same model name: XLA compiles for what it sees
    flags = hashlib.sha256(" ".join(sorted(cpu.get("flags", "").split())).encode()).hexdigest()[:16]
    return {"cpu": name or platform.processor() or platform.machine(), "cpu_flags_sha256": flags,
            "machine": platform.machine(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "numpy": np.__version__}


def _frame_arrays(df):
    if df is None:
        return {}
    return {c: df[c].to_numpy() for c in df.columns}


def _arrays(res) -> dict:
    arrays = {f"accounts__{k}": v for k, v in _frame_arrays(res["accounts"]).items()}
    arrays.update({f"paths__{k}": v for k, v in _frame_arrays(res["paths"]).items()})
    return {k: (v.astype(str) if v.dtype == object else v) for k, v in arrays.items()}


def save(name, res):
    doc = {"provenance": provenance(), "tolerance": res["tolerance"], "summary": res["summary"]}
    (GOLDEN / f"{name}.json").write_text(json.dumps(doc, indent=1, sort_keys=True, default=str) + "\n")
    np.savez_compressed(GOLDEN / f"{name}.npz", **_arrays(res))


def stored_from(res) -> dict:
    """A fresh result in the stored form (as ``load`` returns it), written by this machine."""
    doc = json.loads(json.dumps({"provenance": provenance(), "tolerance": res["tolerance"],
                                 "summary": res["summary"]}, sort_keys=True, default=str))
    doc["arrays"] = _arrays(res)
    return doc


def load(name) -> dict:
    """The stored case: {provenance, tolerance, summary, arrays}."""
    doc = json.loads((GOLDEN / f"{name}.json").read_text())
    with np.load(GOLDEN / f"{name}.npz") as z:
        doc["arrays"] = {k: z[k] for k in z.files}
    return doc


def _leaves(d, path=""):
    if isinstance(d, dict):
        for k in sorted(d):
            yield from _leaves(d[k], f"{path}.{k}" if path else str(k))
    elif isinstance(d, (list, tuple)):
        for i, v in enumerate(d):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, d


def _is_float(v) -> bool:
    return isinstance(v, float)


def _is_fraction(key: str) -> bool:
    leaf = key.rsplit(".", 1)[-1].split("__")[-1]
    return leaf.startswith("p_") or "_share" in leaf or leaf.startswith("share") or "probability" in leaf


class Bound:
    """The rounding tier's allowance for one stored case (see the module docstring)."""

    def __init__(self, tolerance: dict, arrays: dict):
        u = float(np.finfo(np.dtype(tolerance["dtype"])).eps) / 2
        n = max(int(tolerance["steps"]), 1)
        self.gamma2 = 2 * n * u / (1 - n * u)
        self.xatol = float(tolerance.get("xatol", 0.0))
        self.scales = {}
        for k, v in arrays.items():
            if v.dtype.kind == "f" and v.size:
                col = k.split("__", 1)[1]
                finite = np.abs(v[np.isfinite(v)])
                self.scales[col] = max(self.scales.get(col, 0.0), float(finite.max()) if finite.size else 0.0)

    def column_scale(self, key: str) -> float | None:
        leaf = key.rsplit(".", 1)[-1]
        best = None
        for col in self.scales:
            if leaf == col or leaf.startswith(col + "_"):
                if best is None or len(col) > len(best):
                    best = col
        return None if best is None else self.scales[best]

    def allowed(self, key: str, want: float, scale: float | None = None) -> float:
        """Largest |now - stored| allowed for the float ``want`` stored under ``key``."""
        if scale is None:
            scale = 1.0 if _is_fraction(key) else self.column_scale(key)
        if scale is None:
            scale = abs(want)
        return self.gamma2 * scale + self.xatol * max(1.0, abs(want))

    def column_allowed(self, key: str, arrays: dict):
        """The allowance for every row of the stored float column ``key`` (a scalar or one per row).
        A per-account share of liquidation events (``*_share``) may also move by one event of that
        account: partial modes leave an account at its margin threshold, so the next check that
        classifies the event (e.g. a mark-lag artefact: equity vs MM at the delayed mark) is decided at
        a tie that rounding can tip either way (measured: one flip in ~5,900 events between two CPUs)."""
        col = key.split("__", 1)[1]
        lim = self.allowed(key, 0.0, scale=1.0 if _is_fraction(col) else self.scales.get(col, 0.0))
        events = arrays.get("accounts__expected_liquidation_events")
        paths = next((v.size for k, v in arrays.items() if k.startswith("paths__")), 0)
        if key.startswith("accounts__") and col.endswith("_share") and events is not None and paths:
            with np.errstate(divide="ignore"):
                lim = lim + np.where(events > 0, 1.0 / np.maximum(events * paths, 1.0), 0.0)
        return lim


def _same_float(a, b) -> bool:
    return a == b or (a is not None and b is not None and math.isnan(a) and math.isnan(b))


def _to_float(v):
    """JSON null and "NaN" strings stand for a value that could not be estimated."""
    if v is None:
        return math.nan
    return float(v)


def _check(stored: dict, res: dict, exact: bool) -> tuple[list[str], float]:
    """(every difference its tier does not allow, worst first, as readable lines; the largest
    |now - stored| / allowed over the case's floats, 0 when equal)."""
    bad, worst = [], 0.0
    got = json.loads(json.dumps(res["summary"], sort_keys=True, default=str))
    want_leaves, got_leaves = dict(_leaves(stored["summary"])), dict(_leaves(got))
    bound = Bound(stored["tolerance"], stored["arrays"])
    for k in sorted(set(want_leaves) | set(got_leaves)):
        if k not in got_leaves or k not in want_leaves:
            bad.append((math.inf, f"summary {k}: {'missing now' if k not in got_leaves else 'not stored'}"))
            continue
        w, g = want_leaves[k], got_leaves[k]
        if exact or not (_is_float(w) or _is_float(g)) or isinstance(w, bool) or isinstance(g, bool):
            if not (w == g or (_is_float(w) and _is_float(g) and _same_float(w, g))):
                bad.append((math.inf, f"summary {k}: stored {w!r} != now {g!r}"))
            continue
        w, g = _to_float(w), _to_float(g)
        if _same_float(w, g):
            continue
        lim = bound.allowed(k, w)
        d = abs(g - w)
        ratio = d / lim if lim > 0 else math.inf
        worst = max(worst, ratio)
        if not d <= lim:
            bad.append((ratio, f"summary {k}: stored {w!r}, now {g!r}, |diff| {d:.3g} > allowed {lim:.3g}"))
    now = _arrays(res)
    if sorted(now) != sorted(stored["arrays"]):
        bad.append((math.inf, f"columns differ: stored {sorted(stored['arrays'])}, now {sorted(now)}"))
    for k in sorted(set(now) & set(stored["arrays"])):
        w, g = stored["arrays"][k], now[k]
        if w.shape != g.shape:
            bad.append((math.inf, f"{k}: shape stored {w.shape}, now {g.shape}"))
            continue
        if exact or w.dtype.kind not in "f" or g.dtype.kind not in "f":
            if w.dtype.kind in "f" and g.dtype.kind in "f":
                diff = ~((w == g) | (np.isnan(w) & np.isnan(g)))
            else:
                diff = w != g
            if diff.any():
                i = int(np.flatnonzero(diff)[0])
                bad.append((math.inf, f"{k}: {int(diff.sum())} of {diff.size} differ (first at row {i}: "
                                      f"stored {w[i]!r}, now {g[i]!r})"))
            continue
        nan_mismatch = np.isnan(w) != np.isnan(g)
        with np.errstate(invalid="ignore"):
            d = np.where(np.isnan(w) | np.isnan(g), 0.0, np.abs(g.astype(float) - w.astype(float)))
        lim = np.broadcast_to(bound.column_allowed(k, stored["arrays"]), d.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(nan_mismatch, np.inf, np.where(d > 0, d / lim, 0.0))
        if ratio.size:
            worst = max(worst, float(ratio.max()))
        over = (d > lim) | nan_mismatch
        if over.any():
            i = int(np.argmax(ratio))
            bad.append((float(ratio[i]), f"{k}: {int(over.sum())} of {over.size} rows beyond the bound (worst row "
                                         f"{i}: stored {w[i]!r}, now {g[i]!r}, |diff| {d[i]:.3g} > allowed "
                                         f"{lim[i]:.3g})"))
    return [line for _, line in sorted(bad, key=lambda t: -t[0])], worst


def deviations(stored: dict, res: dict, exact: bool) -> list[str]:
    """Every difference between a stored case and a new result that its tier does not allow,
    worst first, as readable lines; empty when the result reproduces the stored one."""
    return _check(stored, res, exact)[0]


def same_machine(stored: dict) -> bool:
    return stored.get("provenance") == provenance()


def worst_ratio(stored: dict, res: dict) -> float:
    """The largest |now - stored| / allowed over every float of the case (0 when equal): how close the
    rounding tier came to failing."""
    return _check(stored, res, False)[1]


def compare(name, res, *, tier: str = "auto", stored: dict | None = None) -> str:
    """Assert ``res`` reproduces the stored case ``name``; returns the tier used ("exact" or "rounding").
    ``tier="auto"``: exact on the machine that wrote the file, rounding elsewhere."""
    stored = load(name) if stored is None else stored
    exact = same_machine(stored) if tier == "auto" else tier == "exact"
    bad = deviations(stored, res, exact)
    where = "exact (same CPU and versions as the stored file)" if exact else (
        f"rounding (stored on {stored['provenance']['cpu']}, jax {stored['provenance']['jax']}; "
        f"now {provenance()['cpu']}, jax {provenance()['jax']})")
    assert not bad, f"{name}: {len(bad)} difference(s), tier {where}:\n  " + "\n  ".join(bad[:12])
    return "exact" if exact else "rounding"


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
            stored = load(name)
            ratio = worst_ratio(stored, res)
            exact_ok = not deviations(stored, res, True)
            tier = compare(name, res, stored=stored)
            print(f"{name}: {tier} tier passes; bit for bit: {exact_ok}; largest deviation {ratio:.3g} of its "
                  "rounding bound", flush=True)
