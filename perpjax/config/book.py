"""The book section: accounts listed in the config, read from a CSV, or generated."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..margin import BookLabels
from .schema import ConfigError


def book_from_accounts(accounts, names, n_assets):
    coll, size, entry, acct, mode, unit = [], [], [], [], [], []

    def add(*row):
        for col, v in zip((coll, size, entry, acct, mode, unit), row, strict=True):
            col.append(v)

    index = {n: i for i, n in enumerate(names)}
    for i, a in enumerate(accounts):
        p = f"book.accounts[{i}]"
        rows = []
        for j, pos in enumerate(a["positions"]):
            if pos["asset"] not in index:
                raise ConfigError(f"{p}.positions[{j}].asset: unknown asset {pos['asset']!r} "
                                  f"(assets: {', '.join(names)})")
            rows.append((index[pos["asset"]], pos))
        if a["mode"] == "cross":
            if a["collateral"] is None:
                raise ConfigError(f"{p}.collateral: required for a cross account")
            s, e = np.zeros(n_assets), np.ones(n_assets)
            for k, pos in rows:
                if s[k] != 0:
                    raise ConfigError(f"{p}.positions: asset {names[k]} listed twice")
                s[k], e[k] = pos["size"], pos["entry"]
            add(a["collateral"], s, e, a["id"], "cross", a["id"])
        else:
            for j, (k, pos) in enumerate(rows):
                if pos["margin"] is None:
                    raise ConfigError(f"{p}.positions[{j}].margin: required for an isolated position")
                s, e = np.zeros(n_assets), np.ones(n_assets)
                s[k], e[k] = pos["size"], pos["entry"]
                add(pos["margin"], s, e, a["id"], "isolated", f"{a['id']}:{names[k]}")
    return coll, size, entry, BookLabels(tuple(acct), tuple(mode), tuple(unit))


def read_book_csv(path, names):
    """CSV with columns account, mode, asset, size, entry, collateral (cross) / margin (isolated).

    One row per position; a cross account repeats its collateral on each row.
    """
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise ConfigError(f"book.csv: file not found: {path}") from None
    need = {"account", "asset", "size", "entry"}
    if not need <= set(df.columns):
        raise ConfigError(f"book.csv: missing columns {sorted(need - set(df.columns))}")
    accounts = []
    for acc, g in df.groupby("account", sort=False):
        mode = str(g["mode"].iloc[0]) if "mode" in g else "cross"
        a = {"id": str(acc), "mode": mode, "collateral": None, "positions": []}
        if mode == "cross":
            a["collateral"] = float(g["collateral"].iloc[0]) if "collateral" in g else None
        for _, r in g.iterrows():
            a["positions"].append({"asset": str(r["asset"]), "size": float(r["size"]), "entry": float(r["entry"]),
                                   "margin": float(r["margin"]) if "margin" in r and pd.notna(r["margin"]) else None})
        accounts.append(a)
    return accounts

