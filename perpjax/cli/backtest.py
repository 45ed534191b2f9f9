"""``perpjax backtest``: rolling-origin validation of the model's liquidation and VaR forecasts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_config_args, load
from .report import html_report


def register(sub) -> None:
    b = sub.add_parser("backtest", help="forecast liquidations and VaR at rolling origins and test them against "
                                         "what happened (Kupiec, Christoffersen, Basel traffic light, Brier)")
    add_config_args(b, config_help="a fitted config (perpjax fit): its market is forecast (default: the packaged "
                                   "default config); its book is not used, so no --book", book=False,
                    progress_help="no progress bar")
    b.add_argument("--data", help="price bars (timestamp,symbol,open,high,low,close); default: the shared "
                                  "Binance USD-M hourly file")
    b.add_argument("--symbols", help="comma-separated data symbols, one per config asset (default: NAME + USDT)")
    b.add_argument("--start", required=True, help="first origin (UTC date or unix seconds)")
    b.add_argument("--end", required=True, help="origins before this (UTC date or unix seconds)")
    b.add_argument("--every", type=float, default=86400.0, help="seconds between origins (default: daily)")
    b.add_argument("--horizon", type=float, default=86400.0, help="forecast horizon in seconds (default: 1 day)")
    b.add_argument("--step", type=float, default=3600.0, help="simulation step in seconds (default: 1 hour)")
    b.add_argument("--paths", type=int, default=20_000, help="Monte Carlo paths per origin")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--leverages", default="10,20,50", help="isolated-position leverages (default: 10,20,50)")
    b.add_argument("--mmr", type=float, default=0.005, help="flat maintenance rate of the cases (default: 0.5 %%)")
    b.add_argument("--conditional", action=argparse.BooleanOptionalAction, default=None,
                   help="filter the market state (GARCH variance, regime) at every origin; default: when the "
                        "config has a market_state section")
    b.add_argument("--refit-every", type=int, default=0, metavar="K",
                   help="re-estimate the market (perpjax fit, and the residual sample with --conditional) on "
                        "the --fit-window-days before every K-th origin; default 0: the config's fit throughout")
    b.add_argument("--fit-window-days", type=float, default=365.0, help="trailing estimation window of a refit")
    b.add_argument("--out", default="perpjax-backtest", help="output directory")
    b.add_argument("--report", action="store_true", help="also write OUT/report.html (see `perpjax report`)")
    b.set_defaults(func=run_command)


def run_command(a) -> int:
    import time

    from tqdm import tqdm

    from .. import replay
    from ..backtest import report
    from ..backtest.cases import default_cases
    from ..backtest.run import origins, run_backtest
    from ..config import ConfigError, build_model
    from ..io import manifest
    from ..runtime import CompileClock

    try:
        base = load(a)
        _, _, resolved = build_model(base)
        names = resolved["asset_names"]
        syms = [s.strip() for s in a.symbols.split(",")] if a.symbols else [f"{n}USDT" for n in names]
        if len(syms) != len(names):
            raise ValueError(f"--symbols: {len(syms)} symbols for {len(names)} assets ({', '.join(names)})")
        symbols = dict(zip(names, syms, strict=True))
        cases = default_cases(names, [float(x) for x in a.leverages.split(",")], a.mmr)
        data = a.data or replay.default_data_path()
        conditional = ("market_state" in base) if a.conditional is None else a.conditional
        origins(a.start, a.end, a.every)  # a bad window fails here, before any compute
        if a.refit_every < 0 or a.fit_window_days <= 0:
            raise ValueError("--refit-every: must be >= 0; --fit-window-days: must be > 0")
        closes = _closes(data) if conditional or a.refit_every else None
        state_fn = _state_filter(base, closes, symbols) if conditional else None
    except (ConfigError, ValueError) as e:
        print(f"perpjax: input error: {e}", file=sys.stderr)
        return 2
    bar = None if a.no_progress else tqdm(unit="origin", desc="backtest", file=sys.stderr)

    def progress(done, total):
        if bar is not None:
            bar.total = total
            bar.update(done - bar.n)

    t0 = time.perf_counter()
    try:
        refit = (refitter(base, closes, symbols, a.fit_window_days, conditional, Path(a.out) / "refits")
                 if a.refit_every else None)
        with CompileClock() as clock:
            f = run_backtest(base, data, symbols, start=a.start, end=a.end, every_seconds=a.every,
                             horizon_seconds=a.horizon, step_seconds=a.step, paths=a.paths, seed=a.seed, cases=cases,
                             filter_state=state_fn, refit=refit, refit_every=a.refit_every, progress=progress)
    except (ConfigError, ValueError) as e:
        print(f"perpjax: input error: {e}", file=sys.stderr)
        return 2
    if bar is not None:
        bar.close()
    extra = {"backtest": {"data": str(data), "symbols": symbols, "start": a.start, "end": a.end, "every": a.every,
                          "horizon": a.horizon, "step": a.step, "paths": a.paths, "conditional": conditional,
                          "leverages": a.leverages, "mmr": a.mmr, "refit_every": a.refit_every,
                          "fit_window_days": a.fit_window_days}, **clock.record()}
    s = report.write(a.out, f, manifest(resolved, seed=a.seed, wall_seconds=time.perf_counter() - t0, extra=extra))
    print(report.liquidation_table(f.liquidations).to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print()
    print(report.var_table(f.var).to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print(f"\n{s['cases_not_rejected_5pct']} of {s['cases']} liquidation cases not rejected at 5 %; VaR zones "
          f"{s['var_zones']}; pooled Brier {s['pooled_brier']:.4g}; {s['origins']} origins in "
          f"{s['wall_seconds']:.0f} s ({s['compile_seconds']:.0f} s of it the first origin, compile included)")
    print(f"wrote {a.out}/liquidation_cases.csv, var_series.csv, *_forecasts.csv, summary.json, reliability.png")
    return html_report(a.out) if a.report else 0


def _closes(data):
    from .. import estimate

    return estimate.read_prices(data)


def _state_filter(base: dict, closes, symbols: dict):
    """(origin, config) -> market_state, filtered on the bars before the origin with the config's fitted
    parameters."""
    from .. import estimate

    syms = [symbols[a["name"]] for a in base["assets"]]
    estimate.garch_from_config(base)  # a config without a fitted GARCH fails here, before any compute
    return lambda origin, cfg: estimate.market_state(estimate.filter_config_state(cfg, closes, syms, origin))


def refitter(base: dict, closes, symbols: dict, window_days: float, conditional: bool, folder: Path):
    """origin -> the config re-estimated on the ``window_days`` before the origin: what ``--refit-every``
    runs (``perpjax fit`` on that window; with ``conditional`` also its residual sample, written to
    ``folder``, a fixed number of rows so a refit does not recompile; the base's ``innovations.block_bars``
    kept).

    Args:
        base: the backtest's config (its book and ladders are kept).
        closes: the price bars (``estimate.read_prices``).
        symbols: asset name -> data symbol.
        window_days: the trailing estimation window.
        conditional: also refit the FHS residual sample.
        folder: where the refits' residual files go.
    """
    from .. import estimate

    names = [x["name"] for x in base["assets"]]
    syms = [symbols[n] for n in names]
    rows = int(window_days * 24) - 48  # hourly bars: every refit keeps the same sample size
    block = int((base.get("innovations") or {}).get("block_bars", 1))  # the base's bootstrap blocks, kept

    def refit(origin: int) -> dict:
        fit = estimate.fit_market(closes, syms, start=origin - int(window_days * 86400), end=origin,
                                  stress_fallback="quantile")
        cfg = estimate.market_config(fit, names, base)
        if not conditional:
            return cfg
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"residuals-{origin}.npz"
        estimate.write_residuals(path, fit, names, max_rows=rows)
        return estimate.conditional_config(cfg, base.get("market_state") or {}, str(path.resolve()),
                                           fit.bar_seconds, block_bars=block)

    return refit
