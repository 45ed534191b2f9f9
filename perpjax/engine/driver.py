"""The chunk driver: runs ``simulate_chunk`` over a run's paths, checkpoints, and reduces on the host."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .. import random as R
from ..distributed import RUN_TIMEOUT, current
from ..errors import ConfigError
from ..layout import positions
from ..store import RUN_FILE, ChunkStore, StoredOutcome
from .kernel import simulate_chunk
from .model import RiskModel
from .outputs import OUTPUTS, Outcome, UnitPaths, flatten, new_accumulators, reduce_chunk, stored_name
from .state import initial_state

MAX_PATHS = 2**53
"""Most paths one run can have. Path indices are 64-bit (``random.path_keys``); the cap is where the
host's float64 sums (counts of liquidated paths, per-unit sums) stop counting single paths exactly."""


def check_path_count(n_paths: int, error=ValueError) -> None:
    """Raise ``error`` naming ``paths`` and its bound unless 1 <= n_paths <= MAX_PATHS."""
    if n_paths < 1:
        raise error(f"paths: must be >= 1 (got {n_paths})")
    if n_paths > MAX_PATHS:
        raise error(f"paths: at most 2**53 = {MAX_PATHS:,} (got {n_paths:,}): beyond it the float64 sums of the "
                    "run no longer count single paths exactly; split the run into runs with different seeds")


def path_shapes(n_assets: int) -> dict:
    """Per-path ``Outcome`` fields: key -> None for (paths,), or the column count of (paths, n)."""
    return {st.key: (n_assets if st.how == "path" and o.shape == "assets" else None)
            for o in OUTPUTS for st in o.stats if st.how.startswith("path")}


def stored_columns(asset_names) -> dict:
    """The chunk files' layout (``store.ChunkStore``): per-path ``Outcome`` field -> its column (the key) or,
    for a (paths, assets) field, one column per asset in ``asset_names``' order (``outputs.stored_name``:
    ``path_log_return__BTC``). The store knows columns by name only; the names are the engine's."""
    return {k: k if n is None else [stored_name(k, a) for a in asset_names]
            for k, n in path_shapes(len(asset_names)).items()}


def _chunk_columns(layout: dict, per_path: dict) -> dict:
    """One reduced chunk's per-path values (``reduce_chunk``: key -> [array]) as the store's named columns."""
    cols = {}
    for k, names in layout.items():
        v = np.asarray(per_path[k][0])
        cols.update({names: v} if isinstance(names, str) else {c: v[:, j] for j, c in enumerate(names)})
    return cols


def stored_bytes_per_path(model: RiskModel) -> int:
    """Bytes of one row of the per-path table (``store.ChunkStore``): the int64 path index and one
    value of the model's float type per column (per-asset fields: one column per asset)."""
    cols = sum(1 if n is None else n for n in path_shapes(model.prices.n_assets).values())
    return 8 + cols * np.dtype(model.dtype).itemsize


def carry_bytes_per_path(model: RiskModel) -> int:
    """Bytes of scan state one path carries (what a chunk keeps live at every step)."""
    P = positions(model)
    s = jax.eval_shape(lambda: initial_state(model, P, jnp.zeros((2,), jnp.uint32)))
    return int(sum(np.prod(x.shape) * x.dtype.itemsize for x in jax.tree_util.tree_leaves(s)))


def auto_chunk_size(model: RiskModel, n_paths: int) -> int:
    """Paths per chunk: the carry of a chunk sized to stay cache-resident on CPU
    (~16 MB: big books run in small chunks, measured 1.4x faster for 2,000
    accounts) and to fill an accelerator (~2 GB). Results do not depend on it."""
    budget = 16 * 2**20 if jax.default_backend() == "cpu" else 2 * 2**30
    per_path = carry_bytes_per_path(model)
    cap = 25_000 if jax.default_backend() == "cpu" else 1_000_000
    most = int(max(64, min(cap, n_paths, budget // per_path)))
    # Equal chunks: the last one is padded to the chunk size, so split the run evenly.
    n_chunks = -(-n_paths // most)
    return -(-n_paths // n_chunks)


def simulate(model: RiskModel, *, seed: int, n_paths: int, chunk_size: int | str = "auto", unroll: int = 1,
             keep_unit_paths: bool = False, progress=None, store=None, resume: bool = False, devices=None,
             cluster=None):
    """Simulate ``n_paths`` paths in chunks and reduce them.

    The last chunk is padded to ``chunk_size`` (one compile for the whole run)
    and the padding dropped. ``progress(done, total)`` is called after each chunk.

    ``store``: a ``perpjax.store.ChunkStore``. Each finished chunk is written there (its per-path
    values and per-unit sums, one file per chunk: constant cost per chunk) and not kept in memory;
    the result is then a ``store.StoredOutcome`` that reads per-path fields from the files when
    asked. With ``resume`` the chunks already stored (same config, seed, paths, chunk size) are
    skipped: a killed run loses at most the chunk in flight, and the resumed result equals an
    uninterrupted one bit for bit (chunks are keyed by path index; sums are added in chunk order,
    as in memory). Without a store every per-path array is kept in memory (an ``Outcome``).

    ``devices``: how many local devices share each chunk's paths (None or "all": every device of the
    process); the chunk is rounded up to a multiple of it. Same results on any number of devices.

    ``cluster``: the processes sharing the run (``perpjax.distributed.Cluster``; default: the one this
    process joined, else a single process). With several, a ``store`` in a directory every process
    sees is required: each process simulates its share of the chunks into it (``Cluster.owns``),
    process 0 starts the store and, after all are done, returns the whole run's result (the same
    as one process, bit for bit); the other processes return None.
    """
    check_path_count(n_paths)
    if chunk_size == "auto":
        chunk_size = auto_chunk_size(model, n_paths)
    if not (isinstance(chunk_size, int) and chunk_size >= 1):
        raise ValueError(f"chunk_size: must be 'auto' or an integer >= 1 (got {chunk_size!r})")
    n_dev = local_devices(devices)
    chunk = -(-min(chunk_size, n_paths) // n_dev) * n_dev  # a multiple of the device count
    key = R.seed_key(seed)
    n_assets = model.prices.n_assets
    if cluster is None:
        cluster = current()
    if store is None and cluster.num_processes > 1:
        raise ValueError("store: a run on several processes needs a chunk store in a directory they all see")
    if store is not None:
        if keep_unit_paths:
            raise ValueError("store: not supported with keep_unit_paths")
        return _simulate_stored(model, key, n_paths, chunk, unroll, progress, store, resume, n_dev, cluster)
    acc, per_path = new_accumulators(model.n_units, n_assets)
    kept = []
    for start in range(0, n_paths, chunk):
        n = min(chunk, n_paths - start)
        out = simulate_chunk(model, key, R.index_words(start), chunk, unroll=unroll, devices=n_dev)
        reduce_chunk(out, n, n_assets, acc, per_path)
        if keep_unit_paths:
            kept.append(flatten(jax.tree_util.tree_map(lambda a, n=n: np.asarray(a)[:n], out)))
        if progress is not None:
            progress(start + n, n_paths)
    unit_paths = None
    if keep_unit_paths:
        unit_paths = UnitPaths(*(np.concatenate(xs) for xs in zip(*kept, strict=True)))
    return Outcome(n_paths=n_paths, n_steps=model.grid.n_steps, cascade_on=model.cascade is not None, **acc,
                   **{k: np.concatenate(v) for k, v in per_path.items()}, unit_paths=unit_paths)


def _simulate_stored(model, key, n_paths, chunk, unroll, progress, store: ChunkStore, resume, n_dev, cluster):
    n_assets = model.prices.n_assets
    if len(store.asset_names) != n_assets:
        raise ValueError(f"store: {len(store.asset_names)} asset names for a model of {n_assets} assets")
    layout = stored_columns(store.asset_names)
    if cluster.leader:  # process 0 alone starts (or checks, to resume) the store
        store.begin(chunk, resume=resume)
    cluster.barrier("store-begun")
    if not cluster.leader:
        if not (store.folder / RUN_FILE).exists():
            raise ConfigError(f"--out: {store.folder} has no {RUN_FILE} after process 0 started the run: the out "
                              "dir must be one directory every process sees (a shared filesystem)")
        store.begin(chunk, resume=True)  # join process 0's store: the same run's identity, checked
    done = store.completed() if resume else set()
    starts = range(0, n_paths, chunk)
    mine = [s for j, s in enumerate(starts) if cluster.owns(j)]
    total = sum(min(chunk, n_paths - s) for s in mine)
    finished = 0
    for start in mine:
        if start in done:
            store.verify(start, min(chunk, n_paths - start))
            finished += min(chunk, n_paths - start)
    if progress is not None and finished:
        progress(finished, total)
    for start in mine:
        if start in done:
            continue
        n = min(chunk, n_paths - start)
        out = simulate_chunk(model, key, R.index_words(start), chunk, unroll=unroll, devices=n_dev)
        sums, per_path = new_accumulators(model.n_units, n_assets)
        reduce_chunk(out, n, n_assets, sums, per_path)
        store.write(start, n, sums, _chunk_columns(layout, per_path))
        del out, per_path
        finished += n
        if progress is not None:
            progress(finished, total)
    cluster.barrier("chunks-done", RUN_TIMEOUT)
    if not cluster.leader:
        return None
    missing = sorted(set(starts) - store.completed())
    if missing:
        raise ConfigError(f"--out: chunks starting at paths {missing[:5]} are missing from {store.folder} after "
                          "every process finished: the out dir must be one directory every process sees")
    acc, _ = new_accumulators(model.n_units, n_assets)
    for start in starts:  # in chunk order: the same float sums as in memory
        for k, v in store.sums(start).items():
            acc[k] += v
    return StoredOutcome(store, {"n_paths": n_paths, "n_steps": model.grid.n_steps,
                                 "cascade_on": model.cascade is not None, "unit_paths": None, **acc},
                         layout)


def local_devices(devices=None) -> int:
    """The number of local devices a run uses: ``None`` / ``"all"`` = all of them, else 1..available."""
    available = jax.local_device_count()
    if devices is None or devices == "all":
        return available
    if not (isinstance(devices, int) and not isinstance(devices, bool) and 1 <= devices <= available):
        raise ValueError(f"devices: must be 'all' or an integer in [1, {available}] (this process has {available} "
                         f"{jax.default_backend()} device(s); got {devices!r})")
    return devices
