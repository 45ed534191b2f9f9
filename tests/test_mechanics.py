"""Venue mechanics against hand computations, published amounts and invariants."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from perpjax.engine import simulate
from perpjax.liquidation import bridge_cross_probability
from perpjax.margin import Ladder, continuity_amounts
from perpjax.market import Funding, MarkPrice, round_to_quantum

from .helpers import build, default_config, single_position_config

# Binance USD-M BTCUSDT brackets 1-3 (floor, MMR): their published "maintenance amount" is 0, 50, 1300.
FLOORS = [0.0, 50_000.0, 250_000.0]
MMR = [0.004, 0.005, 0.01]
IMR = [0.008, 0.01, 0.02]


def test_continuity_amount_matches_published_maintenance_amounts():
    np.testing.assert_allclose(continuity_amounts(np.array(FLOORS), np.array(MMR)), [0.0, 50.0, 1300.0])


def test_ladder_maintenance_hand_values_and_continuity():
    lad = Ladder.build([(FLOORS, MMR, IMR)], dtype=jnp.float64)
    def mm(n):
        return float(lad.maintenance(jnp.array([n]))[0])
    assert mm(10_000) == pytest.approx(40.0)  # 10k * 0.4%
    assert mm(100_000) == pytest.approx(450.0)  # 100k * 0.5% - 50
    assert mm(1_000_000) == pytest.approx(8700.0)  # 1M * 1% - 1300
    for f in FLOORS[1:]:
        assert mm(f - 1e-6) == pytest.approx(mm(f + 1e-6), abs=1e-6)
    _, rate = lad.maintenance_and_rate(jnp.array([[100_000.0]]))
    assert float(rate[0, 0]) == pytest.approx(0.005)


def test_funding_rate_formula_clamp_cap_and_rounding():
    f = Funding(jnp.asarray(1e-4), jnp.asarray(5e-4), jnp.asarray(3e-3), 8, quantum=1e-6, rounding="toward_zero")
    # Premium inside the clamp band: F = I.
    assert float(f.rate(jnp.asarray(3e-4))) == pytest.approx(1e-4)
    # Premium far above: F = P - 0.05% = 0.2%...
    assert float(f.rate(jnp.asarray(2.5e-3))) == pytest.approx(2.0e-3)
    # ... and capped at 0.3%.
    assert float(f.rate(jnp.asarray(1e-2))) == pytest.approx(3e-3)
    # Rounding direction matters.
    assert float(round_to_quantum(jnp.asarray(-1.5e-6), 1e-6, "toward_zero")) == pytest.approx(-1e-6)
    assert float(round_to_quantum(jnp.asarray(-1.5e-6), 1e-6, "floor")) == pytest.approx(-2e-6)
    assert float(round_to_quantum(jnp.asarray(1.2e-6), 1e-6, "ceil")) == pytest.approx(2e-6)


def test_funding_is_zero_sum_on_a_balanced_book():
    cfg = single_position_config(step_seconds=300.0, horizon_seconds=86400.0)
    cfg["funding"] = {"interval_seconds": 3600.0, "interest": 1e-4, "clamp": 5e-4, "cap": 4e-2}
    cfg["basis"] = {"stationary_std": 2e-3, "half_life_seconds": 1800.0}
    cfg["book"] = {"accounts": [
        {"id": "long", "collateral": 1e9, "positions": [{"asset": "X", "size": 50.0, "entry": 100.0}]},
        {"id": "short", "collateral": 1e9, "positions": [{"asset": "X", "size": -50.0, "entry": 100.0}]}]}
    model, _, _ = build(cfg)
    out = simulate(model, seed=2, n_paths=2000, chunk_size=2000, keep_unit_paths=True)
    paid = out.unit_paths.funding_paid
    assert np.all(np.abs(paid).sum(1) > 0)  # funding flowed on every path
    np.testing.assert_allclose(paid.sum(1), 0.0, atol=1e-9 * np.abs(paid).max())
    # Positive basis on average -> longs pay on average.
    assert out.funding_sum[0] == pytest.approx(-out.funding_sum[1])


def test_ema_mark_lags_a_spike_that_rebounds():
    m = MarkPrice(jnp.asarray(300.0), "ema")
    step = 60.0
    a = 1 - math.exp(-step / 300.0)
    state, mark = m.init(jnp.asarray(100.0), 0.0)
    path = [100.0, 130.0, 100.0, 100.0]
    marks = []
    for p in path:
        state, mark = m.update(state, jnp.asarray(p), 0.0, step)
        marks.append(float(mark))
    expect, x = [], 100.0
    for p in path:
        x = x + a * (p - x)
        expect.append(x)
    np.testing.assert_allclose(marks, expect, rtol=1e-6)
    assert marks[1] < 110  # the spike is damped
    assert marks[3] > 100.5  # and the mark is still displaced after the index rebounded


def test_bridge_probability_formula():
    p = bridge_cross_probability(jnp.array([1.0, 1.0, -1.0]), jnp.array([2.0, -0.5, 3.0]), jnp.array([4.0, 1.0, 1.0]))
    np.testing.assert_allclose(np.asarray(p), [math.exp(-1.0), 1.0, 1.0])


def test_liquidation_accounting_bad_debt_and_fee():
    """A 100x long hit by a crash: bad debt = -(equity at fill); no fee when nothing is left."""
    cfg = single_position_config(vol=3.0, leverage=100.0, mmr=0.004, step_seconds=3600.0,
                                 horizon_seconds=86400.0)
    cfg["liquidation"]["fee_rate"] = 0.01
    model, _, _ = build(cfg)
    out = simulate(model, seed=4, n_paths=5000, chunk_size=5000, keep_unit_paths=True)
    u = out.unit_paths
    liq = u.liq_step[:, 0] > 0
    assert liq.mean() > 0.5
    fee, bad, loss = u.fee[liq, 0], u.bad_debt[liq, 0], u.loss[liq, 0]
    assert np.all((fee == 0) | (bad == 0))  # a bankrupt account pays no fee
    # Trader loses at most its initial equity (1.0), the venue eats the rest as bad debt.
    assert np.all(loss <= 1.0 + 1e-9)
    np.testing.assert_allclose(loss[bad > 0], 1.0)


def test_chunk_size_invariance_per_path():
    cfg = default_config()
    cfg["time"]["horizon_seconds"] = 7200
    model, _, _ = build(cfg, ["dtype=float32"])
    a = simulate(model, seed=5, n_paths=600, chunk_size=600, keep_unit_paths=True)
    b = simulate(model, seed=5, n_paths=600, chunk_size=250, keep_unit_paths=True)
    for x, y in zip(a.unit_paths, b.unit_paths, strict=False):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    np.testing.assert_array_equal(a.path_bad_debt, b.path_bad_debt)
    np.testing.assert_array_equal(a.path_log_return, b.path_log_return)


def test_float32_agrees_with_float64():
    cfg = default_config()
    cfg["time"]["horizon_seconds"] = 7200
    m32, _, _ = build(cfg, ["dtype=float32"])
    m64, _, _ = build(cfg, ["dtype=float64"])
    a = simulate(m32, seed=6, n_paths=2000, chunk_size=2000, keep_unit_paths=True)
    b = simulate(m64, seed=6, n_paths=2000, chunk_size=2000, keep_unit_paths=True)
    assert a.unit_paths.loss.dtype == np.float32 and b.unit_paths.loss.dtype == np.float64
    # Same random numbers up to the uniforms' resolution (23 vs 52 bits): paths agree closely,
    # except where a uniform sits on a jump-count threshold (a discrete flip, ~1e-4 of entries).
    close = np.abs(a.path_log_return - b.path_log_return) < 2e-5
    assert close.mean() > 0.999
    # ... and liquidation decisions agree except for paths that graze a barrier.
    same = (a.unit_paths.liq_step > 0) == (b.unit_paths.liq_step > 0)
    assert same.mean() > 0.999
    assert abs(a.liq_count.sum() - b.liq_count.sum()) <= 0.002 * a.liq_count.sum() + 2


@pytest.mark.parametrize("units", [37, 300])  # 0/1 mat-vec path; block layout path
def test_position_layout_unit_sums_match_dense_book(units):
    """The kernels' position layout sums per unit exactly like the dense book."""
    from perpjax.engine import positions
    from perpjax.margin import Book

    rng = np.random.default_rng(3)
    assets = 5
    size = rng.normal(size=(units, assets)) * (rng.random((units, assets)) < 0.4)
    size[[0, 9, 20]] = 0.0  # units with no position
    book = Book(collateral=jnp.ones(units), size=jnp.asarray(size), entry=jnp.ones((units, assets)))
    P = positions(type("M", (), {"book": book, "prices": type("p", (), {"n_assets": assets})()})())
    x = rng.normal(size=len(P.unit))
    dense = np.zeros((units, assets))
    dense[P.unit, P.asset] = x
    np.testing.assert_allclose(np.asarray(P.unit_sum(jnp.asarray(x))), dense.sum(1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(P.by_unit_and_asset(jnp.asarray(x))), dense, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(P.size), size[P.unit, P.asset])
    assert len(P.unit) == np.count_nonzero(size)
