"""Estimate a config's market block from the real data in ../shared/data.

    python scripts/market_from_data.py [--data ../shared/data] [--start 2021-01-01] [--end 2023-01-01]

The price model comes from ``perpjax.estimate.fit_market`` on the Binance USD-M hourly closes (the
same fit as ``perpjax fit``: annualised vol of the non-jump returns, the calm correlation matrix, one
Student-t nu of the GARCH-standardized residuals); what the prices cannot give comes from the
Hyperliquid depth snapshots: the median one-side depth within 50 bp and the median spread per asset.
Prints a YAML fragment for ``assets``, ``correlation`` and ``innovations``. For a complete, runnable
config with jumps, GARCH and the stress regime as well, use ``perpjax fit``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import yaml

from perpjax import estimate
from perpjax.replay import DATA_FILE, default_data_path

SYMBOLS = {"BTC": "BTCUSDT", "ETH": "ETHUSDT", "SOL": "SOLUSDT", "DOGE": "DOGEUSDT"}
DEPTH_FILE = "hyperliquid_perp_depth_6h.csv"


def depth_and_spread(data: Path) -> pd.DataFrame:
    d = pd.read_csv(data / DEPTH_FILE)
    return d.groupby("symbol")[["mid_price", "depth_50bps_usd", "spread_bps"]].median()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=default_data_path().parent)
    ap.add_argument("--start", default="2021-01-01", help="first bar (UTC date or unix seconds)")
    ap.add_argument("--end", default="2023-01-01", help="end of the window, exclusive (UTC date or unix seconds)")
    a = ap.parse_args(argv)
    if not (a.data / DATA_FILE).exists():
        sys.exit(f"data not found under {a.data} (pass --data)")
    closes = estimate.read_prices(a.data / DATA_FILE)
    fit = estimate.fit_market(closes, list(SYMBOLS.values()), start=a.start, end=a.end)
    depth = depth_and_spread(a.data) if (a.data / DEPTH_FILE).exists() else pd.DataFrame()
    assets = []
    for i, name in enumerate(SYMBOLS):
        row = {"name": name, "vol": round(float(fit.vol[i]), 3)}
        if name in depth.index:
            row["depth_usd"] = float(f"{depth.loc[name, 'depth_50bps_usd']:.3g}")
            row["spread"] = float(f"{depth.loc[name, 'spread_bps'] * 1e-4:.3g}")
        assets.append(row)
    out = {
        "assets": assets,
        "correlation": estimate.rounded_correlation(fit.calm_correlation, 3).tolist(),
        "innovations": {"kind": "student_t", "nu": round(float(fit.nu), 2)},
    }
    day = "%Y-%m-%d %H:%M"
    print(f"# {fit.n_returns} hourly returns {pd.Timestamp(fit.start, unit='s'):{day}} .. "
          f"{pd.Timestamp(fit.end, unit='s'):{day}} (UTC); nu {fit.nu:.2f} +- {fit.nu_se:.2f}; "
          f"calm correlation (stress: regimes.stress_correlation in `perpjax fit`)")
    print(yaml.safe_dump(out, sort_keys=False, default_flow_style=None))


if __name__ == "__main__":
    main()
