"""The parameter sets of a sweep: ``--grid key=v1,v2,...`` (Cartesian product) or a listed table, each set
validated up front by the normal config path (``config.build_model``, ``solvency.check_solvency``).

Keys are the config's dotted keys exactly as ``--set`` takes them (``config.apply_overrides``); each value
is parsed as YAML, as ``--set`` parses it. Set 0 is the first value of every grid (the first table row): the
base that every other set is compared with."""

from __future__ import annotations

import copy
import csv
import itertools
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..config import ConfigError, apply_overrides, build_model

SWEEP_WIDE = {
    "seed": "every set uses the same seed (common random numbers): give it with --seed",
    "paths": "every set runs the same paths: give it with --paths",
    "dtype": "one dtype for the whole sweep: give it with --set dtype=...",
    "devices": "one device count for the whole sweep: give it with --set devices=N",
    "chunk_size": "the chunking is the sweep's (chunk x sets fits one budget): give it with --set chunk_size=N",
}
"""Top-level keys that cannot vary between sets, and why."""


@dataclass
class SweepSet:
    """One parameter set: its index, {dotted key: value text}, and what ``build_model`` made of it."""

    index: int
    texts: dict
    model: object
    labels: object
    resolved: dict

    @property
    def values(self) -> dict:
        """{dotted key: the value parsed as YAML}: what the set's columns hold."""
        return {k: yaml.safe_load(v) for k, v in self.texts.items()}

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.texts.items())


def split_values(text: str) -> list[str]:
    """``"1,2,[3,4]"`` -> ``["1", "2", "[3,4]"]``: commas inside brackets or braces do not split."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return out


def parse_grid(items) -> dict:
    """``["a.b=1,2", "c=x,y"]`` -> ``{"a.b": ["1", "2"], "c": ["x", "y"]}`` (value texts, in order)."""
    grid = {}
    for item in items or ():
        if "=" not in item:
            raise ConfigError(f"--grid {item}: expected key=v1,v2,...")
        key, text = (s.strip() for s in item.split("=", 1))
        if not key:
            raise ConfigError(f"--grid {item}: no key before '='")
        if key in grid:
            raise ConfigError(f"--grid {key}: given twice (give all its values in one --grid)")
        values = split_values(text)
        if any(v == "" for v in values):
            raise ConfigError(f"--grid {key}: an empty value in {text!r}")
        grid[key] = values
    return grid


def read_table(path) -> list[dict]:
    """The rows of a CSV table whose header names dotted config keys: one parameter set per row."""
    p = Path(path)
    try:
        with p.open(newline="") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise ConfigError(f"--table {p}: cannot read: {e.strerror or e}") from None
    if len(rows) < 2:
        raise ConfigError(f"--table {p}: needs a header of config keys and at least one row")
    head = [h.strip() for h in rows[0]]
    if any(not h for h in head) or len(set(head)) != len(head):
        raise ConfigError(f"--table {p}: the header must name distinct config keys (got {head})")
    out = []
    for r, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(head):
            raise ConfigError(f"--table {p}: row {r} has {len(row)} cells, the header {len(head)}")
        if any(not c.strip() for c in row):
            raise ConfigError(f"--table {p}: row {r}: an empty cell")
        out.append({h: c.strip() for h, c in zip(head, row, strict=True)})
    return out


def set_texts(grid: dict | None = None, table: list[dict] | None = None) -> list[dict]:
    """Every set as {key: value text}: the Cartesian product of ``grid`` (first key slowest) or the rows of
    ``table``."""
    if grid and table:
        raise ConfigError("sweep: give --grid or --table, not both")
    if table:
        rows = table
    elif grid:
        rows = [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]
    else:
        raise ConfigError("sweep: no parameter sets (give --grid key=v1,v2,... or --table FILE.csv)")
    for key in rows[0]:
        top = key.split(".")[0]
        if top in SWEEP_WIDE:
            raise ConfigError(f"{key}: cannot vary in a sweep: {SWEEP_WIDE[top]}")
    return rows


def build_sets(base: dict, rows: list[dict], warn=None) -> list[SweepSet]:
    """Validate every set (config schema, models, path cap, solvency at t = 0) before any compute.

    A ``ConfigError`` names the set, its values and the failing field."""
    from ..engine.driver import MAX_PATHS
    from ..solvency import check_solvency

    sets = []
    for i, texts in enumerate(rows):
        desc = ", ".join(f"{k}={v}" for k, v in texts.items())
        try:
            cfg = apply_overrides(copy.deepcopy(base), [f"{k}={v}" for k, v in texts.items()])
            model, labels, resolved = build_model(cfg)
            if resolved["paths"] > MAX_PATHS:
                raise ConfigError(f"paths: at most {MAX_PATHS:,} (got {resolved['paths']:,})")
            check_solvency(model, labels, resolved, warn=warn)
        except ConfigError as e:
            raise ConfigError(f"sweep set {i} ({desc}): {e}") from None
        sets.append(SweepSet(i, dict(texts), model, labels, resolved))
    return sets
