"""``perpjax fit``: the market model fitted to price bars, written as a runnable config."""

from __future__ import annotations

import sys


def register(sub) -> None:
    ft = sub.add_parser("fit", help="fit the market model (vol, nu, jumps, GARCH, calm/stress correlation) to prices")
    ft.add_argument("csv", nargs="?", help="prices in the format of ../shared/data (timestamp, symbol, close, ...); "
                                            "default: the shared Binance USD-M hourly file")
    ft.add_argument("--symbols", default="BTCUSDT,ETHUSDT,SOLUSDT,DOGEUSDT", help="comma-separated symbols")
    ft.add_argument("--names", default="BTC,ETH,SOL,DOGE", help="asset names in the config, one per symbol")
    ft.add_argument("--start", help="first bar (UTC date or unix seconds)")
    ft.add_argument("--end", help="end of the window, exclusive (UTC date or unix seconds)")
    ft.add_argument("--base", help="config whose book, ladders and depth the fitted market goes into "
                                   "(default: the packaged default)")
    ft.add_argument("--out", default="fitted.yaml", help="config file to write (default: fitted.yaml)")
    ft.set_defaults(func=run_command)


def run_command(a) -> int:
    from pathlib import Path

    import yaml

    from .. import estimate, replay
    from ..config import ConfigError, build_model, load_config
    from ..io import atomic_write_text

    symbols = [x.strip() for x in a.symbols.split(",") if x.strip()]
    names = [x.strip() for x in a.names.split(",") if x.strip()]
    if len(names) != len(symbols):
        print(f"perpjax: input error: --names has {len(names)} names for {len(symbols)} symbols", file=sys.stderr)
        return 2
    try:
        closes = estimate.read_prices(a.csv if a.csv else replay.default_data_path())
        res = estimate.fit_market(closes, symbols, start=a.start, end=a.end)
        cfg = estimate.market_config(res, names, load_config(a.base))
        build_model(cfg)  # the written config must be valid as it stands
    except (ValueError, ConfigError) as e:
        print(f"perpjax: input error: {e}", file=sys.stderr)
        return 2
    print(estimate.summary_table(res).to_string(float_format=lambda x: f"{x:,.4g}"))
    atomic_write_text(Path(a.out), "# written by `perpjax fit`; the market keys are fitted, the rest is the base "
                      "config\n" + yaml.safe_dump(cfg, sort_keys=False))
    print(f"\nwrote {a.out} (run it: perpjax simulate {a.out})")
    return 0
