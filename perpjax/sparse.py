"""Per-path branches that skip the work of inactive paths across a chunk.

Liquidations are rare events: on the default book a few paths in a thousand
execute one at a given step, yet under ``vmap`` a per-path ``lax.cond`` becomes a
select, so the forced-execution arithmetic (fills, slippage, bad debt, the
bisections of the partial modes, ADL ranking) would run on every path at every
step. ``where_active`` keeps the per-path meaning of
``fn(x) if active else skip(x)`` and gives it a batching rule
(``jax.custom_batching.custom_vmap``) that works at the level of the chunk,
where a branch is a real branch:

    * no active path: ``skip`` only;
    * at most ``capacity x paths`` active: their rows are gathered, ``fn`` runs on
      those rows only and its results are scattered back over ``skip``'s;
    * more: ``fn`` on every path, then a select (what plain ``vmap`` does).

Every branch computes each row by the same per-row arithmetic, so results do
not depend on which branch ran, nor on the chunk size (``tests/test_sparse.py``:
bit for bit against the dense select, and ``skip`` = ``fn`` with nothing active).
Measured (2-core CPU, ns per path-step, ``benchmarks/RESULTS.md``): default book
190 -> 168, ``fraction`` + ADL 490 -> 230, ``buffer`` 1,170 -> 490.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap

DEFAULT_CAPACITY = 1 / 32


def shares(capacity) -> tuple[float, ...]:
    """``capacity`` (one share or a tuple / list of shares) as a tuple of shares."""
    return tuple(capacity) if isinstance(capacity, (tuple, list)) else (capacity,)


def _is_traced(x) -> bool:
    return isinstance(x, jax.Array)


def where_active(active, fn, skip, operands, *, capacity: float | tuple[float, ...] = DEFAULT_CAPACITY):
    """Per path: ``fn(operands) if active else skip(operands)``.

    Args:
        active: () bool for one path (batched to (paths,) under ``vmap``).
        fn, skip: functions of ``operands`` returning pytrees of the same structure, shapes and
            dtypes. They must not close over traced values (pass those in ``operands``);
            NumPy constants, Python values and static model fields may be closed over.
        operands: a pytree (eqx modules included; non-array leaves stay static).
        capacity: largest share of a batch's paths run compacted; 0 always runs the dense select. A
            tuple of shares compiles one compacted branch per share and runs the smallest that holds
            the active paths (a step with few active paths gathers few rows, one with many still
            skips the rest).
    """
    leaves, treedef = jax.tree_util.tree_flatten(operands)
    traced = [i for i, x in enumerate(leaves) if _is_traced(x)]

    def rebuild(dyn):
        full = list(leaves)
        for i, x in zip(traced, dyn, strict=True):
            full[i] = x
        return jax.tree_util.tree_unflatten(treedef, full)

    def call(f, dyn):
        return f(rebuild(dyn))

    @custom_vmap
    def branch(active, dyn):
        return jax.lax.cond(active, lambda d: call(fn, d), lambda d: call(skip, d), dyn)

    @branch.def_vmap
    def _rule(axis_size, in_batched, active, dyn):
        active_b, dyn_b = in_batched
        axes = [0 if b else None for b in dyn_b]

        def rows(f, d, ax=axes):
            return jax.vmap(lambda x: call(f, x), in_axes=(ax,))(d)

        if not active_b:  # one predicate for the whole batch: a real branch
            out = jax.lax.cond(active, lambda d: rows(fn, d), lambda d: rows(skip, d), dyn)
            return out, jax.tree_util.tree_map(lambda _: True, out)

        def dense(d):
            on, off = rows(fn, d), rows(skip, d)
            return jax.tree_util.tree_map(
                lambda a, b: jnp.where(active.reshape(active.shape + (1,) * (a.ndim - 1)), a, b), on, off)

        ks = sorted({int(axis_size * c) for c in shares(capacity) if int(axis_size * c) > 0})
        if not ks:
            out = dense(dyn)
            return out, jax.tree_util.tree_map(lambda _: True, out)

        def compact(d, k):
            idx = jnp.nonzero(active, size=k, fill_value=axis_size)[0]  # padding rows: dropped below
            sub = [jnp.take(x, idx, axis=0, mode="clip") if b else x for x, b in zip(d, dyn_b, strict=True)]
            on = rows(fn, sub)
            return jax.tree_util.tree_map(lambda o, v: o.at[idx].set(v, mode="drop"), rows(skip, d), on)

        n = jnp.sum(active, dtype=jnp.int32)
        # 0: nothing active; 1 .. len(ks): the smallest compaction that holds n; then dense.
        which = jnp.where(n == 0, 0, 1 + jnp.sum(n > jnp.asarray(ks, jnp.int32), dtype=jnp.int32))
        branches = [lambda d: rows(skip, d)] + [lambda d, k=k: compact(d, k) for k in ks] + [dense]
        out = jax.lax.switch(which, branches, dyn)
        return out, jax.tree_util.tree_map(lambda _: True, out)

    return branch(active, [leaves[i] for i in traced])
