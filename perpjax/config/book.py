"""The book section: accounts listed in the config, read from a CSV, or generated."""

from __future__ import annotations

import numpy as np

from ..io import read_csv
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
                raise ConfigError(f"{p}.collateral: required for a cross account (account {a['id']!r})")
            if a["collateral"] < 0:
                raise ConfigError(f"{p}.collateral: must be >= 0 (got {a['collateral']:g}, account {a['id']!r})")
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
                if pos["margin"] < 0:
                    raise ConfigError(f"{p}.positions[{j}].margin: must be >= 0 (got {pos['margin']:g}, account "
                                      f"{a['id']!r}, {names[k]} position)")
                s, e = np.zeros(n_assets), np.ones(n_assets)
                s[k], e[k] = pos["size"], pos["entry"]
                add(pos["margin"], s, e, a["id"], "isolated", f"{a['id']}:{names[k]}")
    return coll, size, entry, BookLabels(tuple(acct), tuple(mode), tuple(unit))


def read_book_csv(path, names):
    """CSV with columns account, mode, asset, size, entry, collateral (cross) / margin (isolated).

    One row per position; a cross account repeats its collateral on each row. Every fault is a
    ``ConfigError`` naming the file and, for a bad value, its row (1-based line in the file, the
    header is line 1) and column.
    """
    where = f"book.csv: {path}"
    df = read_csv(path, where, header="account,mode,asset,size,entry,collateral,margin", dtype=str,
                  keep_default_na=False)
    df.columns = [str(c).strip() for c in df.columns]
    need = ["account", "asset", "size", "entry"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ConfigError(f"{where}: missing column(s) {', '.join(missing)} (columns found: "
                          f"{', '.join(df.columns)}; needed: account, asset, size, entry, and collateral "
                          "(cross) or margin (isolated))")
    if df.empty:
        raise ConfigError(f"{where}: no rows")

    def cell(i, col, *, kind="number", required=True):
        line = i + 2  # 1-based, after the header
        raw = str(df.at[i, col]).strip() if col in df.columns else ""
        if raw == "":
            if required:
                raise ConfigError(f"{where}: row {line}, column {col}: required value is empty")
            return None
        if kind == "str":
            return raw
        try:
            v = float(raw)
        except ValueError:
            raise ConfigError(f"{where}: row {line}, column {col}: must be a number (got {raw!r})") from None
        if not np.isfinite(v):
            raise ConfigError(f"{where}: row {line}, column {col}: must be a finite number (got {raw!r})")
        return v

    def amount(i, col, acc, mode):
        """A collateral / margin cell of a ``mode`` account: its column present, the value >= 0."""
        if col not in df.columns:
            raise ConfigError(f"{where}: missing column {col} (account {acc!r} is {mode})")
        v = cell(i, col)
        if v < 0:
            raise ConfigError(f"{where}: row {i + 2}, column {col}: must be >= 0 (got {v:g}, account {acc!r})")
        return v

    accounts = {}
    for i in range(len(df)):
        line = i + 2
        acc = cell(i, "account", kind="str")
        mode = cell(i, "mode", kind="str", required=False) or "cross"
        if mode not in ("cross", "isolated"):
            raise ConfigError(f"{where}: row {line}, column mode: must be 'cross' or 'isolated' (got {mode!r})")
        asset = cell(i, "asset", kind="str")
        if asset not in names:
            raise ConfigError(f"{where}: row {line}, column asset: unknown asset {asset!r} (assets: "
                              f"{', '.join(names)})")
        size, entry = cell(i, "size"), cell(i, "entry")
        if entry <= 0:
            raise ConfigError(f"{where}: row {line}, column entry: must be > 0 (got {entry:g})")
        a = accounts.get(acc)
        if a is None:
            a = accounts[acc] = {"id": acc, "mode": mode, "collateral": None, "positions": []}
            if mode == "cross":
                a["collateral"] = amount(i, "collateral", acc, mode)
        elif a["mode"] != mode:
            raise ConfigError(f"{where}: row {line}, column mode: account {acc!r} is {a['mode']} on an earlier "
                              f"row, {mode} here")
        margin = amount(i, "margin", acc, mode) if mode == "isolated" else None
        a["positions"].append({"asset": asset, "size": size, "entry": entry, "margin": margin})
    return list(accounts.values())
