"""Sample paths of a run, re-simulated step by step: prices and liquidation events (for the report).

A run keeps per-path totals only. ``trace_paths(model, seed, indices)`` re-runs chosen global path
indices with the engine's own step (``step.step`` from ``state.initial_state``, keyed by path index
exactly as ``kernel.simulate_chunk`` keys them), so the same config and seed give the same paths, and
records after every step the index, mark and true price of each asset, the open sizes and the running
liquidation sums of each unit (``StepRecord``). The path's outcome is ``kernel.simulate_path``'s, and
its row of the per-path table comes from the driver's own host reduction (``outputs.reduce_chunk``):
the values of the run's Parquet row, bit for bit. ``PathTrace`` holds one path on the host, with its
liquidation events (unit, asset, side, size closed, average fill price, notional, fee, bad debt).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .. import random as R
from ..layout import positions
from .kernel import simulate_path
from .model import RiskModel
from .outputs import PathOutcome, new_accumulators, reduce_chunk, stored_name
from .state import State, initial_state
from .step import step

MAX_TRACED = 64
"""Most paths one ``trace_paths`` call re-simulates (it keeps steps x (assets + positions + units) per path)."""
MAX_TRACE_BYTES = 2**30
"""Most bytes of records one call keeps (``trace_bytes``): a book of thousands of positions traces fewer paths."""


def trace_bytes(model: RiskModel, n_paths: int) -> int:
    """Bytes of the step records of ``n_paths`` traced paths (``StepRecord`` per step, host and device)."""
    P = positions(model)
    per_step = 3 * model.prices.n_assets + len(P.unit) + 3 * model.n_units + 1
    return int(n_paths * (model.grid.n_steps + 1) * per_step * np.dtype(model.dtype).itemsize)


class StepRecord(NamedTuple):
    """What the trace keeps of the carry after a step (leading dims: paths, steps)."""

    index: jax.Array  # (assets,) oracle price, USD
    mark: jax.Array  # (assets,) mark price, USD
    price: jax.Array  # (assets,) true price exp(x), USD (after any cascade impact)
    size: jax.Array  # (positions,) signed size open
    liq_notional: jax.Array  # (units,) running liquidated notional, USD
    fee: jax.Array  # (units,) running liquidation fees, USD
    bad_debt: jax.Array  # (units,) running bad debt, USD
    fund: jax.Array  # () insurance-fund change so far, USD


def _record(model: RiskModel, P, s: State) -> StepRecord:
    size = P.size * P.at_unit(s.book.open) if model.liquidation.full_only else s.book.size
    return StepRecord(index=s.market.index, mark=s.market.mark, price=jnp.exp(s.market.x), size=size,
                      liq_notional=s.acct.liq_notional, fee=s.acct.fee, bad_debt=s.acct.bad_debt, fund=s.venue.fund)


@eqx.filter_jit
def trace_kernel(model: RiskModel, keys) -> tuple[StepRecord, StepRecord, PathOutcome]:
    """For each path key (paths, 2): the record at t = 0, the records of steps 1..T and the outcome."""
    P = positions(model)
    ts = jnp.arange(1, model.grid.n_steps + 1, dtype=jnp.int32)

    def one(pkey):
        s0 = initial_state(model, P, pkey)

        def body(s, t):
            s = step(model, P, pkey, s, t)
            return s, _record(model, P, s)

        _, recs = jax.lax.scan(body, s0, ts)
        return _record(model, P, s0), recs, simulate_path(model, pkey)

    return jax.vmap(one)(keys)


@dataclass
class PathTrace:
    """One re-simulated path on the host (numpy, the model's float type).

    ``seconds``: (T + 1,) time of each record (0 = the start); ``index``, ``mark``, ``price``: (T + 1,
    assets) USD; ``events``: one row per position closed by a liquidation (``liquidation_events``);
    ``row``: the path's values in the run's chunk files (``RUN/paths/``, column names by
    ``outputs.stored_name``; ``perpjax.load(RUN).paths`` gives the public table); ``final``: the
    last step's record (running sums per unit)."""

    path: int
    seconds: np.ndarray
    asset_names: list
    index: np.ndarray
    mark: np.ndarray
    price: np.ndarray
    events: pd.DataFrame
    row: dict
    final: StepRecord


def check_indices(indices, n_paths: int | None = None) -> list[int]:
    """The path indices as ints; ``ValueError`` naming ``paths`` unless each is in [0, n_paths)."""
    idx = [int(i) for i in indices]
    if not 1 <= len(idx) <= MAX_TRACED:
        raise ValueError(f"paths: trace 1..{MAX_TRACED} paths at a time (got {len(idx)})")
    hi = n_paths if n_paths is not None else 2**64
    bad = [i for i in idx if not 0 <= i < hi]
    if bad:
        raise ValueError(f"paths: index {bad[0]} is outside [0, {hi})")
    return idx


def trace_paths(model: RiskModel, *, seed: int, indices, asset_names, unit_names) -> list[PathTrace]:
    """Re-simulate global paths ``indices`` of a run with ``seed``; one ``PathTrace`` per index."""
    idx = check_indices(indices)
    need = trace_bytes(model, len(idx))
    if need > MAX_TRACE_BYTES:
        raise ValueError(f"paths: tracing {len(idx)} path(s) of this model keeps {need / 2**20:,.0f} MiB of step "
                         f"records (at most {MAX_TRACE_BYTES / 2**20:,.0f} MiB); trace fewer paths")
    keys = path_keys(seed, idx)
    rec0, recs, out = jax.tree_util.tree_map(np.asarray, trace_kernel(model, keys))
    n_assets = model.prices.n_assets
    acc, per_path = new_accumulators(model.n_units, n_assets)
    reduce_chunk(out, len(idx), n_assets, acc, per_path)
    P = positions(model)
    p_unit, p_asset = np.asarray(P.unit), np.asarray(P.asset)
    dt = float(model.grid.step_seconds)
    traces = []
    for k, i in enumerate(idx):
        r0 = jax.tree_util.tree_map(lambda a, k=k: a[k], rec0)
        r = jax.tree_util.tree_map(lambda a, k=k: a[k], recs)
        full = jax.tree_util.tree_map(lambda a, b: np.concatenate([a[None], b]), r0, r)
        row = {}
        for key, v in per_path.items():
            v = v[0][k]
            if np.ndim(v) == 0:
                row[stored_name(key)] = v.item()
            else:
                row.update({stored_name(key, a): x.item() for a, x in zip(asset_names, v, strict=True)})
        traces.append(PathTrace(
            path=i, seconds=np.arange(full.index.shape[0]) * dt, asset_names=list(asset_names), index=full.index,
            mark=full.mark, price=full.price,
            events=liquidation_events(full, p_unit, p_asset, dt, asset_names, unit_names), row=row,
            final=jax.tree_util.tree_map(lambda a: a[-1], full)))
    return traces


def path_keys(seed: int, indices) -> jax.Array:
    """Keys (paths, 2) of the global path indices (64-bit: low and high uint32 words), as the run's."""
    idx = np.asarray([int(i) for i in indices], np.uint64)
    lo, hi = (idx & np.uint64(0xFFFFFFFF)).astype(np.uint32), (idx >> np.uint64(32)).astype(np.uint32)
    return R.path_key(R.seed_key(seed), jnp.asarray(lo), jnp.asarray(hi))


def liquidation_events(rec: StepRecord, p_unit, p_asset, step_seconds: float, asset_names, unit_names
                       ) -> pd.DataFrame:
    """One row per (step, position) a liquidation closed, from records at t = 0..T (``rec`` leading dim T + 1).

    A unit liquidated at step t filled notional N > 0 (its running sum rose); each of its positions
    whose size shrank is a row. The fill price is the unit's average, ``N / sum |q|``, where the unit
    closed positions in one asset; NaN where it closed several assets at once (only the unit's total
    notional is recorded, not each asset's share)."""
    d_notional = np.diff(rec.liq_notional, axis=0)  # (T, units)
    d_fee, d_bad = np.diff(rec.fee, axis=0), np.diff(rec.bad_debt, axis=0)
    closed = rec.size[:-1] - rec.size[1:]  # (T, positions), + = a long reduced
    rows = []
    for t, u in zip(*np.nonzero(d_notional > 0), strict=True):
        ps = [p for p in np.nonzero(p_unit == u)[0] if closed[t, p] != 0]
        if not ps:
            continue
        mark = rec.mark[t + 1]
        one_asset = len({int(p_asset[p]) for p in ps}) == 1
        fill = d_notional[t, u] / sum(abs(closed[t, p]) for p in ps) if one_asset else np.nan
        for p in ps:
            a = p_asset[p]
            rows.append({"step": t + 1, "seconds": (t + 1) * step_seconds, "unit": unit_names[u],
                         "asset": asset_names[a], "side": "long" if closed[t, p] > 0 else "short",
                         "size_closed": abs(float(closed[t, p])), "fill_price": float(fill),
                         "mark": float(mark[a]), "index": float(rec.index[t + 1][a]),
                         "unit_notional": float(d_notional[t, u]), "unit_fee": float(d_fee[t, u]),
                         "unit_bad_debt": float(d_bad[t, u])})
    cols = ["step", "seconds", "unit", "asset", "side", "size_closed", "fill_price", "mark", "index",
            "unit_notional", "unit_fee", "unit_bad_debt"]
    return pd.DataFrame(rows, columns=cols)
