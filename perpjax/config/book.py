"""The book section: accounts listed in the config, read from a CSV, or generated; a user's own book file
(CSV or JSON) put in place of the config's (``use_book``, the CLI's ``--book``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..io import read_csv
from ..margin import BookLabels
from . import schema
from .schema import ConfigError

BOOK_FORMATS = (".csv", ".json")


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

    One row per position; a cross account's collateral is on its first row, and repeated (the same value) or
    left empty on its other rows. ``mode`` is optional (default cross). Every fault is a
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
        elif mode == "cross" and cell(i, "collateral", required=False) not in (None, a["collateral"]):
            raise ConfigError(f"{where}: row {line}, column collateral: account {acc!r} has collateral "
                              f"{a['collateral']:g} on an earlier row, {cell(i, 'collateral'):g} here (one account, "
                              "one collateral: repeat it or leave it empty)")
        margin = amount(i, "margin", acc, mode) if mode == "isolated" else None
        a["positions"].append({"asset": asset, "size": size, "entry": entry, "margin": margin})
    return list(accounts.values())


def read_book_json(path, names=None) -> list[dict]:
    """Accounts from a JSON file: ``{"accounts": [...]}`` or a bare list of accounts, each as the config's
    ``book.accounts`` writes it: ``{"id", "mode": "cross" | "isolated", "collateral" (cross), "positions":
    [{"asset", "size", "entry", "margin" (isolated)}]}``.

    Every fault is a ``ConfigError`` naming the file and the item (``accounts[2].positions[0].size``); with
    ``names`` (the config's assets) an unknown asset and a missing collateral / margin are found here too.
    """
    where = f"book: {path}"
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{where}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{where}: not readable ({getattr(e, 'strerror', None) or e})") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where}: not valid JSON ({e})") from None
    if isinstance(data, dict) and set(data) == {"accounts"}:
        data = data["accounts"]
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{where}: expected {{\"accounts\": [...]}} or a non-empty list of accounts")
    accounts = [schema.validate(schema.Account, a, f"{where}: accounts[{i}]").model_dump()
                for i, a in enumerate(data)]
    if names is not None:
        try:
            book_from_accounts(accounts, list(names), len(names))
        except ConfigError as e:
            raise ConfigError(str(e).replace("book.accounts", f"{where}: accounts", 1)) from None
    return accounts


def use_book(cfg: dict, path) -> dict:
    """``cfg`` with its book's accounts replaced by the file's (``--book FILE``): a CSV becomes ``book.csv``
    (``read_book_csv``), a JSON file ``book.accounts`` (``read_book_json``); ``book.generate`` is dropped,
    ``book.start_below_maintenance`` kept. ``path`` is relative to the working directory."""
    p = Path(path)
    if p.suffix.lower() not in BOOK_FORMATS:
        raise ConfigError(f"--book: {path}: expected a .csv or .json book (the format: docs/own-book.md)")
    book = cfg.get("book") if isinstance(cfg.get("book"), dict) else {}
    book = {k: v for k, v in book.items() if k not in ("accounts", "csv", "generate")}
    if p.suffix.lower() == ".csv":
        book["csv"] = str(p.resolve())
    else:
        assets = cfg.get("assets")
        names = ([a["name"] for a in assets] if isinstance(assets, list) and all(
            isinstance(a, dict) and isinstance(a.get("name"), str) for a in assets) else None)
        book["accounts"] = read_book_json(p, names)
    return {**cfg, "book": book}
