"""Rolling-origin backtest: at each origin, the model's state filtered on data up to the origin only,
a forecast of the position set over the horizon, and what happened in the bars after it.

At origin ``o`` (every ``every_seconds`` from ``start``): the price is the close of the last bar
before ``o``; with ``filter_state`` the market state (GARCH variance ratio per asset, regime) is
filtered through the bars before ``o`` with the config's parameters (``estimate.market_state``),
otherwise every path starts from the long-run state (the unconditional model). The engine then
simulates ``paths`` paths of the horizon at ``step_seconds`` steps with the cases as isolated
accounts (index mark, no funding, no fees, continuous monitoring by the Brownian bridge), giving
P(liquidation within the horizon) per case and the 1-day VaR / ES of each unlevered long and short.
The horizon's bars give the realised outcomes (``cases``: the realised rule).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import replay
from ..config import build_model
from ..engine import simulate
from ..metrics import var_es
from ..timeutil import parse_time
from .cases import SIDES, Case, default_cases, position_loss

FORECAST_KEYS = ("cascade", "events", "calibration", "guardrails")


@dataclass
class Forecasts:
    """Per-origin forecasts and outcomes of a backtest (tidy tables)."""

    liquidations: pd.DataFrame  # origin, case, asset, side, leverage, predicted, realised
    var: pd.DataFrame  # origin, asset, side, level, var, es, realised_loss, exceeded
    wall_seconds: float
    compile_seconds: float


def forecast_config(base: dict, cases: list[Case], prices: dict, *, horizon_seconds: float, step_seconds: float,
                    paths: int, seed: int, state: dict | None) -> dict:
    """The config simulated at one origin: ``base``'s market (fitted parameters) at the origin's prices and
    state, the cases as the book, and venue mechanics that do not move the index (mark = index, no funding,
    no fees, bridge monitoring, one flat tier per asset)."""
    cfg = {k: copy.deepcopy(v) for k, v in base.items() if k not in FORECAST_KEYS}
    cfg["assets"] = [{**a, "price": float(prices[a["name"]])} for a in cfg["assets"]]
    cfg.update(paths=paths, seed=seed, chunk_size="auto",
               time={"step_seconds": step_seconds, "horizon_seconds": horizon_seconds},
               oracle={}, mark={"kind": "index"}, basis={}, funding={"enabled": False}, insurance_fund=0.0,
               liquidation={"bridge": True, "fee_rate": 0.0})
    mmr = {c.asset: c.mmr for c in cases}
    cfg["ladders"] = {a["name"]: [{"floor": 0.0, "mmr": mmr.get(a["name"], 0.005),
                                   "imr": min(1.0, 2 * max(c.mmr for c in cases) + 0.01)}] for a in cfg["assets"]}
    cfg["book"] = {"accounts": [c.account(prices[c.asset]) for c in cases]}
    if state is None:
        cfg.pop("market_state", None)
    else:
        cfg["market_state"] = state
    return cfg


def origins(start, end, every_seconds: float) -> np.ndarray:
    t0, t1 = parse_time(start, "start"), parse_time(end, "end")
    if t1 <= t0:
        raise ValueError(f"end: must be after start ({start} .. {end})")
    return np.arange(t0, t1, int(every_seconds), dtype=np.int64)


def run_backtest(base: dict, data_path, symbols: dict, *, start, end, every_seconds: float = 86400.0,
                 horizon_seconds: float = 86400.0, step_seconds: float = 3600.0, paths: int = 20_000,
                 seed: int = 0, cases: list[Case] | None = None, filter_state=None, var_levels=(0.99,),
                 bar_seconds: int = 3600, refit=None, refit_every: int = 0, progress=None) -> Forecasts:
    """Forecast and realise every origin in ``[start, end)``.

    Args:
        base: a resolved-able config with the fitted market (``perpjax fit``).
        data_path: the bars (long CSV: timestamp, symbol, open, high, low, close).
        symbols: config asset name -> symbol in the data.
        filter_state: ``None`` (unconditional) or a function ``(origin unix seconds, config) ->
            market_state`` using data before the origin only and the config's fitted parameters.
        refit: with ``refit_every`` k > 0, a function ``(origin) -> config`` re-estimating the market on
            data before the origin, called at every k-th origin (the first included); its config is
            forecast until the next refit. None: ``base`` throughout.
        progress: ``progress(done, total)`` after each origin.
    """
    names = [a["name"] for a in base["assets"]]
    cases = cases or default_cases(names)
    os_ = origins(start, end, every_seconds)
    bars = replay.load_bars(data_path, [symbols[n] for n in names], int(os_[0]) - bar_seconds,
                            int(os_[-1]) + int(horizon_seconds), bar_seconds=bar_seconds)
    first = int(os_[0]) - bar_seconds
    n_h = int(horizon_seconds // bar_seconds)
    ohlc = {n: bars[symbols[n]] for n in names}
    liq_rows, var_rows = [], []
    t_start, compile_s = time.perf_counter(), 0.0
    model_cfg = base
    for i, o in enumerate(os_):
        if refit is not None and refit_every > 0 and i % refit_every == 0:
            model_cfg = refit(int(o))
        k = (int(o) - first) // bar_seconds  # index of the first horizon bar
        prices = {n: float(ohlc[n][k - 1, 3]) for n in names}
        state = None if filter_state is None else filter_state(int(o), model_cfg)
        cfg = forecast_config(model_cfg, cases, prices, horizon_seconds=horizon_seconds, step_seconds=step_seconds,
                              paths=paths, seed=seed, state=state)
        model, _, resolved = build_model(cfg)
        t0 = time.perf_counter()
        out = simulate(model, seed=seed, n_paths=paths, chunk_size=resolved["chunk_size"])
        if i == 0:
            compile_s = time.perf_counter() - t0  # the first origin compiles; later ones reuse it
        p_liq = np.asarray(out.liq_count, np.float64) / paths
        for j, c in enumerate(cases):
            h = ohlc[c.asset][k:k + n_h]
            liq_rows.append({"origin": int(o), "case": c.name, "asset": c.asset, "side": c.side,
                             "leverage": c.leverage, "predicted": float(p_liq[j]),
                             "realised": int(c.liquidated(prices[c.asset], h[:, 1], h[:, 2]))})
        for a, n in enumerate(names):
            r_real = float(np.log(ohlc[n][k + n_h - 1, 3] / prices[n]))
            for side in SIDES:
                loss = position_loss(side, out.path_log_return[:, a])
                real = float(position_loss(side, r_real))
                for lev in var_levels:
                    q, es, _, _ = var_es(loss, lev)  # the project's VaR / ES (metrics.var_es)
                    var_rows.append({"origin": int(o), "asset": n, "side": side, "level": lev, "var": q, "es": es,
                                     "realised_loss": real, "exceeded": int(real > q)})
        if progress is not None:
            progress(i + 1, len(os_))
    return Forecasts(pd.DataFrame(liq_rows), pd.DataFrame(var_rows), time.perf_counter() - t_start, compile_s)
