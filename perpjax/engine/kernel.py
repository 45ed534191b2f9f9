"""The jitted kernels: one path (a scan of ``step``), a chunk of paths (vmap), and the market alone.

Randomness is keyed by position: path ``i`` uses ``fold_in(key, i)``, step ``t`` uses
``fold_in(path_key, t)``, and each component draws from its own sub-key of that (innovations drawn per
bar use the bar index instead of ``t``, on their own streams). A path's result therefore does not depend
on how paths are chunked.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import random as R
from ..cascade import cascade_finish
from ..layout import positions
from ..sparse import DEFAULT_CAPACITY
from .model import RiskModel, draw, draw_spec
from .outputs import PathOutcome
from .state import initial_equity, initial_state, market_step
from .step import step


@eqx.filter_jit
def price_returns(model: RiskModel, key, start, count: int) -> jax.Array:
    """Per-step exogenous log returns, (count, steps, assets), of paths ``start .. start+count-1``:
    the market step of ``simulate`` (``market_step``, same draws, GARCH, regimes and schedule) with
    the book held fixed, so no feedback. For checking the fitted market against data (``fit``)."""
    P = positions(model)
    spec = draw_spec(model)

    def path(pkey):
        def one(m, t):
            mk = market_step(model, P, R.split(draw(model, pkey, t), spec), m, t, P.size).state
            return mk, mk.x - m.x

        m0 = initial_state(model, P, pkey).market
        return jax.lax.scan(one, m0, jnp.arange(1, model.grid.n_steps + 1, dtype=jnp.int32))[1]

    return jax.vmap(path)(R.path_keys(key, start, count))


def simulate_path(model: RiskModel, path_key, *, unroll: int = 1,
                  sparse: float | tuple = DEFAULT_CAPACITY) -> PathOutcome:
    """Simulate one path (vmap this over path keys)."""
    P = positions(model)
    s0 = initial_state(model, P, path_key)
    ts = jnp.arange(1, model.grid.n_steps + 1, dtype=jnp.int32)
    s, _ = jax.lax.scan(lambda c, t: (step(model, P, path_key, c, t, sparse), None), s0, ts, unroll=unroll)
    casc = None if s.cascade is None else cascade_finish(s.cascade)
    b = s.book
    size_T = P.size * b.open[P.unit] if model.liquidation.full_only else b.size
    equity_T = b.collateral + P.unit_sum(size_T * (s.market.mark[P.asset] - P.entry))
    loss = initial_equity(model) - equity_T
    acct = s.acct
    if not model.liquidation.counts_events:
        acct = acct._replace(liq_events=(acct.liq_step > 0).astype(jnp.int32))
    return PathOutcome(loss=loss, acct=acct, venue=s.venue, log_return=s.market.x - jnp.log(model.prices.s0),
                       cascade=casc)


@eqx.filter_jit
def simulate_chunk(model: RiskModel, key, start, count: int, *, unroll: int = 1,
                   sparse: float | tuple = DEFAULT_CAPACITY, devices: int = 1) -> PathOutcome:
    """The jitted entry point: ``count`` paths starting at global path index ``start``.

    Args:
        model: the validated model.
        key: uint32[2] seed key (``random.seed_key(seed)``).
        start: index of the first path: its (low, high) uint32 words (``random.index_words``; path
            indices are 64-bit), or a uint32 scalar below 2**32. Traced, so chunks share one compile.
        count: number of paths (static).
        sparse: largest share of the chunk's paths whose liquidations run compacted at a step, or a
            tuple of shares (``sparse.where_active``; 0 runs them densely). Results do not depend on it.
        devices: the chunk's paths are split over the first ``devices`` local devices (a ``Mesh``
            over them and the path axis sharded: XLA partitions the vmapped scan, each device runs
            its share; ``count`` must be a multiple). Keys are by path index, so results do not
            depend on it.
    """
    keys = shard_paths(R.path_keys(key, start, count), devices)
    return jax.vmap(lambda k: simulate_path(model, k, unroll=unroll, sparse=sparse))(keys)


def shard_paths(keys, devices: int):
    """Path keys (paths, 2) with the path axis sharded over the first ``devices`` local devices (a ``Mesh``
    over them; XLA partitions the vmapped scan that follows): each device runs its share."""
    if devices <= 1:
        return keys
    mesh = jax.sharding.Mesh(np.array(jax.local_devices()[:devices]), ("paths",))
    return jax.lax.with_sharding_constraint(keys, jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec("paths", None)))
