"""``perpjax fit``: the market model fitted to price bars, written as a runnable config.

With ``--conditional`` the config is also conditional and FHS-ready: ``market_state`` (the GARCH
variances and the stress regime filtered to the end of the window, ``estimate.filter_state``),
``innovations: {kind: historical, residuals: STEM.residuals.npz, bar_seconds}`` and the residual file
beside the config (``estimate.write_residuals``); ``perpjax filter`` moves the state to later origins.
"""

from __future__ import annotations

import argparse
import sys

from .common import add_config_args, load

STRESS_FALLBACK_CHOICES = ("quantile", "calm", "error")


def register(sub) -> None:
    ft = sub.add_parser("fit", help="fit the market model (vol, nu, jumps, GARCH, calm/stress correlation) to prices",
                        description="Fit the market model to hourly price bars and write a runnable config.")
    ft.add_argument("csv", nargs="*", help="price files in the format of ../shared/data (timestamp, symbol, close, "
                                           "...); several make one window (rows repeated across files must agree); "
                                           "default: the shared Binance USD-M hourly file")
    ft.add_argument("--symbols", default="BTCUSDT,ETHUSDT,SOLUSDT,DOGEUSDT", help="comma-separated symbols")
    ft.add_argument("--names", default="BTC,ETH,SOL,DOGE", help="asset names in the config, one per symbol")
    ft.add_argument("--start", help="first bar (UTC date or unix seconds)")
    ft.add_argument("--end", help="end of the window, exclusive (UTC date or unix seconds)")
    ft.add_argument("--base", help="config whose book, ladders and depth the fitted market goes into "
                                   "(default: the packaged default); --book and --set apply to it")
    add_config_args(ft, config=False, progress=False)
    ft.add_argument("--out", default="fitted.yaml", help="config file to write (default: fitted.yaml)")
    ft.add_argument("--conditional", action="store_true",
                    help="also write market_state (GARCH variance and regime filtered to the end of the window) and "
                         "historical (FHS) innovations: OUT_STEM.residuals.npz beside the config; drops the jumps "
                         "section (the residuals keep the jump bars)")
    ft.add_argument("--lookback-days", type=float, default=90.0,
                    help="--conditional: days of bars the state is filtered over (default 90)")
    ft.add_argument("--block-bars", type=_block_bars, default="auto", metavar="N|auto",
                    help="--conditional: bootstrap the residuals in moving blocks of N consecutive bars "
                         "(innovations.block_bars; 1: independent rows); default auto: round(n^(1/4)) of the n "
                         "residual rows (Hall, Horowitz & Jing 1995; 10 for a year of hourly bars; chosen on "
                         "held-out assets, benchmarks/VALIDATION.md)")
    ft.add_argument("--max-residuals", type=int, default=50_000,
                    help="--conditional: keep the most recent N residual rows (default 50000)")
    ft.add_argument("--stress", choices=("drawdown", "quantile"), default="drawdown",
                    help="stress definition: the simulator's drawdown state (default) or the worst market bars")
    ft.add_argument("--stress-drawdown", type=float, default=0.05,
                    help="drawdown stress: log gap below the EWMA that turns stress on (default 0.05)")
    ft.add_argument("--stress-halflife-bars", type=float, default=6.0,
                    help="drawdown stress: half-life of the EWMA reference in bars (default 6)")
    ft.add_argument("--stress-quantile", type=float, default=0.1,
                    help="quantile stress: share of bars (lowest market returns) in stress (default 0.1)")
    ft.add_argument("--stress-fallback", choices=STRESS_FALLBACK_CHOICES, default="quantile",
                    help="when the drawdown state has too few stress bars (a calm window): warn and use quantile "
                         "stress (default), or stress = calm (no regime effect), or fail (error)")
    ft.add_argument("--jump-threshold", type=float, default=8.0,
                    help="jump detector threshold in robust standard deviations (default 8)")
    ft.add_argument("--no-net-jumps", action="store_true",
                    help="report the flagged jump rate, not net of the fitted GARCH-t's own false flags")
    ft.add_argument("--keep-book", action="store_true",
                    help="keep the base book's entries and collateral as they are (default: rebased to the "
                         "fitted prices, leverage kept; always kept with --book: a real book's entries are its own)")
    ft.set_defaults(func=run_command)


def _block_bars(text: str):
    """``--block-bars``: a whole number >= 1, or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"need a whole number >= 1 or 'auto' (got {text!r})")
    return n


def _fit(a, closes, symbols):
    from .. import estimate

    fallback = None if a.stress_fallback == "error" else a.stress_fallback
    return estimate.fit_market(closes, symbols, start=a.start, end=a.end, jump_threshold=a.jump_threshold,
                               stress=a.stress, stress_drawdown=a.stress_drawdown,
                               stress_halflife_bars=a.stress_halflife_bars, stress_quantile=a.stress_quantile,
                               net_jumps=not a.no_net_jumps, stress_fallback=fallback)


def _venue_ready(cfg, base, keep_book: bool) -> tuple[dict, list]:
    """``market_config``'s config with the book rebased and step-free check intervals; header comment lines."""
    from .. import estimate

    notes = []
    if not keep_book:
        base_prices = {x["name"]: float(x["price"]) for x in base.get("assets") or []}
        cfg, ratio = estimate.rebase_book(cfg, base_prices)
        if (cfg.get("book") or {}).get("accounts"):
            notes.append("book rebased to the fitted prices: each position's entry (and isolated margin) scaled by "
                         "fitted price / base price, cross collateral by the account's notional ratio, so "
                         "leverage is the base book's; sizes, insurance_fund and notional limits unchanged. Ratios: "
                         + ", ".join(f"{n} {q:.4g}" for n, q in ratio.items()))
    step = (base.get("time") or {}).get("step_seconds")
    cfg, removed = estimate.free_step_intervals(cfg, step) if step is not None else (cfg, [])
    if removed:
        notes.append(f"{' and '.join(removed)} dropped (they equalled the step: unset means every step, so the "
                     "config runs at any time.step_seconds)")
    return cfg, notes


def print_fit(res) -> None:
    """The summary table, then nu with its SE, the window, the stress definition and both correlations."""
    import pandas as pd

    from .. import estimate

    t = estimate.summary_table(res)
    print(t.to_string(float_format=lambda x: f"{x:,.4g}"))
    day = "%Y-%m-%d %H:%M"
    span = f"{pd.Timestamp(res.start, unit='s'):{day}} to {pd.Timestamp(res.end, unit='s'):{day}} UTC"
    print(f"\nnu {res.nu:.3f} (SE {res.nu_se:.3f})   {res.n_returns} returns, {span}")
    stress = f"stress: {res.stress}, {100 * res.stress_share:.2f}% of bars"
    if res.stress == "drawdown":
        stress += f" (drawdown {res.stress_drawdown:g}, half-life {res.stress_halflife_bars:g} bars)"
    print(stress + (f"  [{res.stress_note}]" if res.stress_note else ""))
    for title, c in (("calm", res.calm_correlation), ("stress", res.stress_correlation)):
        df = pd.DataFrame(c, index=list(res.symbols), columns=list(res.symbols))
        print(f"\n{title} correlation (mean off-diagonal {t.attrs[f'{title}_mean_offdiag']:.3f}):")
        print(df.to_string(float_format=lambda x: f"{x:.3f}"))


def run_command(a) -> int:
    import os
    import tempfile
    import textwrap
    import warnings
    from pathlib import Path

    import yaml

    from .. import estimate, replay
    from ..config import ConfigError, build_model
    from ..innovations import auto_block_bars
    from ..io import atomic_write_text

    symbols = [x.strip() for x in a.symbols.split(",") if x.strip()]
    names = [x.strip() for x in a.names.split(",") if x.strip()]
    if len(names) != len(symbols):
        print(f"perpjax: input error: --names has {len(names)} names for {len(symbols)} symbols", file=sys.stderr)
        return 2
    out = Path(a.out)
    res_path = out.with_name(out.stem + ".residuals.npz")
    tmp_npz = None
    try:
        base = load(a, a.base)  # a bad base, --book or --set fails before the prices are read
        closes = estimate.read_prices(a.csv if a.csv else replay.default_data_path())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = _fit(a, closes, symbols)
        for w in caught:
            print(f"perpjax: warning: {w.message}", file=sys.stderr)
        cfg = estimate.market_config(res, names, base)
        cfg, notes = _venue_ready(cfg, base, a.keep_book or a.book is not None)
        check = cfg
        if a.conditional:
            g = estimate.garch_from_config(cfg)
            origin = int(res.end + res.bar_seconds)
            st = estimate.filter_state(closes, symbols, origin, alpha=g["alpha"], beta=g["beta"], var=g["var"],
                                       stress_drawdown=g["stress_drawdown"],
                                       stress_halflife_bars=g["stress_halflife_bars"], bar_seconds=res.bar_seconds,
                                       lookback_seconds=a.lookback_days * 86400, jump_threshold=a.jump_threshold)
            out.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_npz = tempfile.mkstemp(dir=out.parent, prefix=f".{res_path.name}.", suffix=".npz")
            os.close(fd)
            info = estimate.write_residuals(tmp_npz, res, names, max_rows=a.max_residuals)
            block = auto_block_bars(info["rows"]) if a.block_bars == "auto" else a.block_bars
            cfg = estimate.conditional_config(cfg, estimate.market_state(st), res_path.name, res.bar_seconds,
                                              block_bars=block)
            check = estimate.conditional_config(cfg, cfg["market_state"], str(Path(tmp_npz).resolve()),
                                                res.bar_seconds, block_bars=block)
            notes.append(f"market_state filtered over {st.n_bars} bars to {cfg['market_state']['time']}; innovations: "
                         f"{info['rows']} GARCH-standardised residual rows of the fit window in {res_path.name}"
                         + (" (the most recent; older rows dropped)" if info["truncated"] else "")
                         + "; jumps section dropped (the residuals keep the jump bars)"
                         + (f"; bootstrapped in moving blocks of {block} bars" if block > 1 else "")
                         + "; the residuals' own std (jump bars included) scales the returns over assets.vol: "
                         + ", ".join(f"{n} {k:.3f}" for n, k in zip(names, info["scale"], strict=True)))
        build_model(check)  # the written config must be valid as it stands
    except (ValueError, ConfigError) as e:
        if tmp_npz is not None:
            Path(tmp_npz).unlink(missing_ok=True)
        print(f"perpjax: input error: {e}", file=sys.stderr)
        return 2
    print_fit(res)
    header = "# written by `perpjax fit`; the market keys are fitted, the rest is the base config\n"
    header += "".join(textwrap.fill(n, 110, initial_indent="# ", subsequent_indent="#   ") + "\n" for n in notes)
    if tmp_npz is not None:
        os.replace(tmp_npz, res_path)
    atomic_write_text(out, header + yaml.safe_dump(cfg, sort_keys=False))
    extra = f" and {res_path}" if a.conditional else ""
    print(f"\nwrote {out}{extra} (run it: perpjax simulate {out})")
    return 0
