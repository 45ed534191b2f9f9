"""``run_sweep``: every parameter set on the same paths, grouped into compiled kernels, and the results
written to an output directory (``sweep.csv``, ``sweep.parquet``, ``sweep_<metric>.png``, ``manifest.json``)."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import jax
import pandas as pd

from ..config import ConfigError, apply_overrides, build_model
from ..metrics import summarize
from .batch import group_sets, run_group, structure_key
from .plots import metric_png
from .table import BATCHES, METRICS, sweep_table

RESULT_GLOBS = ("sweep.csv", "sweep.parquet", "manifest.json", "sweep_*.png")


@dataclass
class Sweep:
    """A finished sweep: its sets, the long table, each set's summary and ``Outcome``, groups, manifest."""

    sets: list
    table: pd.DataFrame
    summaries: list
    outcomes: list
    groups: list
    manifest: dict


def structural_keys(base: dict, sets) -> list[str]:
    """The varied keys that change the compiled program: set 0 with only that key changed to one of its
    values has another ``batch.structure_key``."""
    ref = structure_key(sets[0].model)
    found = []
    for key in sets[0].texts:
        for text in dict.fromkeys(s.texts[key] for s in sets):
            cfg = apply_overrides(base, [f"{k}={v}" for k, v in {**sets[0].texts, key: text}.items()])
            try:
                if structure_key(build_model(cfg)[0]) != ref:
                    found.append(key)
                    break
            except (ConfigError, ValueError):
                continue
    return found


def simulate_sets(sets, *, seed: int, n_paths: int, chunk_size="auto", devices=None, progress=None):
    """(outcomes in set order, group records for the manifest): each group of sets as one kernel."""
    outcomes = [None] * len(sets)
    records = []
    for members in group_sets([s.model for s in sets]):
        g = run_group([sets[i].model for i in members], seed=seed, n_paths=n_paths, chunk_size=chunk_size,
                      devices=devices, progress=progress)
        for i, o in zip(members, g.outcomes, strict=True):
            outcomes[i] = o
        kernel = ("sweep_chunk: batched over the sets" if g.batched_leaves else
                  "simulate_chunk: one set" if len(members) == 1 else "simulate_chunk: identical models, run once")
        records.append({"sets": members, "kernel": kernel, "batched_leaves": g.batched_leaves,
                        "chunk_paths_per_set": g.chunk,
                        "compiles": g.compiles, "compile_seconds": round(g.compile_seconds, 3),
                        "wall_seconds": round(g.wall_seconds, 3)})
        # A group's kernels are not needed again: drop them. Each CPU executable JAX keeps holds ~400 memory
        # mappings, and a sweep of ~150 structural groups would reach vm.max_map_count (65,530), where XLA
        # aborts the process (tests/conftest.py does the same per test module).
        jax.clear_caches()
    return outcomes, records


def run_sweep(base: dict, sets, *, out=None, command=None, progress=None) -> Sweep:
    """Run validated ``sets`` (``sets.build_sets`` of ``base``) and, with ``out``, write the results there
    (locked like simulate's out dir; written at the end, manifest last). ``progress(n)``: n more paths
    (over all sets) done."""
    import jax

    if jax.process_count() > 1:
        raise ConfigError(f"sweep: runs in one process (this is process {jax.process_index()} of "
                          f"{jax.process_count()}); it uses every local device of that process")
    r0 = sets[0].resolved
    if out is None:
        return _run(base, sets, r0, command, progress)
    from ..store import OutDir

    with OutDir(out) as d:
        for pattern in RESULT_GLOBS:  # a new sweep must not sit beside an earlier one's numbers
            for p in d.path.glob(pattern):
                p.unlink(missing_ok=True)
        sw = _run(base, sets, r0, command, progress)
        write_sweep(sw, d.path)
    return sw


def _run(base, sets, r0, command, progress=None) -> Sweep:
    t0 = time.perf_counter()
    outcomes, groups = simulate_sets(sets, seed=r0["seed"], n_paths=r0["paths"], chunk_size=r0["chunk_size"],
                                     devices=r0["devices"], progress=progress)
    wall = time.perf_counter() - t0
    summaries = [summarize(o, s.model, s.labels, s.resolved, paths_table=False)[0]
                 for s, o in zip(sets, outcomes, strict=True)]
    table = sweep_table(sets, summaries, outcomes)
    m = _manifest(base, sets, groups, wall, command)
    return Sweep(sets, table, summaries, outcomes, groups, m)


def _manifest(base, sets, groups, wall, command) -> dict:
    from ..io import manifest

    r0 = sets[0].resolved
    keys = list(sets[0].texts)
    grid = {k: list(dict.fromkeys(s.texts[k] for s in sets)) for k in keys}
    n_steps = sets[0].model.grid.n_steps
    extra = {
        "kind": "sweep", "grid": grid, "keys": keys,
        "sets": [{"set": s.index, **s.texts} for s in sets],
        "groups": groups, "structural_keys": structural_keys(base, sets),
        "compiles": sum(g["compiles"] for g in groups),
        "compile_seconds": round(sum(g["compile_seconds"] for g in groups), 3),
        "paths": r0["paths"], "steps": n_steps,
        "path_steps_per_second_per_set": r0["paths"] * n_steps * len(sets) / wall / len(sets),
        "path_steps_per_second": r0["paths"] * n_steps * len(sets) / wall,
        "metrics": list(METRICS), "diff_se_batches": BATCHES,
        "common_random_numbers": "every set uses the seed's path keys: path i has key fold_in(key, i) in every set",
    }
    return manifest(r0, seed=r0["seed"], wall_seconds=wall, extra=extra, command=command)


def write_sweep(sw: Sweep, out_dir) -> None:
    """sweep.csv, sweep.parquet, one sweep_<metric>.png per metric and, last, manifest.json (atomically)."""
    from pathlib import Path

    from ..io import atomic_write_bytes, atomic_write_json, atomic_write_text

    d = Path(out_dir)
    atomic_write_text(d / "sweep.csv", sw.table.to_csv(index=False))
    buf = io.BytesIO()
    sw.table.to_parquet(buf, engine="pyarrow", index=False)
    atomic_write_bytes(d / "sweep.parquet", buf.getvalue())
    keys = list(sw.sets[0].texts)
    for metric in METRICS:
        atomic_write_bytes(d / f"sweep_{metric}.png", metric_png(sw.table, metric, keys))
    atomic_write_json(d / "manifest.json", sw.manifest)
