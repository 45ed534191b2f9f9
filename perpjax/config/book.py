"""The book section: accounts listed in the config (``book.accounts``), read from a book file (CSV or JSON:
``book.accounts_file``, or ``book.csv``, its CSV-only alias), or generated (``book.generate``); a user's own
book file put in place of the config's book (``use_book``, the CLI's ``--book``).

One reader for a book file (``read_book_file``, by its suffix: ``read_book_csv`` or ``read_book_json``) and one
list of the accounts a resolved config names (``listed_accounts``): what the build and the ladder-cap check
read, whether the file came from a config or from ``--book``."""

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


def read_book_csv(path, names, key: str = "book.csv"):
    """CSV with columns account, mode, asset, size, entry, collateral (cross) / margin (isolated).

    One row per position; a cross account's collateral is on its first row, and repeated (the same value) or
    left empty on its other rows. ``mode`` is optional (default cross). Every fault is a
    ``ConfigError`` naming ``key`` (where the file was named), the file and, for a bad value, its row (1-based
    line in the file, the header is line 1) and column.
    """
    where = f"{key}: {path}"
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


def read_book_json(path, names=None, key: str = "book") -> list[dict]:
    """Accounts from a JSON file: ``{"accounts": [...]}`` or a bare list of accounts, each as the config's
    ``book.accounts`` writes it: ``{"id", "mode": "cross" | "isolated", "collateral" (cross), "positions":
    [{"asset", "size", "entry", "margin" (isolated)}]}``.

    Every fault is a ``ConfigError`` naming ``key`` (where the file was named), the file and the item
    (``accounts[2].positions[0].size``); with ``names`` (the config's assets) an unknown asset and a missing
    collateral / margin are found here too.
    """
    where = f"{key}: {path}"
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


def read_book_file(path, names, key: str = "book.accounts_file") -> list[dict]:
    """The accounts of a book file, by its suffix: ``.csv`` (``read_book_csv``) or ``.json``
    (``read_book_json``); ``key`` names where the file was named (``book.accounts_file``, ``--book``) in every
    error. The one reader of ``--book`` and ``book.accounts_file``."""
    suffix = Path(path).suffix.lower()
    if suffix not in BOOK_FORMATS:
        raise ConfigError(f"{key}: {path}: expected a .csv or .json book (the format: docs/own-book.md)")
    reader = read_book_csv if suffix == ".csv" else read_book_json
    return reader(path, list(names), key)


def listed_accounts(c: dict) -> list[dict]:
    """Every account a resolved config ``c`` names: ``book.accounts``, then the accounts of its book file
    (``book.accounts_file``, CSV or JSON, or its CSV-only alias ``book.csv``); not the generated ones."""
    names = [a["name"] for a in c["assets"]]
    b = c["book"]
    accounts = list(b["accounts"])
    if b["csv"] is not None:
        accounts += read_book_csv(b["csv"], names)
    if b["accounts_file"] is not None:
        accounts += read_book_file(b["accounts_file"], names)
    return accounts


def use_book(cfg: dict, path) -> dict:
    """``cfg`` with its book's accounts replaced by the file's (``--book FILE``): ``book.accounts_file`` is the
    file (absolute: ``path`` is relative to the working directory), and ``book.accounts``, ``book.csv`` and
    ``book.generate`` are dropped; ``book.start_below_maintenance`` is kept. So ``--book FILE`` is the config
    ``book: {accounts: [], accounts_file: FILE}`` (no ``csv``, no ``generate``): read at build time by the same
    reader (``read_book_file``). The file is also read here, against the config's assets, so a bad book is
    refused before anything else runs (``perpjax fit`` reads prices first), naming ``--book``."""
    p = Path(path)
    assets = cfg.get("assets")
    names = ([a["name"] for a in assets] if isinstance(assets, list) and all(
        isinstance(a, dict) and isinstance(a.get("name"), str) for a in assets) else None)
    if names is None:  # no asset names to check against (the config's own fault, reported by the schema)
        if p.suffix.lower() not in BOOK_FORMATS:
            raise ConfigError(f"--book: {path}: expected a .csv or .json book (the format: docs/own-book.md)")
    else:
        read_book_file(p, names, "--book")
    book = cfg.get("book") if isinstance(cfg.get("book"), dict) else {}
    book = {k: v for k, v in book.items() if k not in ("accounts", "csv", "accounts_file", "generate")}
    book["accounts_file"] = str(p.resolve())
    return {**cfg, "book": book}
