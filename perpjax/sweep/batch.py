"""Parameter sets run as one compiled kernel: the sets are grouped by the model's compiled structure and each
group's sets run batched, on common random numbers.

Grouping rule: two sets share a kernel when their ``RiskModel``s have the same pytree structure (which
includes every ``eqx.field(static=True)``: assets count, book size, tiers count, innovations kind and
Student-t nu today, steps, modes, ...) and the same shape and dtype of every array leaf. Within a group the
array leaves that differ between sets are stacked and batched; the others are shared. Sets of different
groups run as separate compiled kernels (one per group).

Batching: the chunk's paths of every set form one flat batch of ``sets x chunk`` items (set-major), vmapped
over ``kernel.simulate_path``; item ``(s, i)`` is path ``start + i`` of set ``s``, with path key
``fold_in(key, start + i)``: the same key in every set (common random numbers). One flat batch (rather than
a vmap over sets of a vmap over paths) keeps the liquidation compaction (``sparse.where_active``) working
over the whole batch. On several local devices the flat axis is sharded over them (as ``simulate_chunk``
shards the paths).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import random as R
from ..engine.driver import auto_chunk_size, local_devices
from ..engine.kernel import shard_paths, simulate_chunk, simulate_path
from ..engine.outputs import Outcome, new_accumulators, reduce_chunk
from ..runtime import CompileClock
from ..sparse import DEFAULT_CAPACITY

KERNEL = "sweep_chunk"
"""The batched kernel's name as JAX reports it in compile events (``runtime.CompileClock``)."""


def structure_key(model) -> tuple:
    """What decides a model's compiled program: its pytree structure (static fields included) and the shape
    and dtype of every array leaf (non-array leaves by value)."""
    leaves, treedef = jax.tree_util.tree_flatten(model)
    return treedef, tuple((tuple(x.shape), str(x.dtype)) if eqx.is_array(x) else ("value", x) for x in leaves)


def group_sets(models) -> list[list[int]]:
    """Indices of ``models`` grouped by ``structure_key``, groups in order of their first set."""
    keys, groups = [], []
    for i, m in enumerate(models):
        k = structure_key(m)
        for j, known in enumerate(keys):
            if known == k:
                groups[j].append(i)
                break
        else:
            keys.append(k)
            groups.append([i])
    return groups


def split_models(models):
    """(stacked, shared, names): the array leaves that differ between ``models`` stacked on a leading set axis
    (None elsewhere), the first model with those leaves set to None, and the differing leaves' paths."""
    flat = [jax.tree_util.tree_flatten_with_path(m)[0] for m in models]
    treedef = jax.tree_util.tree_structure(models[0])
    stacked, shared, names = [], [], []
    for j, (path, first) in enumerate(flat[0]):
        column = [f[j][1] for f in flat]
        varies = eqx.is_array(first) and any(not np.array_equal(np.asarray(first), np.asarray(x)) for x in column)
        stacked.append(jnp.stack(column) if varies else None)
        shared.append(None if varies else first)
        if varies:
            names.append(jax.tree_util.keystr(path))
    return (jax.tree_util.tree_unflatten(treedef, stacked), jax.tree_util.tree_unflatten(treedef, shared), names)


@eqx.filter_jit
def sweep_chunk(stacked, shared, key, start, count: int, *, unroll: int = 1, sparse: float = DEFAULT_CAPACITY,
                devices: int = 1):
    """Paths ``start .. start+count-1`` of every set: a ``PathOutcome`` with leading axis sets x count
    (set-major). ``stacked``/``shared``: ``split_models``. Same keys in every set."""
    n_sets = jax.tree_util.tree_leaves(stacked)[0].shape[0]
    keys = shard_paths(jnp.tile(R.path_keys(key, start, count), (n_sets, 1)), devices)
    params = jax.tree_util.tree_map(lambda a: jnp.repeat(a, count, axis=0), stacked)

    def item(p, k):
        return simulate_path(eqx.combine(p, shared), k, unroll=unroll, sparse=sparse)

    return jax.vmap(item)(params, keys)


def sweep_chunk_size(model, n_paths: int, n_sets: int, chunk_size, n_dev: int) -> int:
    """Paths per chunk of each set: ``chunk x sets`` fits the budget one run's chunk has (``auto``: the
    driver's ``auto_chunk_size`` of ``n_sets x n_paths`` paths, split over the sets; an integer: divided by
    the sets), the chunks equal, a multiple of the device count."""
    if chunk_size == "auto":
        most = -(-auto_chunk_size(model, n_sets * n_paths) // n_sets)
    else:
        most = max(1, int(chunk_size) // n_sets)
    most = min(most, n_paths)
    n_chunks = -(-n_paths // most)
    chunk = -(-n_paths // n_chunks)
    return -(-chunk // n_dev) * n_dev


@dataclass
class GroupRun:
    """What running one group took: its sets, the leaves batched, chunk, compiles and seconds."""

    sets: list
    batched_leaves: list
    chunk: int
    compiles: int = 0
    compile_seconds: float = 0.0
    wall_seconds: float = 0.0
    outcomes: list = field(default_factory=list)


def _outcome(model, n_paths, acc, per_path) -> Outcome:
    return Outcome(n_paths=n_paths, n_steps=model.grid.n_steps, cascade_on=model.cascade is not None, **acc,
                   **{k: np.concatenate(v) for k, v in per_path.items()}, unit_paths=None)


def run_group(models, *, seed: int, n_paths: int, chunk_size="auto", devices=None, progress=None,
              unroll: int = 1) -> GroupRun:
    """Run the models of one group (same ``structure_key``) on the same paths; one ``Outcome`` per model,
    equal to ``engine.simulate`` of each model. A group of one model runs ``simulate_chunk`` itself; models
    with no differing leaf run once and share the outcome."""
    n_dev = local_devices(devices)
    m0 = models[0]
    stacked, shared, names = split_models(models) if len(models) > 1 else (None, m0, [])
    batched = bool(names)
    n_run = len(models) if batched else 1
    chunk = sweep_chunk_size(m0, n_paths, n_run, chunk_size, n_dev)
    key = R.seed_key(seed)
    n_assets = m0.prices.n_assets
    accs = [new_accumulators(m0.n_units, n_assets) for _ in range(n_run)]
    g = GroupRun(sets=[], batched_leaves=names, chunk=chunk)
    t0 = time.perf_counter()
    with CompileClock(KERNEL, "simulate_chunk") as cc:
        for start in range(0, n_paths, chunk):
            n = min(chunk, n_paths - start)
            if batched:
                out = sweep_chunk(stacked, shared, key, R.index_words(start), chunk, unroll=unroll, devices=n_dev)
            else:
                out = simulate_chunk(m0, key, R.index_words(start), chunk, unroll=unroll, devices=n_dev)
            out = jax.tree_util.tree_map(lambda a: np.asarray(a).reshape(n_run, chunk, *a.shape[1:]), out)
            for s, (acc, per_path) in enumerate(accs):
                reduce_chunk(jax.tree_util.tree_map(lambda a, s=s: a[s], out), n, n_assets, acc, per_path)
            if progress is not None:
                progress(n * len(models))
    g.wall_seconds = time.perf_counter() - t0
    g.compiles, g.compile_seconds = cc.compiles, cc.seconds
    outs = [_outcome(m0, n_paths, *a) for a in accs]
    g.outcomes = outs if batched else outs * len(models)
    return g
