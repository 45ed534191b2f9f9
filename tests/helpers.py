"""Small models for reference tests, built through the same config layer users use."""

import copy

from perpjax.config import build_model, load_config


def single_position_config(*, vol=0.8, drift=0.0, step_seconds=60.0, horizon_seconds=86400.0, leverage=10.0,
                           mmr=0.01, bridge=False, check_every_seconds=None, dtype="float64", size=1.0,
                           mark="index"):
    """One isolated long of 1 unit at price 100, GBM, no funding, no basis: a textbook barrier problem."""
    cfg = {
        "seed": 1, "paths": 1000, "chunk_size": 1000, "dtype": dtype,
        "time": {"step_seconds": step_seconds, "horizon_seconds": horizon_seconds},
        "assets": [{"name": "X", "price": 100.0, "vol": vol, "drift": drift, "depth_usd": 1e9}],
        "correlation": [[1.0]],
        "mark": {"kind": mark},
        "funding": {"enabled": False},
        "ladders": {"X": [{"floor": 0, "mmr": mmr, "imr": min(1.0, 2 * mmr + 1e-9)}]},
        "liquidation": {"bridge": bridge, "fee_rate": 0.0, "check_every_seconds": check_every_seconds},
        "book": {"accounts": [{"id": "a", "mode": "isolated",
                               "positions": [{"asset": "X", "size": size, "entry": 100.0,
                                              "margin": 100.0 * size / leverage}]}]},
    }
    return cfg


def build(cfg, overrides=()):
    from perpjax.config import apply_overrides

    return build_model(apply_overrides(copy.deepcopy(cfg), overrides))


def default_config():
    return load_config(None)


def backtest_config(vol):
    """One asset X at 100, hourly steps over a day, one small cross account: a base for backtests and fits."""
    return {"seed": 0, "time": {"step_seconds": 3600, "horizon_seconds": 86400},
            "assets": [{"name": "X", "price": 100.0, "vol": vol, "depth_usd": 1e9}], "correlation": [[1.0]],
            "ladders": {"X": [{"floor": 0, "mmr": 0.005, "imr": 0.01}]},
            "book": {"accounts": [{"id": "a", "collateral": 1e6, "positions": [{"asset": "X", "size": 1,
                                                                                 "entry": 100.0}]}]}}


def gbm_bars(path, vol, days, sub=360, seed=5, start="2021-01-01"):
    """Hourly OHLC bars (symbol XUSDT) of a driftless GBM in log space (E[S_T] = S_0 e^{-vol^2 T/2}, the
    engine's model with drift 0), highs and lows from ``sub`` points per hour, written as CSV to ``path``."""
    import math

    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = days * 24
    dt = 1 / (365 * 24 * sub)
    x = np.log(100.0) + np.cumsum(np.r_[0.0, -0.5 * vol**2 * dt + vol * math.sqrt(dt) * rng.standard_normal(n * sub)])
    p = np.exp(x)
    t0 = int(pd.Timestamp(start, tz="UTC").timestamp())
    rows = {"timestamp": t0 + 3600 * np.arange(n), "symbol": "XUSDT", "open": p[:-1:sub],
            "high": [p[i * sub:(i + 1) * sub + 1].max() for i in range(n)],
            "low": [p[i * sub:(i + 1) * sub + 1].min() for i in range(n)], "close": p[sub::sub]}
    pd.DataFrame(rows).to_csv(path, index=False)
