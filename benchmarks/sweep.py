"""Sweep throughput per parameter set vs a single run, on the benchmark workload (issue 14).

    python benchmarks/sweep.py [--paths 2000] [--repeats 2] [--sets 16]

16 parameter sets (BTC vol x liquidation fee rate, array values only: one compiled group) run as one
batched kernel (``perpjax.sweep.run_group``) against one run of set 0 (``engine.simulate``), same paths and
chunking rule. Compile (+ first run) and run time separately, best of N (alternating), one JSON line per case, then the
ratio: (sweep seconds / sets) / (single-run seconds); 1.0 = a set in a sweep costs what a run costs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax

import perpjax  # noqa: F401
from perpjax.config import apply_overrides, load_config
from perpjax.engine import simulate
from perpjax.io import cpu_model
from perpjax.sweep import build_sets, parse_grid, run_group, set_texts

WORKLOAD = Path(__file__).resolve().parent / "workload.yaml"
VOLS = ("0.5", "0.55", "0.6", "0.65", "0.7", "0.75", "0.8", "0.85")
FEES = ("0.004", "0.005", "0.006", "0.007")


def timed(fns, repeats: int):
    """Per function: first call seconds (compile + run), best wall seconds and best process CPU seconds (all
    threads) of ``repeats`` later calls. The later calls alternate between the functions, so a noisy machine
    slows each alike; CPU seconds are less sensitive to other processes than wall seconds."""
    first, wall, cpu = [], [float("inf")] * len(fns), [float("inf")] * len(fns)
    for fn in fns:
        t0 = time.perf_counter()
        fn()
        first.append(time.perf_counter() - t0)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[i] = min(wall[i], time.perf_counter() - t0)
            cpu[i] = min(cpu[i], time.process_time() - c0)
    return first, wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paths", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--sets", type=int, default=16, choices=(2, 4, 8, 16, 32))
    ap.add_argument("--chunk", help="chunk_size of the config (default: the workload's, 100000); a sweep's chunk "
                                    "per set is it divided by the sets")
    a = ap.parse_args()
    base = apply_overrides(load_config(WORKLOAD), [f"paths={a.paths}"] + ([f"chunk_size={a.chunk}"] if a.chunk
                                                                             else []))
    n_vol = max(1, a.sets // len(FEES))
    grid = [f"assets.0.vol={','.join(VOLS[:n_vol])}", f"liquidation.fee_rate={','.join(FEES[:a.sets // n_vol])}"]
    sets = build_sets(base, set_texts(parse_grid(grid)))
    models = [s.model for s in sets]
    r0 = sets[0].resolved
    steps = models[0].grid.n_steps
    common = {"paths": a.paths, "steps": steps, "chunk_size": r0["chunk_size"], "cpu": cpu_model(),
              "device": jax.devices()[0].device_kind, "jax": jax.__version__, "dtype": r0["dtype"]}

    def single():
        return simulate(models[0], seed=r0["seed"], n_paths=a.paths, chunk_size=r0["chunk_size"])

    def sweep():
        return run_group(models, seed=r0["seed"], n_paths=a.paths, chunk_size=r0["chunk_size"])

    (f1, fs), (b1, bs), (c1, cs) = timed([single, sweep], a.repeats)
    print(json.dumps({"case": "single run", "sets": 1, **common, "compile_plus_first_s": round(f1, 3),
                      "run_s": round(b1, 3), "cpu_s": round(c1, 3), "path_steps_per_s": a.paths * steps / b1}))
    print(json.dumps({"case": "sweep", "sets": len(sets), **common, "compile_plus_first_s": round(fs, 3),
                      "run_s": round(bs, 3), "cpu_s": round(cs, 3), "seconds_per_set": round(bs / len(sets), 4),
                      "path_steps_per_s_all_sets": a.paths * steps * len(sets) / bs}))
    print(json.dumps({"case": "ratio", "sets": len(sets),
                      "sweep_seconds_per_set_over_single_run": round(bs / len(sets) / b1, 3),
                      "cpu_seconds_per_set_over_single_run": round(cs / len(sets) / c1, 3),
                      "speedup_vs_separate_runs": round(b1 * len(sets) / bs, 3)}))


if __name__ == "__main__":
    main()
