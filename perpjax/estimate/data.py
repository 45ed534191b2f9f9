"""Price data for the estimators: the long CSV read into a wide close frame, and log returns over the
common window of a set of symbols (returns across a missing bar dropped).

Window bounds (``start``, ``end``) are parsed by ``perpjax.timeutil.parse_time``, the package's one date
parser (unix seconds or a date string / Timestamp, naive = UTC).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from ..io import read_csv
from ..timeutil import parse_time

SECONDS_PER_YEAR = 365.0 * 86400.0
REQUIRED_COLUMNS = ("timestamp", "symbol", "close")


def _read_long(path) -> pd.DataFrame:
    """One long CSV's (timestamp, symbol, close) rows, checked (``read_prices``)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    df = read_csv(path, path, header=",".join(REQUIRED_COLUMNS))
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; need {list(REQUIRED_COLUMNS)}")
    df = df.loc[:, list(REQUIRED_COLUMNS)]
    dup = df.duplicated(["timestamp", "symbol"])
    if dup.any():
        row = df[dup].iloc[0]
        raise ValueError(f"{path}: {int(dup.sum())} repeated (timestamp, symbol) rows, "
                         f"first ({row['timestamp']}, {row['symbol']})")
    close = pd.to_numeric(df["close"], errors="coerce").astype(np.float64)
    bad = ~(np.isfinite(close) & (close > 0))
    if bad.any():
        i = int(np.argmax(bad.to_numpy()))
        v = df["close"].iloc[i]
        shown = "an empty or NaN cell" if pd.isna(v) else f"'{v}'"
        raise ValueError(f"{path}: line {i + 2}, column close: {shown} is not a positive finite "
                         f"price ({int(bad.sum())} such row(s); a missing bar is a missing row, not an empty close)")
    df["close"] = close
    df["file"] = path
    return df


def read_prices(path) -> pd.DataFrame:
    """Wide DataFrame of close prices from a long CSV (``timestamp,symbol,...,close``; gz ok), or several.

    Args:
        path: CSV file, one row per (timestamp, symbol); ``timestamp`` in unix seconds (UTC). A list
            of files is concatenated (a window across files): rows repeated across files are kept
            once, and must agree (the same close, to 1e-12 relative).

    Returns:
        DataFrame indexed by timestamp (int, unix seconds, sorted), one float column per symbol
        (sorted); NaN where a symbol has no bar.

    Raises:
        ValueError: a file does not exist, lacks a required column, or repeats a (timestamp, symbol)
            pair; two files disagree on a repeated pair (naming both files and the pair).
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths:
        raise ValueError("csv: no price file given")
    df = pd.concat([_read_long(p) for p in paths], ignore_index=True)
    if len(paths) > 1:
        first = df.drop_duplicates(["timestamp", "symbol"], keep="first").set_index(["timestamp", "symbol"])
        rep = df[df.duplicated(["timestamp", "symbol"], keep="first")]
        if len(rep):
            ref = first.loc[list(zip(rep["timestamp"], rep["symbol"], strict=True))]
            bad = ~np.isclose(rep["close"].to_numpy(), ref["close"].to_numpy(), rtol=1e-12, atol=0.0)
            if bad.any():
                j = int(np.argmax(bad))
                row, other = rep.iloc[j], ref.iloc[j]
                raise ValueError(f"{row['file']} and {other['file']}: overlapping rows disagree ({int(bad.sum())}), "
                                 f"first ({row['timestamp']}, {row['symbol']}): close {row['close']!r} vs "
                                 f"{other['close']!r}")
        df = first.reset_index()
    wide = df.pivot(index="timestamp", columns="symbol", values="close").sort_index()
    wide = wide.reindex(columns=sorted(wide.columns))
    wide.index = wide.index.astype(np.int64)
    wide.index.name, wide.columns.name = "timestamp", None
    return wide


def returns_frame(closes: pd.DataFrame, symbols, start=None, end=None, bar_seconds=None):
    """Log returns of ``symbols`` over their common window, with the closes they come from.

    Same arguments and checks as ``log_returns``.

    Returns:
        (returns, closes used): ``returns`` a DataFrame of ``log(close_t / close_{t-1})`` indexed by
        the later bar's timestamp, one column per symbol (returns across a gap dropped); ``closes
        used`` the rows of ``closes`` in the window where every symbol has a price.
    """
    if isinstance(symbols, str):
        symbols = [symbols]
    symbols = list(symbols)
    if not symbols:
        raise ValueError("symbols: need at least one symbol")
    absent = [s for s in symbols if s not in closes.columns]
    if absent:
        raise ValueError(f"symbols: {absent} not in the price data (have {list(closes.columns)})")
    if len(set(symbols)) != len(symbols):
        raise ValueError(f"symbols: repeated in {symbols}")
    t0 = None if start is None else parse_time(start, "start")
    t1 = None if end is None else parse_time(end, "end")
    sub = closes.loc[:, symbols].sort_index()
    idx = sub.index.to_numpy(np.float64)
    keep = np.ones(len(sub), bool)
    if t0 is not None:
        keep &= idx >= t0
    if t1 is not None:
        keep &= idx < t1
    sub = sub[keep].dropna(how="any")
    vals = sub.to_numpy(np.float64)
    if not np.all(np.isfinite(vals) & (vals > 0)):
        raise ValueError("closes: prices must be finite and > 0")
    if len(sub) < 3:
        raise ValueError(f"symbols {symbols}: fewer than 3 common bars in the window [{start}, {end})")
    ts = sub.index.to_numpy(np.int64)
    gaps = np.diff(ts)
    bar = float(np.median(gaps)) if bar_seconds is None else float(bar_seconds)
    lr = np.diff(np.log(vals), axis=0)
    regular = gaps == bar  # a return spanning a gap (missing bar) is dropped
    if not regular.any():
        raise ValueError(f"bar_seconds: no two consecutive bars {bar:g} s apart (median spacing "
                         f"{float(np.median(gaps)):g} s)")
    ret = pd.DataFrame(lr[regular], index=pd.Index(ts[1:][regular], name="timestamp"), columns=symbols)
    return ret, sub


def log_returns(closes: pd.DataFrame, symbols, start=None, end=None, *, bar_seconds=None) -> np.ndarray:
    """Log returns of ``symbols`` over the window where all of them have prices.

    Args:
        closes: wide close prices (``read_prices``).
        symbols: column names (one string or a sequence).
        start, end: window on the bar timestamps, ``start <= t < end``; unix seconds or a date
            (string or Timestamp; naive means UTC). None = unbounded.
        bar_seconds: bar length; returns across a longer gap (a missing bar) are dropped.
            Default: the median spacing of the timestamps.

    Returns:
        (n, k) float64 array, ``log(close_t / close_{t-1})`` over consecutive common bars.

    Raises:
        ValueError: a symbol is absent, or fewer than 3 common bars.
    """
    return returns_frame(closes, symbols, start, end, bar_seconds)[0].to_numpy()
