"""Moving-block bootstrap of the FHS residual vectors (config ``innovations.block_bars``).

Exact properties: within a block the simulated innovations are consecutive rows of the sample, the
block's first row is uniform on 0 .. n - B (a chi-square test on 10 cells), the draws do not depend on the
chunking, and the law of the sum of the innovations over one block is the sample's own B-bar sums over
every start (its second moment, computed from the sample, within 4 MC SE) - not the i.i.d. bootstrap's
``B`` (the test sample is autocorrelated)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from perpjax import random as R
from perpjax.config import ConfigError, build_model
from perpjax.engine import simulate

from .test_forecast_model import pair_config, residual_file

K_SE = 4.0
B = 24


def _ar_sample(n=3000, phi=0.4, seed=0):
    """An AR(1) pair (so block sums differ from i.i.d. sums), with a recognisable row index column."""
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((n, 2))
    z = np.empty_like(e)
    z[0] = e[0]
    for t in range(1, n):
        z[t] = phi * z[t - 1] + e[t]
    return z


def _model(tmp_path, z, block=B, step=3600.0, bar=None, horizon=86400.0):
    inn = {"kind": "historical", "residuals": str(residual_file(tmp_path, z=z)), "block_bars": block,
           **({"bar_seconds": bar} if bar else {})}
    return build_model(pair_config(step=step, horizon=horizon, innovations=inn, dtype="float64"))[0]


def test_blocks_are_consecutive_rows_with_a_uniform_start(tmp_path):
    z = _ar_sample()
    model = _model(tmp_path, z)
    sample = np.asarray(model.prices.residuals)
    n = 4000
    keys = R.path_key(R.seed_key(5), jnp.arange(n, dtype=jnp.uint32))
    steps = jnp.arange(1, 2 * B + 1, dtype=jnp.int32)
    got = np.asarray(jax.jit(jax.vmap(lambda k: jax.vmap(lambda t: model.prices.draw(k, t).z)(steps)))(keys))
    rows = np.array([[np.flatnonzero(np.all(sample == v, axis=1))[0] for v in path] for path in got[:200]])
    assert np.all(np.diff(rows[:, :B], axis=1) == 1) and np.all(np.diff(rows[:, B:], axis=1) == 1)
    assert np.mean(rows[:, B] == rows[:, B - 1] + 1) < 0.05  # a new block starts afresh
    starts = np.array([np.flatnonzero(np.all(sample == path[0], axis=1))[0] for path in got])
    assert starts.min() >= 0 and starts.max() <= len(sample) - B
    counts = np.histogram(starts, bins=10, range=(0, len(sample) - B + 1))[0]
    assert stats.chisquare(counts).pvalue > 1e-3, counts


@pytest.mark.parametrize("step, bar", [(3600.0, None), (1800.0, 3600)])
def test_block_sum_law_is_the_samples(tmp_path, step, bar):
    """E[(sum of the B innovations of a day)^2] equals the mean over every start s of the sample's
    (sum_{j<B} z_{s+j})^2, within 4 SE; the i.i.d. bootstrap's value B lies far outside (AR(1), phi 0.4)."""
    z = _ar_sample()
    model = _model(tmp_path, z, step=step, bar=bar)
    sample = np.asarray(model.prices.residuals)
    windows = np.lib.stride_tricks.sliding_window_view(sample, B, axis=0).sum(axis=-1)  # (n - B + 1, 2)
    want = (windows**2).mean(axis=0)
    n = 8000
    out = simulate(model, seed=3, n_paths=n, chunk_size=4000)
    vol = np.asarray(model.prices.vol, np.float64)
    dt = 3600.0 / (365 * 86400)
    r = np.asarray(out.path_log_return, np.float64)  # with bars the bridge ends on each bar's return
    s = (r + 0.5 * vol**2 * dt * B) / (vol * math.sqrt(dt))
    got, se = (s**2).mean(axis=0), (s**2).std(axis=0, ddof=1) / math.sqrt(n)
    assert np.all(np.abs(got - want) < K_SE * se), (got, want, se)
    assert np.all(want - B > 10 * se)  # the dependence matters: i.i.d. draws would give B


def test_block_draws_do_not_depend_on_the_chunk(tmp_path):
    model = _model(tmp_path, _ar_sample(), step=1800.0, bar=3600, horizon=2 * 86400.0)
    a = simulate(model, seed=1, n_paths=96, chunk_size=96)
    b = simulate(model, seed=1, n_paths=96, chunk_size=40)
    np.testing.assert_array_equal(np.asarray(a.path_log_return), np.asarray(b.path_log_return))


def test_block_bars_is_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"innovations.block_bars: only with kind 'historical'"):
        build_model(pair_config(innovations={"kind": "gaussian", "block_bars": 24}))
    with pytest.raises(ConfigError, match=r"innovations.block_bars: 5000 bars per block, more than the 3000"):
        _model(tmp_path, _ar_sample(), block=5000)
    with pytest.raises(ConfigError, match=r"innovations.block_bars"):
        _model(tmp_path, _ar_sample(), block=0)


def test_blocks_never_join_the_two_sides_of_a_gap(tmp_path):
    """A residual file whose times miss bars (a row the fit dropped, data gaps): every simulated block is
    a run of consecutive bars and its first row is uniform over the valid starts only."""
    from perpjax.innovations import block_starts

    z = _ar_sample(n=600)
    times = 3600 * np.arange(600, dtype=np.int64)
    times[100:] += 3600  # a missing bar before row 100 ...
    times[400:] += 7200  # ... and two before row 400
    starts, count = block_starts(times, 3600.0, B)
    valid = [s for s in range(600 - B + 1) if not (s < 100 < s + B or s < 400 < s + B)]
    assert count == len(valid) and list(starts[:count]) == valid
    s0, c0 = block_starts(3600 * np.arange(600), 3600.0, B)  # no gaps: every start, the same rows as before
    assert c0 == 600 - B + 1 and list(s0) == list(range(600 - B + 1))
    assert block_starts(times, 3600.0, 1) is None and block_starts(None, 3600.0, B) is None
    with pytest.raises(ValueError, match="no run of 24 consecutive"):
        block_starts(3600 * np.arange(0, 200, 2), 3600.0, B)

    p = tmp_path / "gaps.npz"
    np.savez(p, residuals=z, assets=np.array(["A", "B"]), bar_seconds=3600.0, times=times)
    cfg = pair_config(step=3600.0, horizon=2 * 86400.0, dtype="float64",
                      innovations={"kind": "historical", "residuals": str(p), "block_bars": B})
    model = build_model(cfg)[0]
    sample = np.asarray(model.prices.residuals)
    keys = R.path_key(R.seed_key(11), jnp.arange(3000, dtype=jnp.uint32))
    steps = jnp.arange(1, 2 * B + 1, dtype=jnp.int32)
    got = np.asarray(jax.jit(jax.vmap(lambda k: jax.vmap(lambda t: model.prices.draw(k, t).z)(steps)))(keys))
    rows = np.array([[np.flatnonzero(np.all(sample == v, axis=1))[0] for v in path] for path in got])
    for blk in (rows[:, :B], rows[:, B:]):
        assert np.all(np.diff(blk, axis=1) == 1)
        assert np.all(np.diff(times[blk], axis=1) == 3600)  # consecutive bars, never across a gap
    first = np.concatenate([rows[:, 0], rows[:, B]])
    assert set(first) <= set(valid)
    edges = np.linspace(0, len(valid), 11).astype(int)  # 10 cells of valid starts
    cells = np.add.reduceat(np.bincount(np.searchsorted(valid, first), minlength=len(valid)), edges[:-1])
    want = len(first) * np.diff(edges) / len(valid)
    assert stats.chisquare(cells, want).pvalue > 1e-3, cells


def test_auto_block_length_and_a_refit_keeps_the_configs_blocks(tmp_path):
    """``--block-bars auto`` is round(n^(1/4)) of the rows written; a backtest refit of a config with
    blocks bootstraps in blocks of the same length."""
    import yaml

    from perpjax import estimate
    from perpjax.cli import main
    from perpjax.cli.backtest import refitter
    from perpjax.innovations import auto_block_bars

    from .helpers import backtest_config, gbm_bars

    assert [auto_block_bars(n) for n in (1, 16, 8712, 11152, 50_000)] == [1, 2, 10, 10, 15]
    gbm_bars(tmp_path / "bars.csv", 0.6, days=40, sub=4, seed=3)
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(backtest_config(0.6)))
    out = tmp_path / "fit.yaml"
    assert main(["fit", str(tmp_path / "bars.csv"), "--symbols", "XUSDT", "--names", "X", "--base", str(base),
                 "--conditional", "--block-bars", "auto", "--stress", "quantile", "--lookback-days", "10",
                 "--out", str(out)]) == 0
    cfg = yaml.safe_load(out.read_text())
    rows = len(np.load(tmp_path / "fit.residuals.npz")["residuals"])
    assert cfg["innovations"]["block_bars"] == auto_block_bars(rows) == round(rows ** 0.25)
    cfg["innovations"]["block_bars"] = 7
    closes = estimate.read_prices(tmp_path / "bars.csv")
    refit = refitter(cfg, closes, {"X": "XUSDT"}, 20.0, True, tmp_path / "refits")
    new = refit(int(pd.Timestamp("2021-02-05", tz="UTC").timestamp()))
    assert new["innovations"]["block_bars"] == 7 and new["innovations"]["kind"] == "historical"
    build_model(new)
