"""Python API: config in, pandas out."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .config import build_model, load_config
from .engine import Outcome, simulate
from .errors import ConfigError
from .io import atomic_write_json, atomic_write_text, config_fingerprint, manifest
from .metrics import by_tier, summarize


@dataclass
class Result:
    """A finished run: venue summary, per-unit table, per-path table, manifest.

    ``paths`` is None for a run stored in an out dir (``run(..., out=DIR)``): its per-path values
    are the Parquet files ``DIR/paths/chunk-*.parquet`` (``pandas.read_parquet(DIR / "paths")``)."""

    summary: dict
    accounts: pd.DataFrame
    paths: pd.DataFrame | None
    manifest: dict
    outcome: Outcome

    def write(self, out_dir) -> None:
        """Write accounts.csv, tiers.csv, summary.json and, last, manifest.json atomically into ``out_dir``
        (a reader that sees manifest.json sees the finished set)."""
        d = Path(out_dir)
        atomic_write_text(d / "accounts.csv", self.accounts.to_csv(index=False))
        atomic_write_text(d / "tiers.csv", by_tier(self.accounts).to_csv(index=False))
        atomic_write_json(d / "summary.json", self.summary)
        atomic_write_json(d / "manifest.json", self.manifest)


def resolve(config=None, *, overrides=(), paths=None, seed=None) -> dict:
    """The config a run uses: a file path, a dict or the packaged default (None), overrides applied."""
    cfg = config if isinstance(config, dict) else load_config(config, overrides)
    if isinstance(config, dict) and overrides:
        from .config import apply_overrides

        cfg = apply_overrides(cfg, overrides)
    if paths is not None:
        cfg = {**cfg, "paths": paths}
    if seed is not None:
        cfg = {**cfg, "seed": seed}
    return cfg


def run(config=None, *, overrides=(), paths=None, seed=None, progress=None, out=None, resume: bool = False,
        warn=None, manifest_extra=None, check_book: bool = True) -> Result | None:
    """Run a simulation from a config file path, a dict, or the packaged default (None).

    Every margin unit must start at or above maintenance (``solvency.check_solvency``; a
    ``ConfigError`` names the unit, unless ``book.start_below_maintenance`` is true: then
    ``warn(message)`` is called, ``warnings.warn`` by default; ``check_book=False``: the caller did).

    ``out``: an output directory. It is locked for the run (``store.OutDir``: a second run into it
    is refused), each chunk's per-path rows are written to ``out/paths/chunk-*.parquet`` as it
    finishes (memory bounded by the chunk; the summary is computed from the stored columns, with
    the same numbers as in memory), and the results are written there at the end. ``resume``
    continues the stored chunks of the same run (config, seed, paths, chunk size checked).
    Without ``out`` everything stays in memory (``Result.paths`` is the per-path table).

    On several processes (``perpjax.distributed.initialize`` joined first) ``out`` is required and
    must be one directory every process sees: each process simulates its share of the chunks into
    it, process 0 alone locks it and writes the results and returns the ``Result`` (the same as one
    process, bit for bit); the other processes return None.
    """
    cfg = resolve(config, overrides=overrides, paths=paths, seed=seed)
    model, labels, resolved = build_model(cfg)
    from .engine.driver import check_path_count

    check_path_count(resolved["paths"], ConfigError)
    from .solvency import check_solvency

    if warn is None:
        import warnings

        def warn(msg):
            warnings.warn(msg, stacklevel=3)

    if check_book:
        check_solvency(model, labels, resolved, warn=warn)
    from .distributed import current

    cluster = current()
    if out is None:
        if cluster.num_processes > 1:
            raise ConfigError("out: a run on several processes needs an output directory every process sees")
        return _run(model, labels, resolved, progress, None, False, manifest_extra)
    from .engine.driver import stored_bytes_per_path
    from .store import ChunkStore, OutDir, check_disk_space

    if not cluster.leader:  # process 0 locks, clears and writes; this one adds its chunks to the store
        store = ChunkStore(Path(out) / "paths", config_sha=config_fingerprint(resolved), seed=resolved["seed"],
                           paths=resolved["paths"], asset_names=resolved["asset_names"])
        simulate(model, seed=resolved["seed"], n_paths=resolved["paths"], chunk_size=resolved["chunk_size"],
                 progress=progress, store=store, resume=resume, devices=resolved["devices"], cluster=cluster)
        return None
    if cluster.num_processes > 1:
        manifest_extra = {**(manifest_extra or {}), "processes": cluster.num_processes}
    with OutDir(out) as d:
        check_disk_space(d.path, resolved["paths"], stored_bytes_per_path(model))
        if not resume:
            d.clear_results()
        store = ChunkStore(d.path / "paths", config_sha=config_fingerprint(resolved), seed=resolved["seed"],
                           paths=resolved["paths"], asset_names=resolved["asset_names"])
        res = _run(model, labels, resolved, progress, store, resume, manifest_extra)
        res.write(d.path)
    return res


def _run(model, labels, resolved, progress, store, resume, manifest_extra) -> Result:
    from .runtime import CompileClock

    t0 = time.perf_counter()
    with CompileClock() as clock:
        out = simulate(model, seed=resolved["seed"], n_paths=resolved["paths"], chunk_size=resolved["chunk_size"],
                       progress=progress, store=store, resume=resume, devices=resolved["devices"])
    wall = time.perf_counter() - t0
    summary, accounts, per_path = summarize(out, model, labels, resolved, paths_table=store is None)
    summary["path_steps_per_second"] = out.n_paths * out.n_steps / wall
    extra = {"stored_paths": "paths/chunk-*.parquet" if store is not None else None, **clock.record(),
             **(manifest_extra or {})}
    return Result(summary, accounts, per_path, manifest(resolved, seed=resolved["seed"], wall_seconds=wall,
                                                        extra=extra), out)
