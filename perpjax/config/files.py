"""The one rule for the files a config names: a relative path is relative to the file that names it.

Paths a config can name (``FILE_KEYS``): ``book.accounts_file`` (and its CSV alias ``book.csv``),
``innovations.residuals``, ``events.replay.csv``, a ladder's bracket file (``ladders.NAME: FILE.json[:SYMBOL]``,
or ``ladders.NAME.source``) and ``extends``.
``load_config`` makes each relative path absolute as it reads a file, against that file's folder, so in an
``extends`` chain a path is relative to the file where its key is written. Values that come from the
command line (``--set``, ``--book``) and from a dict handed to the Python API are relative to the working
directory. ``rebase`` rewrites the relative paths of a file's own keys for a copy written elsewhere
(``perpjax filter --out``).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

from ..venues import ladder_file

FILE_KEYS = ("book.accounts_file", "book.csv", "innovations.residuals", "events.replay.csv", "ladders.NAME",
             "ladders.NAME.source", "extends")


def _slots(raw: dict, extends: bool) -> list:
    """(mapping, key, is_ladder_source) of every file path ``raw`` names (``extends`` too if asked)."""
    out = []
    for dotted in ("book.accounts_file", "book.csv", "innovations.residuals", "events.replay.csv"):
        *parents, last = dotted.split(".")
        node = raw
        for k in parents:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(last), str):
            out.append((node, last, False))
    ladders = raw.get("ladders")
    if isinstance(ladders, dict):
        for name, v in ladders.items():
            if isinstance(v, str) and ladder_file(v)[0]:
                out.append((ladders, name, True))
            elif isinstance(v, dict) and isinstance(v.get("source"), str) and ladder_file(v["source"])[0]:
                out.append((v, "source", True))
    if extends and isinstance(raw.get("extends"), str) and raw["extends"] != "default":
        out.append((raw, "extends", False))
    return out


def _rewrite(raw: dict, move, extends: bool) -> None:
    """Apply ``move(relative path) -> str`` to every relative path ``raw`` names, in place."""
    for node, key, ladder in _slots(raw, extends):
        value = node[key]
        path, symbol = ladder_file(value) if ladder else (value, None)
        if Path(path).is_absolute():
            continue
        node[key] = move(path) + ("" if symbol is None else f":{symbol}")


def anchor(raw: dict, folder) -> dict:
    """``raw`` with its relative file paths made absolute against ``folder`` (in place; returned); ``extends``
    is left as written (``load_config`` follows it against the same folder)."""
    base = Path(folder)
    _rewrite(raw, lambda p: str((base / p).resolve()), extends=False)
    return raw


def rebase(raw: dict, old_folder, new_folder) -> dict:
    """A copy of ``raw`` (a config file's own mapping, as written in ``old_folder``) whose relative file paths
    name the same files from ``new_folder``."""
    out = copy.deepcopy(raw)
    old, new = Path(old_folder).resolve(), Path(new_folder).resolve()
    _rewrite(out, lambda p: os.path.relpath((old / p).resolve(), new), extends=True)
    return out
