"""Where perpjax finds the shared price data: the hourly bars that replays, fits and backtests read by
default, and that every run manifest hashes (``io.data_files``). A leaf module, so ``io`` and ``replay``
both read it without importing each other."""

from __future__ import annotations

import os
from pathlib import Path

DATA_FILE = "binance_usdm_perp_1h.csv.gz"
DATA_DIR_ENV = "PERPJAX_DATA_DIR"


def default_data_path() -> Path:
    """``$PERPJAX_DATA_DIR/binance_usdm_perp_1h.csv.gz`` if that variable is set, else
    ``<repo root>/../shared/data/binance_usdm_perp_1h.csv.gz``."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env) / DATA_FILE
    repo_root = Path(__file__).resolve().parents[1]
    return repo_root.parent / "shared" / "data" / DATA_FILE
