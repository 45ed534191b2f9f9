"""Estimate the default config's market block from the real data in ../shared/data.

    python scripts/market_from_data.py [--data ../shared/data] [--start 2021-01-01] [--end 2022-12-31]

From Binance USD-M hourly closes: annualised volatility of hourly log returns,
their correlation matrix (checked PSD), and a Student-t degrees of freedom per
asset by the method of moments on excess kurtosis (nu = 4 + 6 / kurtosis, the
unit-variance t's kurtosis is 6 / (nu - 4)); from the Hyperliquid depth
snapshots, the median one-side depth within 50 bp and the median spread.
Prints a YAML fragment for ``assets``, ``correlation`` and ``innovations``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

HOURS_PER_YEAR = 24 * 365
SYMBOLS = {"BTC": "BTCUSDT", "ETH": "ETHUSDT", "SOL": "SOLUSDT", "DOGE": "DOGEUSDT"}


def hourly_log_returns(data: Path, start: str, end: str) -> pd.DataFrame:
    df = pd.read_csv(data / "binance_usdm_perp_1h.csv.gz", usecols=["timestamp", "symbol", "close"])
    df = df[df["symbol"].isin(SYMBOLS.values())]
    wide = df.pivot(index="timestamp", columns="symbol", values="close").astype(float)
    wide.index = pd.to_datetime(wide.index, unit="s", utc=True)
    wide = wide.loc[start:end].dropna()
    return np.log(wide).diff().dropna()[list(SYMBOLS.values())]


def depth_and_spread(data: Path) -> pd.DataFrame:
    d = pd.read_csv(data / "hyperliquid_perp_depth_6h.csv")
    return d.groupby("symbol")[["mid_price", "depth_50bps_usd", "spread_bps"]].median()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--start", default="2021-01-01")
    ap.add_argument("--end", default="2022-12-31")
    a = ap.parse_args(argv)
    if not (a.data / "binance_usdm_perp_1h.csv.gz").exists():
        sys.exit(f"data not found under {a.data} (pass --data)")
    r = hourly_log_returns(a.data, a.start, a.end)
    vol = r.std() * np.sqrt(HOURS_PER_YEAR)
    corr = r.corr().to_numpy()
    eig = np.linalg.eigvalsh(corr).min()
    kurt = r.kurt()
    nu = 4.0 + 6.0 / kurt.clip(lower=1e-6)
    depth = depth_and_spread(a.data)
    assets = []
    for name, sym in SYMBOLS.items():
        row = {"name": name, "vol": round(float(vol[sym]), 3)}
        if name in depth.index:
            row["depth_usd"] = float(f"{depth.loc[name, 'depth_50bps_usd']:.3g}")
            row["spread"] = float(f"{depth.loc[name, 'spread_bps'] * 1e-4:.3g}")
        assets.append(row)
    out = {
        "assets": assets,
        "correlation": [[round(float(x), 3) for x in row] for row in corr],
        "innovations": {"kind": "student_t", "nu": round(float(nu.median()), 2)},
    }
    print(f"# {len(r)} hourly returns {r.index[0]:%Y-%m-%d} .. {r.index[-1]:%Y-%m-%d}; "
          f"smallest correlation eigenvalue {eig:.3f}; per-asset nu {nu.round(2).to_dict()}")
    print(yaml.safe_dump(out, sort_keys=False, default_flow_style=None))


if __name__ == "__main__":
    main()
