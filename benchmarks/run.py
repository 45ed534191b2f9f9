"""Benchmark harness: perpjax vs the NumPy reference on the same workload, one JSON line per case.

    python benchmarks/run.py [--paths 100000] [--repeats 3] [--unroll 1] [--skip-numpy]

Reports compile and run time separately (best of N, blocked until ready),
path-steps/s, device kind, JAX version, dtype, peak memory, and the ratio to
NumPy measured in the same run. The two estimates of P(liquidation) are printed
side by side as a sanity check (different random streams: they agree within MC error).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import reference_numpy

import perpjax  # noqa: F401
from perpjax.config import build_model, load_config
from perpjax.engine import simulate_chunk
from perpjax.random import seed_key


def peak_memory_bytes():
    dev = jax.devices()[0]
    try:
        return int(dev.memory_stats()["peak_bytes_in_use"])
    except Exception:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def bench_perpjax(paths, repeats, unroll, config, overrides=()):
    model, _, cfg = build_model(load_config(config, overrides))
    key = seed_key(0)
    t0 = time.perf_counter()
    out = simulate_chunk(model, key, jnp.uint32(0), paths, unroll=unroll)
    jax.block_until_ready(out)
    first = time.perf_counter() - t0
    runs = []
    for r in range(repeats):
        t0 = time.perf_counter()
        out = simulate_chunk(model, key, jnp.uint32(paths * (r + 1)), paths, unroll=unroll)
        jax.block_until_ready(out)
        runs.append(time.perf_counter() - t0)
    best = min(runs)
    steps = model.grid.n_steps
    p = float((np.asarray(out.acct.liq_step) > 0).mean())
    return {"case": "perpjax", "config": str(config), "overrides": list(overrides), "paths": paths, "steps": steps,
            "units": model.n_units, "unroll": unroll, "compile_plus_first_s": first, "run_best_s": best,
            "path_steps_per_s": paths * steps / best, "p_liquidation": p,
            "p_liquidation_se": math.sqrt(p * (1 - p) / paths), "dtype": cfg["dtype"],
            "device": jax.devices()[0].device_kind, "platform": jax.devices()[0].platform,
            "jax": jax.__version__, "peak_memory_bytes": peak_memory_bytes()}


def bench_numpy(paths, repeats):
    runs = []
    for r in range(repeats):
        t0 = time.perf_counter()
        res = reference_numpy.run(paths, seed=r)
        runs.append(time.perf_counter() - t0)
    steps = int(reference_numpy.HORIZON / reference_numpy.STEP)
    return {"case": "numpy_reference", "paths": paths, "steps": steps, "run_best_s": min(runs),
            "path_steps_per_s": paths * steps / min(runs), **res, "numpy": np.__version__}


def _best(f, repeats):
    f()  # compile
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        runs.append(time.perf_counter() - t0)
    return min(runs)


def bench_calibration(paths, repeats):
    """One optimiser step's value-and-gradient vs the hard forward simulation and the relaxed forward,
    default config (12 units, 1 day of 1-minute steps), and XLA's compiled temp memory of the gradient
    with nested checkpointing (blocks of 60 steps) and without (block_steps = 0)."""
    from perpjax import calibrate as C

    model, _, cfg = build_model(load_config(None))
    space = C.LadderSpace.from_model(model, list(range(model.prices.n_assets)), 0.001, 0.25)
    theta = space.init(model)
    key = seed_key(0)
    obj = dict(C.OBJECTIVE_DEFAULTS)
    hard = _best(lambda: jax.block_until_ready(simulate_chunk(model, key, jnp.uint32(0), paths)), repeats)
    out = []
    base = {"paths": paths, "steps": model.grid.n_steps, "units": model.n_units, "dtype": cfg["dtype"],
            "device": jax.devices()[0].device_kind, "jax": jax.__version__}
    out.append({"case": "calibration_hard_forward", **base, "run_best_s": hard})
    for block in (60, 0):
        loss = C.make_loss(model, space, obj, 1e-4, paths, block)
        fwd = jax.jit(lambda th, loss=loss: loss(th, key, jnp.uint32(0))[0])
        vg = jax.jit(jax.value_and_grad(lambda th, loss=loss: loss(th, key, jnp.uint32(0))[0]))
        mem = vg.lower(theta).compile().memory_analysis()
        temp = getattr(mem, "temp_size_in_bytes", None) if mem is not None else None
        t_f = _best(lambda fwd=fwd: jax.block_until_ready(fwd(theta)), repeats)
        t_g = _best(lambda vg=vg: jax.block_until_ready(vg(theta)), repeats)
        out.append({"case": f"calibration_step_block{block}", **base, "relaxed_forward_s": t_f,
                    "value_and_grad_s": t_g, "step_over_hard_forward": t_g / hard,
                    "step_over_relaxed_forward": t_g / t_f, "grad_temp_bytes": temp})
    return out


_CHILD = """
import json, resource, sys, time
mode, paths, out, overrides = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
t0 = time.perf_counter()
if mode == "cli":
    from perpjax.cli import main
    sets = [x for o in overrides for x in ("--set", o)]
    rc = main(["simulate", "--paths", str(paths), "--seed", "0", "--out", out, "--no-progress", *sets])
    assert rc == 0, rc
    s = json.load(open(out + "/summary.json"))
else:
    import perpjax
    s = perpjax.run(None, overrides=overrides, paths=paths, seed=0).summary
wall = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print("RESULT", json.dumps({"wall_s": wall, "peak_rss_bytes": rss, "bad_debt_es_99": s["bad_debt_es_99"],
                            "trader_loss_es_99": s["trader_loss_es_99"]}))
"""


def bench_memory(path_counts, overrides, modes=("cli", "api")):
    """Peak RSS and wall time of a whole run in a fresh process: ``perpjax simulate --out`` (per-chunk
    Parquet results: memory bounded by the chunk plus one column at the end) and the in-memory API
    (``perpjax.run`` without an out dir: every per-path array in memory)."""
    import subprocess
    import tempfile

    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        pass
    for n in path_counts:
        for mode in modes:
            with tempfile.TemporaryDirectory() as tmp:
                r = subprocess.run([sys.executable, "-c", _CHILD, mode, str(n), tmp + "/out", json.dumps(overrides)],
                                   capture_output=True, text=True)
                if r.returncode != 0:
                    print(json.dumps({"case": f"memory_{mode}", "paths": n, "error": r.stderr[-2000:]}), flush=True)
                    continue
                res = json.loads(next(x for x in r.stdout.splitlines() if x.startswith("RESULT"))[7:])
                disk = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
            print(json.dumps({"case": f"memory_{mode}", "paths": n, "overrides": overrides, **res,
                              "peak_rss_mib": res["peak_rss_bytes"] / 2**20, "out_dir_bytes": disk if mode == "cli"
                              else None, "cpu": cpu, "jax": jax.__version__}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--memory", metavar="N1,N2,...",
                    help="only this: peak RSS and wall time of `perpjax simulate --out` vs the in-memory API for "
                         "these path counts (default config, --memory-set overrides), each in a fresh process")
    ap.add_argument("--memory-set", action="append", default=None, metavar="KEY=VALUE",
                    help="config overrides for --memory (default: time.horizon_seconds=3600)")
    ap.add_argument("--memory-modes", default="cli,api")
    ap.add_argument("--paths", type=int, default=100_000)
    ap.add_argument("--numpy-paths", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--unroll", type=int, default=1)
    ap.add_argument("--skip-numpy", action="store_true")
    ap.add_argument("--default-config", action="store_true", help="also time the default config's book")
    ap.add_argument("--cascade", action="store_true",
                    help="time the cascade feedback loop (cascade_book.yaml, 8 assets) for 1,000 and 10,000 "
                         "accounts, as ratios to the same book without feedback")
    ap.add_argument("--cascade-paths", type=int, default=2000)
    ap.add_argument("--calibration", action="store_true",
                    help="cost of one calibration step (value and gradient of the relaxed engine) vs one forward "
                         "simulation of the same size, and compiled memory with and without checkpointing")
    ap.add_argument("--calibration-paths", type=int, default=2000)
    ap.add_argument("--mechanics", action="store_true",
                    help="time the default book with each liquidation path and the full venue mechanics, "
                         "as ratios to the default book with full close")
    a = ap.parse_args()
    if a.memory:
        bench_memory([int(float(x)) for x in a.memory.split(",")], a.memory_set or ["time.horizon_seconds=3600"],
                     tuple(a.memory_modes.split(",")))
        return
    wl = Path(__file__).resolve().parent / "workload.yaml"
    pj = bench_perpjax(a.paths, a.repeats, a.unroll, wl)
    print(json.dumps(pj), flush=True)
    if a.default_config:
        print(json.dumps(bench_perpjax(a.paths, a.repeats, a.unroll, None)), flush=True)
    if a.mechanics:
        base = bench_perpjax(a.paths, a.repeats, a.unroll, None)
        print(json.dumps(base), flush=True)
        full_stack = ["liquidation.adl=true", "liquidation.fairness=true", "liquidation.backstop_fraction_of_mm=0.6",
                      "liquidation.throttle_notional_per_step=5e6", "liquidation.depth_vol_elasticity=1.0",
                      "guardrails.circuit_breaker={move: 0.05, window_seconds: 300, halt_seconds: 300}"]
        cases = {"buffer": ["liquidation.mode=buffer"], "tier_step": ["liquidation.mode=tier_step"],
                 "fraction": ["liquidation.mode=fraction", "liquidation.cooldown_seconds=60"],
                 "adl": ["liquidation.adl=true", "insurance_fund=1e4"],
                 "full_mechanics": ["liquidation.mode=fraction", "liquidation.cooldown_seconds=60", *full_stack]}
        for name, ov in cases.items():
            r = bench_perpjax(a.paths, a.repeats, a.unroll, None, ov)
            r["case"] = f"perpjax_{name}"
            r["cost_over_core"] = base["path_steps_per_s"] / r["path_steps_per_s"]
            print(json.dumps(r), flush=True)
    if a.cascade:
        cb = Path(__file__).resolve().parent / "cascade_book.yaml"
        for n in (1000, 10000):
            book = [f"book.generate.n_accounts={n}"]
            paths = a.cascade_paths if n == 1000 else max(1, a.cascade_paths // 10)  # similar account-steps
            off = bench_perpjax(paths, a.repeats, a.unroll, cb, [*book, "cascade=null"])
            off["case"] = f"cascade_book_{n}_no_feedback"
            print(json.dumps(off), flush=True)
            on = bench_perpjax(paths, a.repeats, a.unroll, cb, book)
            on["case"] = f"cascade_book_{n}_feedback"
            on["cost_over_no_feedback"] = off["path_steps_per_s"] / on["path_steps_per_s"]
            on["account_steps_per_s"] = on["path_steps_per_s"] * on["units"]
            print(json.dumps(on), flush=True)
    if a.calibration:
        for r in bench_calibration(a.calibration_paths, a.repeats):
            print(json.dumps(r), flush=True)
    if not a.skip_numpy:
        npy = bench_numpy(a.numpy_paths or min(a.paths, 100_000), a.repeats)
        print(json.dumps(npy), flush=True)
        print(json.dumps({"case": "ratio", "perpjax_over_numpy": pj["path_steps_per_s"] / npy["path_steps_per_s"]}))


if __name__ == "__main__":
    main()
