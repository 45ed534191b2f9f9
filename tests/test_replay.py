"""Historical replay: Brownian-bridge interpolation of OHLC bars, the data loader and its errors."""

import gzip

import numpy as np
import pytest

from perpjax.replay import (
    bridge_path,
    default_data_path,
    load_bars,
    replay_log_prices,
)
from perpjax.timeutil import parse_time

# Up bar, down bar, a bar opening with a gap above the previous close (down), a flat bar, an up bar
# opening with a gap below. Open and close are strictly inside the range except on the flat bar.
BARS = np.array(
    [
        [100.0, 112.0, 97.0, 108.0],  # up: low first, then high
        [108.0, 110.0, 95.0, 99.0],  # down: high first, then low
        [103.0, 104.5, 98.0, 100.0],  # gap up from 99 to 103, down bar
        [100.0, 100.0, 100.0, 100.0],  # flat
        [96.0, 101.0, 94.0, 99.5],  # gap down from 100 to 96, up bar
    ]
)
S = 60


def _bar(path, k, steps):
    """Grid points belonging to bar k (the boundary point before it belongs to the previous bar)."""
    return path[k * steps + 1 : (k + 1) * steps + 1]


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_bridge_hits_wicks_stays_inside_and_ends_at_close(seed):
    path = bridge_path(BARS, S, np.random.default_rng(seed))
    assert path.shape == (len(BARS) * S + 1,)
    assert path[0] == np.log(BARS[0, 0])
    for k, (o, h, lo, c) in enumerate(BARS):
        seg = _bar(path, k, S)
        assert abs(seg.max() - np.log(h)) <= 1e-12
        assert abs(seg.min() - np.log(lo)) <= 1e-12
        assert np.all(seg <= np.log(h)) and np.all(seg >= np.log(lo))
        assert seg[-1] == np.log(c)
        if h > lo:
            # exactly one grid point at each wick, none of them the close
            assert np.sum(seg == np.log(h)) == 1 and np.sum(seg == np.log(lo)) == 1
            i_hi, i_lo = int(np.argmax(seg)), int(np.argmin(seg))
            assert i_hi < S - 1 and i_lo < S - 1
            if c >= o:
                assert i_lo < i_hi, f"up bar {k}: low must come first"
            else:
                assert i_hi < i_lo, f"down bar {k}: high must come first"
        else:
            assert np.all(seg == np.log(h))


def test_bridge_gap_is_carried_by_the_first_step():
    path = bridge_path(BARS, S, np.random.default_rng(3))
    # the boundary point holds the previous close, the first point inside the bar is in the new range
    assert path[2 * S] == np.log(99.0)
    assert np.log(98.0) <= path[2 * S + 1] <= np.log(104.5)
    assert path[4 * S] == np.log(100.0)
    assert np.log(94.0) <= path[4 * S + 1] <= np.log(101.0)


def test_bridge_is_deterministic_per_seed():
    a = bridge_path(BARS, S, np.random.default_rng(11))
    b = bridge_path(BARS, S, np.random.default_rng(11))
    c = bridge_path(BARS, S, np.random.default_rng(12))
    np.testing.assert_array_equal(a, b)
    closes = np.arange(1, len(BARS) + 1) * S
    np.testing.assert_array_equal(a[closes], c[closes])
    interior = np.setdiff1d(np.arange(1, len(a)), closes)
    assert not np.array_equal(a[interior], c[interior])


def test_bridge_small_steps_per_bar():
    rng = np.random.default_rng(0)
    one = bridge_path(BARS, 1, rng)
    np.testing.assert_array_equal(one, np.log(np.concatenate([BARS[:1, 0], BARS[:, 3]])))

    two = bridge_path(BARS, 2, rng)
    assert two.shape == (2 * len(BARS) + 1,)
    np.testing.assert_array_equal(two[2::2], np.log(BARS[:, 3]))
    # bar 0 (up, 100 -> 108, range 97..112): the high widens the grid range more than the low
    assert two[1] == np.log(112.0)
    for k, (_, h, lo, _) in enumerate(BARS):
        assert two[2 * k + 1] in (np.log(h), np.log(lo))

    three = bridge_path(BARS, 3, rng)
    for k, (o, h, lo, c) in enumerate(BARS):
        seg = _bar(three, k, 3)
        expected = [lo, h, c] if c >= o else [h, lo, c]
        np.testing.assert_array_equal(seg, np.log(expected))


@pytest.mark.parametrize("bad", [0, -3, 2.5, 60.0, True, "60"])
def test_bridge_rejects_bad_steps_per_bar(bad):
    with pytest.raises(ValueError, match="steps_per_bar"):
        bridge_path(BARS, bad, np.random.default_rng(0))


def test_bridge_rejects_inconsistent_bars():
    with pytest.raises(ValueError, match="inconsistent"):
        bridge_path(np.array([[100.0, 99.0, 95.0, 98.0]]), 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="non-positive"):
        bridge_path(np.array([[100.0, 101.0, 0.0, 98.0]]), 10, np.random.default_rng(0))


def test_parse_time():
    t = 1583971200  # 2020-03-12 00:00 UTC
    assert parse_time(t) == t
    assert parse_time(np.int64(t)) == t
    assert parse_time("2020-03-12T00:00:00Z") == t
    assert parse_time("2020-03-12") == t
    assert parse_time("2020-03-12T01:00:00+01:00") == t
    assert parse_time(float(t)) == t and parse_time(np.float64(t)) == t
    with pytest.raises(ValueError):
        parse_time("not a date")
    # Errors name the field they came from.
    with pytest.raises(ValueError, match="^start: cannot parse 'not a date'"):
        parse_time("not a date", "start")
    with pytest.raises(ValueError, match="^end: unix seconds must be a whole number"):
        parse_time(t + 0.5, "end")
    with pytest.raises(ValueError, match="^time: "):
        parse_time(True)


def test_default_data_path_env(monkeypatch, tmp_path):
    monkeypatch.setenv("PERPJAX_DATA_DIR", str(tmp_path))
    assert default_data_path() == tmp_path / "binance_usdm_perp_1h.csv.gz"
    monkeypatch.delenv("PERPJAX_DATA_DIR")
    assert default_data_path().parts[-3:] == ("shared", "data", "binance_usdm_perp_1h.csv.gz")


def _write_csv(path, rows):
    lines = ["timestamp,symbol,open,high,low,close,volume"] + [",".join(map(str, r)) for r in rows]
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")


def test_load_bars_synthetic_file_and_errors(tmp_path):
    t0 = 1_600_000_000 - 1_600_000_000 % 3600
    rows = [(t0 + 3600 * i, "AAAUSDT", 10, 11, 9, 10.5, 1) for i in range(4)]
    rows += [(t0 + 3600 * i, "BBBUSDT", 5, 5.5, 4.5, 5, 1) for i in (0, 1, 3)]  # hour 2 missing
    path = tmp_path / "bars.csv.gz"
    _write_csv(path, rows)

    bars = load_bars(path, ["AAAUSDT"], t0, t0 + 4 * 3600)
    assert list(bars) == ["AAAUSDT"] and bars["AAAUSDT"].shape == (4, 4)
    assert bars["AAAUSDT"].dtype == np.float64
    np.testing.assert_array_equal(bars["AAAUSDT"][0], [10, 11, 9, 10.5])
    assert load_bars(path, ["BBBUSDT"], t0, t0 + 2 * 3600)["BBBUSDT"].shape == (2, 4)

    with pytest.raises(ValueError, match=r"BBBUSDT.*first missing: 2020-09-13T14:00:00Z"):
        load_bars(path, ["AAAUSDT", "BBBUSDT"], t0, t0 + 4 * 3600)
    with pytest.raises(ValueError, match="CCCUSDT"):
        load_bars(path, ["CCCUSDT"], t0, t0 + 3600)
    with pytest.raises(ValueError, match="AAAUSDT has no bars"):
        load_bars(path, ["AAAUSDT"], t0 + 10 * 3600, t0 + 12 * 3600)

    bad = tmp_path / "bad.csv.gz"
    _write_csv(bad, [(t0, "AAAUSDT", 10, 9.5, 9, 10.5, 1)])
    with pytest.raises(ValueError, match=r"AAAUSDT.*inconsistent"):
        load_bars(bad, ["AAAUSDT"], t0, t0 + 3600)


def test_missing_file_names_path_and_env(tmp_path):
    missing = tmp_path / "nowhere" / "binance_usdm_perp_1h.csv.gz"
    with pytest.raises(ValueError, match="PERPJAX_DATA_DIR") as e:
        load_bars(missing, ["BTCUSDT"], 0, 3600)
    assert str(missing) in str(e.value)
    with pytest.raises(ValueError) as e:
        replay_log_prices(missing, ["BTCUSDT"], "2020-03-12", 86400, 60)
    assert str(missing) in str(e.value)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"step_seconds": 7}, "step_seconds"),
        ({"step_seconds": 0}, "step_seconds"),
        ({"step_seconds": 60, "horizon_seconds": 5400}, "horizon_seconds"),
    ],
)
def test_replay_rejects_bad_grid(kwargs, name):
    args = {"horizon_seconds": 86400, **kwargs}
    # argument checks come before the file is read
    with pytest.raises(ValueError, match=name):
        replay_log_prices("unused.csv.gz", ["BTCUSDT"], "2020-03-12", **args)


# --- real data ---------------------------------------------------------------------------------------

DATA = default_data_path()
needs_data = pytest.mark.skipif(
    not DATA.is_file(), reason=f"real price data not found at {DATA} (set PERPJAX_DATA_DIR to its folder)"
)


@needs_data
def test_black_thursday_replay():
    start = parse_time("2020-03-12T00:00:00Z")
    logp = replay_log_prices(DATA, ["BTCUSDT", "ETHUSDT"], "2020-03-12T00:00:00Z", 86400, 60, seed=0)
    assert logp.shape == (1441, 2)
    bars = load_bars(DATA, ["BTCUSDT", "ETHUSDT"], start, start + 86400)
    for j, sym in enumerate(["BTCUSDT", "ETHUSDT"]):
        b = bars[sym]
        assert b.shape == (24, 4)
        assert logp[0, j] == np.log(b[0, 0])
        hourly = logp[1:, j].reshape(24, 60)
        np.testing.assert_allclose(hourly.max(axis=1), np.log(b[:, 1]), rtol=0, atol=1e-12)
        np.testing.assert_allclose(hourly.min(axis=1), np.log(b[:, 2]), rtol=0, atol=1e-12)
        np.testing.assert_array_equal(hourly[:, -1], np.log(b[:, 3]))
        assert logp[-1, j] == np.log(b[-1, 3])
    btc = np.exp(logp[:, 0])
    assert 7_500 < btc[0] < 8_200
    assert btc.min() / btc[0] < 0.70  # BTC lost more than 30% from the open to the day's low
    # same seed, same path; another seed changes the interior only
    again = replay_log_prices(DATA, ["BTCUSDT", "ETHUSDT"], 1583971200, 86400, 60, seed=0)
    np.testing.assert_array_equal(logp, again)
    other = replay_log_prices(DATA, ["BTCUSDT", "ETHUSDT"], 1583971200, 86400, 60, seed=1)
    np.testing.assert_array_equal(other[::60], logp[::60])
    assert not np.array_equal(other, logp)


@needs_data
def test_replay_symbol_not_listed_yet():
    with pytest.raises(ValueError, match=r"SOLUSDT.*2020-03-12T00:00:00Z"):
        replay_log_prices(DATA, ["BTCUSDT", "SOLUSDT"], "2020-03-12", 86400, 60)


@needs_data
def test_replay_hourly_steps_are_the_closes():
    logp = replay_log_prices(DATA, ["ETHUSDT"], "2022-11-08", 2 * 86400, 3600)
    bars = load_bars(DATA, ["ETHUSDT"], parse_time("2022-11-08"), parse_time("2022-11-10"))["ETHUSDT"]
    np.testing.assert_array_equal(logp[:, 0], np.log(np.concatenate([bars[:1, 0], bars[:, 3]])))


@needs_data
def test_replay_with_static_basis_draws_nothing_and_every_path_is_the_replay():
    """A replay whose basis is static has no random input at all: the run works (it once failed
    building an empty draw) and every path is the same path, the data's."""
    import jax.numpy as jnp

    from perpjax.config import apply_scenario, build_model, load_config
    from perpjax.engine import draw_spec, simulate_chunk
    from perpjax.random import seed_key

    cfg = apply_scenario(load_config(None, ["basis.stationary_std=0", "time.horizon_seconds=21600"]),
                         "replay_2022_11_08")
    cfg.pop("cascade")  # no feedback: the true price is the replay itself
    model = build_model(cfg)[0]
    assert draw_spec(model) == ()
    out = simulate_chunk(model, seed_key(1), jnp.uint32(0), 5)
    r = np.asarray(out.log_return)
    np.testing.assert_array_equal(r, np.broadcast_to(r[0], r.shape))
    # The replayed return over the horizon, summed in float64; the engine adds the same steps to a
    # float32 log price near 12, so 360 steps carry at most 360 half-ulps (~1.7e-4) of rounding.
    want = np.sum(np.asarray(model.schedule.log_return, np.float64), axis=0)
    assert np.min(np.abs(want)) > 1e-2  # the window really moves every asset
    np.testing.assert_allclose(r[0], want, rtol=0, atol=2e-4)
