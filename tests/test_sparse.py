"""Liquidations run only on the paths that liquidate (``sparse.where_active``): the numbers must be
exactly those of the dense computation, whichever branch a step takes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from perpjax.config import build_model, load_config
from perpjax.engine import positions, simulate_chunk, simulate_path
from perpjax.liquidation import liquidate, no_liquidation
from perpjax.random import path_key, seed_key
from perpjax.sparse import where_active

SHORT = ["time.horizon_seconds=7200", "dtype=float32"]
CASES = {
    "full": [],
    "buffer": ["liquidation.mode=buffer", "liquidation.buffer=0.002"],
    "fraction_adl": ["liquidation.mode=fraction", "liquidation.fraction=0.5", "liquidation.adl=true",
                     "insurance_fund=10000", "liquidation.cooldown_seconds=120"],
    "tier_step_backstop_throttle_fairness": ["liquidation.mode=tier_step", "liquidation.backstop_fraction_of_mm=0.5",
                                             "liquidation.throttle_notional_per_step=2e6", "liquidation.fairness=true"],
}


def _leaves(out):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(out)]


@pytest.mark.parametrize("case", list(CASES))
def test_compacted_liquidations_equal_dense(case):
    model = build_model(load_config(None, SHORT + CASES[case]))[0]
    key = seed_key(5)
    # 256 paths: capacity 1/32 gives 8 rows; the default book liquidates on 0, a few, and many
    # paths per step, so all three branches (skip, compact, dense) run; (1/128, 1/16): two compactions.
    dense = simulate_chunk(model, key, jnp.uint32(0), 256, sparse=0.0)
    assert np.asarray(dense.acct.liq_step).max() > 0
    for capacity in (1 / 32, 1.0, (1 / 128, 1 / 16)):
        got = simulate_chunk(model, key, jnp.uint32(0), 256, sparse=capacity)
        for a, b in zip(_leaves(dense), _leaves(got), strict=True):
            np.testing.assert_array_equal(a, b)
    # One path alone (no vmap: a plain lax.cond) gives that path's row.
    one = jax.jit(lambda k: simulate_path(model, k))(path_key(key, jnp.uint32(3)))
    for a, b in zip(_leaves(dense), _leaves(one), strict=True):
        np.testing.assert_array_equal(a[3], b)


@pytest.mark.parametrize("case", list(CASES))
def test_skipping_a_path_is_exactly_executing_nothing(case):
    """The skip branch is what full execution returns when no unit is triggered, bit for bit: so a
    compacted run equals running every path's execution (the engine before ``where_active``)."""
    model = build_model(load_config(None, SHORT + CASES[case]))[0]
    P = positions(model)
    rng = np.random.default_rng(0)
    mark = model.prices.s0 * np.exp(rng.normal(0, 0.05, model.prices.n_assets)).astype(np.float32)
    mid = jnp.asarray(mark * 1.0002, jnp.float32)
    mark_p = P.at_asset(jnp.asarray(mark, jnp.float32))
    collateral = model.book.collateral * jnp.asarray(rng.uniform(0.2, 1.5, P.n_units), jnp.float32)
    size = P.size * jnp.asarray(rng.uniform(0.5, 1.0, len(P.unit)), jnp.float32)
    liq = model.liquidation
    scale = jnp.asarray(0.7, jnp.float32) if liq.throttled else None
    o = (liq, model.ladder, P, jnp.zeros((P.n_units,), bool), collateral, size, mid, mark_p, None, scale,
         model.insurance_fund, jnp.asarray(-123.0, jnp.float32))
    for a, b in zip(_leaves(liquidate(o)), _leaves(no_liquidation(o)), strict=True):
        np.testing.assert_array_equal(a, b)


def test_where_active_branches():
    """fn on active rows, skip elsewhere, in every branch; operands closed over may be constants."""
    scale = jnp.asarray(3.0)

    def run(active, x, capacity):
        return jax.vmap(lambda a, v: where_active(a, lambda o: o[0] * o[1] + 1.0, lambda o: o[0], (v, scale),
                                                  capacity=capacity))(active, x)

    x = jnp.arange(64.0)
    for n_active in (0, 1, 2, 5, 64):
        active = jnp.arange(64) < n_active
        want = np.where(np.asarray(active), np.asarray(x) * 3.0 + 1.0, np.asarray(x))
        for capacity in (0.0, 1 / 32, 1.0):
            np.testing.assert_array_equal(np.asarray(jax.jit(run, static_argnums=2)(active, x, capacity)), want)
