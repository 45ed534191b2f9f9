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
