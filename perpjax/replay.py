"""Historical replay: real hourly OHLC bars turned into a deterministic fine-grained price path.

Stress scenarios such as "run the engine on the real paths of 2020-03-12, 2021-05-19, 2022-06 and
2022-11" need prices on the engine's time grid (for example every 60 s), while the data are hourly
bars (``../shared/data/binance_usdm_perp_1h.csv.gz``, see ``datadir.default_data_path``). This module is
host-side numpy/pandas; it returns log prices that the caller hands to the engine.

Construction of one bar (``bridge_path``), with ``S = steps_per_bar`` grid steps per bar:

* Anchors. The bar runs from its open (local time 0) to its close (local time ``S``) and touches its
  high and its low exactly, each at one interior grid point. Order of the extremes follows the usual
  OHLC convention: a bar that closed up (close >= open) visits the low first, then the high; a bar
  that closed down visits the high first, then the low. The two times are drawn from the ``rng``
  uniformly among the ordered pairs of distinct interior points ``1 .. S-1``.
* Gaps. The grid point on a bar boundary belongs to the previous bar and holds its close (point 0 of
  the whole path holds the first bar's open). If a bar's open differs from the previous close, the
  bar's bridge still starts from its open at local time 0, so the first step of the bar carries the
  gap together with the first increment: there is no extra grid point for the jump.
* Bridge. Between consecutive anchors (open, first extreme, second extreme, close) the log price
  follows a Brownian bridge driven by ``rng`` normals. Its per-step variance is the bar's Parkinson
  variance ``ln(H/L)^2 / (4 ln 2)`` spread evenly over the ``S`` steps, so quiet bars are smooth and
  wide bars are rough. (Subtracting the piecewise-linear interpolation at the anchor times from one
  random walk gives independent bridges on the three segments.)
* Range. Points that leave ``[ln L, ln H]`` are reflected back into it (folded at the walls) rather
  than clipped: a clip would pin runs of steps exactly at the wick and add extra touches of the
  extremes out of the OHLC order. After folding the anchors are the bar's only grid points at the
  high and low (up to a close or open that itself equals an extreme), so each bar's maximum and
  minimum over its grid points are exactly its ``ln H`` and ``ln L``.
* Small ``S``. ``S = 1``: the path is just the closes (after the first open); the wicks are not
  represented. ``S = 2``: the single interior point takes the one extreme that makes the bar's range
  on the grid (over open, extreme, close) widest, ties going to the extreme the OHLC convention visits
  first; no random numbers are drawn. ``S = 3``: both interior points are extremes, in convention
  order, and there is no room for noise. ``S >= 4``: the general construction above.

``replay_log_prices`` stacks one such path per symbol, each from ``np.random.default_rng([seed, i])``
for symbol index ``i``, on the grid ``start, start + step_seconds, ..., start + horizon_seconds``.

Limits: one deterministic path per seed. Only the hourly open, high, low and close are data; the
intrabar path, the times of the extremes and the ordering rule are a model. The file holds last-trade
prices, not mark prices, so its wicks can be far wider than the mark price moved (see the data
README); cross-symbol intrabar co-movement is not modelled (each symbol has its own random stream),
only the hourly values are jointly real.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .datadir import DATA_DIR_ENV as DATA_DIR_ENV
from .datadir import DATA_FILE as DATA_FILE
from .datadir import default_data_path as default_data_path
from .io import read_csv
from .timeutil import parse_time

BAR_SECONDS = 3600
_COLUMNS = ["timestamp", "symbol", "open", "high", "low", "close"]


def _iso(ts: int) -> str:
    return pd.Timestamp(int(ts), unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _symbol_list(symbols) -> list[str]:
    if isinstance(symbols, str):
        symbols = [symbols]
    symbols = list(symbols) if isinstance(symbols, Iterable) else [symbols]
    if not symbols:
        raise ValueError("symbols is empty")
    dup = sorted({s for s in symbols if symbols.count(s) > 1})
    if dup:
        raise ValueError(f"symbols repeated: {dup}")
    return [str(s) for s in symbols]


def _check_ohlc(bars: np.ndarray, what: str, times: np.ndarray | None = None) -> None:
    """Raise ValueError on non-finite or non-positive prices or a high/low that does not bracket
    the open and close."""
    o, h, lo, c = bars.T
    bad_price = ~np.isfinite(bars).all(axis=1) | (bars <= 0).any(axis=1)
    bad_range = (h < np.maximum(o, c)) | (lo > np.minimum(o, c))
    for mask, why in ((bad_price, "non-positive or non-finite price"),
                      (bad_range, "inconsistent bar (high < max(open, close) or low > min(open, close))")):
        if mask.any():
            k = int(np.argmax(mask))
            where = f"at {_iso(times[k])}" if times is not None else f"at bar {k}"
            raise ValueError(f"{what}: {why} {where}: open, high, low, close = {bars[k].tolist()}")


def load_bars(path, symbols, start, end, *, bar_seconds: int = BAR_SECONDS) -> dict[str, np.ndarray]:
    """Bars of ``symbols`` with open time in ``[start, end)`` (unix seconds, UTC) from a long-format
    csv (gzip ok) with columns ``timestamp,symbol,open,high,low,close``.

    Returns ``{symbol: (n_bars, 4) float64 array of open, high, low, close}`` in the order given.
    Every bar open time on the ``bar_seconds`` grid inside the window must be present.
    """
    path = Path(path)
    symbols = _symbol_list(symbols)
    start, end = parse_time(start, "start"), parse_time(end, "end")
    bar_seconds = _positive_int(bar_seconds, "bar_seconds")
    if end <= start:
        raise ValueError(f"empty window: end {_iso(end)} is not after start {_iso(start)}")
    if not path.is_file():
        raise ValueError(
            f"price data file not found: {path}. Set {DATA_DIR_ENV} to the folder holding {DATA_FILE}, "
            f"or pass the path explicitly"
        )
    df = read_csv(path, f"price data: {path}", header=",".join(_COLUMNS), usecols=_COLUMNS,
                  dtype={"timestamp": "int64", "symbol": str})
    present = set(df["symbol"].unique())
    missing = [s for s in symbols if s not in present]
    if missing:
        raise ValueError(f"symbol(s) {missing} not in {path}; available: {sorted(present)}")

    expected = np.arange(-(-start // bar_seconds) * bar_seconds, end, bar_seconds, dtype=np.int64)
    if expected.size == 0:
        raise ValueError(f"window [{_iso(start)}, {_iso(end)}) holds no {bar_seconds} s bar open time")
    window = df[(df["timestamp"] >= start) & (df["timestamp"] < end)]
    out: dict[str, np.ndarray] = {}
    for sym in symbols:
        rows = window[window["symbol"] == sym].sort_values("timestamp")
        ts = rows["timestamp"].to_numpy(np.int64)
        if ts.size == 0:
            all_ts = df.loc[df["symbol"] == sym, "timestamp"]
            raise ValueError(
                f"{sym} has no bars in [{_iso(start)}, {_iso(end)}) (first missing: {_iso(expected[0])}); "
                f"its data in {path.name} span {_iso(all_ts.min())} to {_iso(all_ts.max())}"
            )
        if np.any(np.diff(ts) == 0):
            k = int(np.argmax(np.diff(ts) == 0))
            raise ValueError(f"{sym}: duplicate bar at {_iso(ts[k])}")
        off_grid = ts % bar_seconds != 0
        if off_grid.any():
            raise ValueError(f"{sym}: bar at {_iso(ts[np.argmax(off_grid)])} is not on the {bar_seconds} s grid")
        if ts.size != expected.size or not np.array_equal(ts, expected):
            gaps = np.setdiff1d(expected, ts)
            raise ValueError(
                f"{sym}: {gaps.size} missing bar(s) in [{_iso(start)}, {_iso(end)}), first missing: {_iso(gaps[0])}"
            )
        bars = rows[["open", "high", "low", "close"]].to_numpy(np.float64)
        _check_ohlc(bars, sym, ts)
        out[sym] = bars
    return out


def _fold(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Reflect the points of ``x`` outside ``[lo, hi]`` (row-wise bounds) back into it."""
    width = hi - lo
    out = (x < lo) | (x > hi)
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.mod(x - lo, 2.0 * width)
        y = np.where(y > width, 2.0 * width - y, y)
    folded = np.where(width > 0, lo + y, lo)
    return np.clip(np.where(out, folded, x), lo, hi)


def bridge_path(bars, steps_per_bar, rng: np.random.Generator) -> np.ndarray:
    """Log prices of one symbol at ``n * steps_per_bar + 1`` grid points from its ``(n, 4)`` OHLC bars.

    Point 0 is the first bar's log open; point ``(k + 1) * steps_per_bar`` is bar ``k``'s log close.
    Inside each bar the path touches the bar's high and low exactly (``steps_per_bar >= 3``) in OHLC
    order and stays within them; see the module docstring for the construction and small cases.
    """
    S = _positive_int(steps_per_bar, "steps_per_bar")
    bars = np.asarray(bars, dtype=np.float64)
    if bars.ndim != 2 or bars.shape[1] != 4 or bars.shape[0] == 0:
        raise ValueError(f"bars must have shape (n >= 1, 4) (open, high, low, close), got {bars.shape}")
    _check_ohlc(bars, "bars")
    n = bars.shape[0]
    lo_, lh, ll, lc = np.log(bars).T
    up = bars[:, 3] >= bars[:, 0]
    first = np.where(up, ll, lh)  # extreme visited first under the OHLC convention
    second = np.where(up, lh, ll)

    if S == 1:
        return np.concatenate([lo_[:1], lc])
    if S == 2:
        span_hi = lh - np.minimum(lo_, lc)  # grid range over (open, extreme, close) if the high is taken
        span_lo = np.maximum(lo_, lc) - ll
        take_hi = np.where(span_hi == span_lo, ~up, span_hi > span_lo)
        local = np.stack([np.where(take_hi, lh, ll), lc], axis=1)
        return np.concatenate([lo_[:1], local.ravel()])

    if S == 3:
        t1 = np.ones(n, dtype=np.int64)
        t2 = np.full(n, 2, dtype=np.int64)
    else:
        a = rng.integers(0, S - 1, size=n)
        b = rng.integers(0, S - 2, size=n)
        b = b + (b >= a)  # uniform over ordered pairs of distinct points in 0 .. S-2
        t1, t2 = np.minimum(a, b) + 1, np.maximum(a, b) + 1

    times = np.stack([np.zeros(n, dtype=np.int64), t1, t2, np.full(n, S, dtype=np.int64)], axis=1)
    values = np.stack([lo_, first, second, lc], axis=1)
    rows = np.arange(n)[:, None]
    j = np.arange(S + 1)[None, :]

    # One random walk per bar, minus its piecewise-linear interpolation at the anchor times: a Brownian
    # bridge on each segment between anchors, added to the linear interpolation of the anchor values.
    var_bar = (lh - ll) ** 2 / (4.0 * np.log(2.0))
    if S > 3:
        z = rng.standard_normal((n, S)) * np.sqrt(var_bar / S)[:, None]
        walk = np.concatenate([np.zeros((n, 1)), np.cumsum(z, axis=1)], axis=1)
    else:
        walk = np.zeros((n, S + 1))
    seg = (j >= times[:, 1:2]).astype(np.int64) + (j >= times[:, 2:3])
    seg = np.minimum(seg, 2)
    t_left = times[rows, seg]
    t_right = times[rows, seg + 1]
    w = (j - t_left) / (t_right - t_left)
    v_left, v_right = values[rows, seg], values[rows, seg + 1]
    x_left, x_right = walk[rows, t_left], walk[rows, t_right]
    x = v_left + w * (v_right - v_left) + walk - (x_left + w * (x_right - x_left))

    x = _fold(x, ll[:, None], lh[:, None])
    x[rows[:, 0], t1] = first  # anchors exact, whatever the rounding above
    x[rows[:, 0], t2] = second
    x[:, S] = lc
    return np.concatenate([lo_[:1], x[:, 1:].ravel()])


def replay_log_prices(
    path,
    symbols,
    start,
    horizon_seconds,
    step_seconds,
    seed=0,
    bar_seconds=BAR_SECONDS,
) -> np.ndarray:
    """Real-bar replay: log prices of shape ``(n_steps + 1, len(symbols))`` on the grid
    ``start + i * step_seconds``, ``n_steps = horizon_seconds / step_seconds``.

    ``start`` is unix seconds or an ISO string ("2020-03-12T00:00:00Z", "2020-03-12"; UTC) and must
    be a bar open time. ``bar_seconds`` must be a whole multiple of ``step_seconds`` and
    ``horizon_seconds`` a whole multiple of ``bar_seconds``. Symbol ``i`` uses
    ``np.random.default_rng([seed, i])``.
    """
    symbols = _symbol_list(symbols)
    step_seconds = _positive_int(step_seconds, "step_seconds")
    bar_seconds = _positive_int(bar_seconds, "bar_seconds")
    horizon_seconds = _positive_int(horizon_seconds, "horizon_seconds")
    if bar_seconds % step_seconds:
        raise ValueError(f"step_seconds={step_seconds} must divide bar_seconds={bar_seconds}")
    if horizon_seconds % bar_seconds:
        raise ValueError(f"horizon_seconds={horizon_seconds} must be a whole multiple of bar_seconds={bar_seconds}")
    start = parse_time(start, "start")
    if start % bar_seconds:
        raise ValueError(f"start {_iso(start)} is not a bar open time (multiple of {bar_seconds} s)")
    steps_per_bar = bar_seconds // step_seconds
    bars = load_bars(path, symbols, start, start + horizon_seconds, bar_seconds=bar_seconds)
    cols = [bridge_path(bars[s], steps_per_bar, np.random.default_rng([int(seed), i])) for i, s in enumerate(symbols)]
    out = np.stack(cols, axis=1)
    assert out.shape == (horizon_seconds // step_seconds + 1, len(symbols))
    return out
