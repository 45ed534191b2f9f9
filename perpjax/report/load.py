"""Read a finished output directory back as DataFrames: a simulate run, a ``--compare-modes`` run, a
backtest, a calibration, a sweep or a sensitivities run.

Every file is optional except ``summary.json`` and ``manifest.json`` (a ``--compare-modes`` directory
has ``compare.csv`` and one run directory per mode instead; a calibration ``metrics.json``,
``ladder.csv`` and ``ladder_before.csv``; a directory whose manifest says ``"kind": "sweep"`` or
``"sensitivities"`` its ``sweep.csv`` / ``sensitivities.csv``, whose columns are checked). Per-path
values are read from the Parquet files under ``RUN/paths/`` when they are there (pandas with
pyarrow) and given the names and values of ``perpjax.run(...).paths`` (``engine.outputs.path_columns``:
``bad_debt``, ``log_return_BTC``, ``drawdown_BTC`` as a fraction; indexed by path); a run without them
has ``paths = None``.
"""

from __future__ import annotations

import glob
import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import NotARunError as NotARunError  # defined in the leaf module; re-exported here
from ..io import config_fingerprint


@dataclass
class Run:
    """One output directory, read back.

    ``kind`` is ``"run"`` (``perpjax simulate``), ``"compare"`` (``--compare-modes``: ``compare`` is
    compare.csv, ``modes`` maps each mode to its own :class:`Run`), ``"backtest"`` (``perpjax
    backtest``: ``backtest`` holds its tables by file stem), ``"calibrate"`` (``tables``: ladder,
    ladder_before, history; ``summary`` is metrics.json), ``"sweep"`` or ``"sensitivities"``
    (``tables``: sweep / sensitivities). ``summary`` is the summary.json dict (empty where there is
    none); ``summary_frame`` the same as a one-column DataFrame. Tables that are absent are None."""

    dir: Path
    kind: str
    summary: dict
    manifest: dict
    accounts: pd.DataFrame | None = None
    tiers: pd.DataFrame | None = None
    paths: pd.DataFrame | None = None
    compare: pd.DataFrame | None = None
    modes: dict = field(default_factory=dict)
    backtest: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)

    @property
    def summary_frame(self) -> pd.DataFrame:
        """summary.json as a DataFrame (index: key; column: value), lists and dicts left out."""
        flat = {k: v for k, v in self.summary.items() if not isinstance(v, list | dict)}
        return pd.DataFrame({"value": pd.Series(flat, dtype=object)})

    @property
    def config(self) -> dict:
        return self.manifest.get("config") or {}

    @property
    def config_sha256(self) -> str | None:
        """sha256 of the manifest's config as canonical JSON (sorted keys): the run's config fingerprint."""
        return config_sha256(self.config) if self.config else None

    @property
    def model_sha256(self) -> str | None:
        """sha256 of the config without seed and paths: the fingerprint checkpoints and ``paths/_run.json``
        carry (``perpjax.io.config_fingerprint``: with the contents of the data files the config reads)."""
        if not self.config:
            return None
        return config_fingerprint(self.config)

    def __repr__(self) -> str:
        parts = [f"{self.kind} {self.dir}"]
        for name in ("accounts", "tiers", "paths", "compare"):
            df = getattr(self, name)
            if df is not None:
                parts.append(f"{name}={df.shape[0]}x{df.shape[1]}")
        if self.modes:
            parts.append(f"modes={list(self.modes)}")
        if self.backtest:
            parts.append(f"backtest={sorted(self.backtest)}")
        if self.tables:
            parts.append(f"tables={sorted(self.tables)}")
        return f"Run({', '.join(parts)})"


def config_sha256(cfg: dict) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()


def _read_json(path: Path) -> dict:
    try:
        with open(path) as f:
            obj = json.load(f)
    except json.JSONDecodeError as e:
        raise NotARunError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(obj, dict):
        raise NotARunError(f"{path}: expected a JSON object")
    return obj


def _read_csv(path: Path, notes: list) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except (ValueError, OSError) as e:  # an unreadable optional table: the report goes on without it
        notes.append(f"{path.name}: not read ({e})")
        return None


def _read_paths(d: Path, manifest: dict, summary: dict, notes: list) -> pd.DataFrame | None:
    """The run's per-path table from its chunk files, with ``Result.paths``'s names and values
    (``engine.outputs.path_table`` of the stored fields), indexed by path."""
    pattern = manifest.get("stored_paths") if isinstance(manifest.get("stored_paths"), str) else None
    files = sorted(glob.glob(str(d / pattern))) if pattern else []
    if not files:
        files = sorted(str(p) for p in (d / "paths").glob("*.parquet")) if (d / "paths").is_dir() else []
    files = [f for f in files if not Path(f).name.startswith((".", "_"))]
    if not files:
        return None
    try:
        frames = [pd.read_parquet(f) for f in files]
    except Exception as e:  # noqa: BLE001 - pyarrow missing or a file being written: report without paths
        notes.append(f"paths/: Parquet files not read ({type(e).__name__}: {e})")
        return None
    df = pd.concat(frames, ignore_index=True)
    if "path" in df.columns:
        df = df.sort_values("path", kind="stable").reset_index(drop=True)
    from ..engine.outputs import path_table

    names = (manifest.get("config") or {}).get("asset_names") or _stored_assets(df.columns)
    cascade_on = "cascade_rounds_mean" in summary  # summarize adds the cascade metrics exactly when monitored
    try:
        return path_table({c: df[c].to_numpy() for c in df.columns}, names, cascade_on,
                          index=df["path"] if "path" in df.columns else None)
    except KeyError as e:  # written by another version: the report goes on without the per-path table
        notes.append(f"paths/: the chunk files lack the column {e} of this version's per-path table")
        return None


def _stored_assets(columns) -> list:
    """Asset names from the chunk files' per-asset columns (``path_log_return__BTC``), in column order."""
    from ..engine.outputs import stored_name

    prefix = stored_name("path_log_return", "")
    return [c[len(prefix):] for c in columns if c.startswith(prefix)]


# The tables a sweep / sensitivities directory must hold, and their columns (a sweep adds one column per
# varied dotted config key between ``set`` and ``metric``).
TIDY = {"sweep": ("sweep.csv", ["set", "metric", "value", "se", "diff_vs_base", "diff_se"]),
        "sensitivities": ("sensitivities.csv", ["parameter", "metric", "unit", "gradient", "gradient_se", "fd",
                                                "fd_se", "z", "agree", "method"])}
CALIBRATION_FILES = ("metrics.json", "ladder.csv", "ladder_before.csv")


def _read_tidy(d: Path, kind: str) -> pd.DataFrame:
    name, cols = TIDY[kind]
    path = d / name
    if not path.is_file():
        raise NotARunError(f"{d}: a {kind} directory (manifest kind {kind!r}) without {name}")
    try:
        t = pd.read_csv(path)
    except (ValueError, OSError) as e:
        raise NotARunError(f"{path}: not a readable CSV ({e})") from None
    missing = [c for c in cols if c not in t.columns]
    if missing:
        raise NotARunError(f"{path}: missing column(s) {', '.join(missing)} (expected {', '.join(cols)})")
    if not len(t):
        raise NotARunError(f"{path}: no rows")
    return t


def _load_kind(d: Path, kind: str, manifest: dict, notes: list) -> Run:
    """A calibration, sweep or sensitivities directory."""
    summary = _read_json(d / "summary.json") if (d / "summary.json").is_file() else {}
    if kind == "calibrate":
        missing = [f for f in CALIBRATION_FILES if not (d / f).is_file()]
        if missing:
            raise NotARunError(f"{d}: a calibration directory without {', '.join(missing)}")
        summary = _read_json(d / "metrics.json")
        tables = {}
        for stem in ("ladder", "ladder_before", "history"):
            t = _read_csv(d / f"{stem}.csv", notes)
            if t is not None:
                tables[stem] = t
        if "ladder" not in tables or "ladder_before" not in tables:
            raise NotARunError(f"{d}: a calibration directory whose ladder.csv / ladder_before.csv is unreadable")
    else:
        tables = {kind: _read_tidy(d, kind)}
    return Run(dir=d, kind=kind, summary=summary, manifest=manifest, tables=tables, warnings=notes)


def is_run_dir(d) -> bool:
    d = Path(d)
    return (d / "summary.json").is_file() and (d / "manifest.json").is_file()


def load(run_dir, *, paths: bool = True) -> Run:
    """Read ``run_dir`` (a simulate, ``--compare-modes``, backtest, calibrate, sweep or sensitivities
    output directory).

    Raises :class:`NotARunError` (a ``ValueError``) naming the directory when it is none of these.
    ``paths=False`` skips the per-path Parquet files."""
    d = Path(run_dir)
    if not d.is_dir():
        raise NotARunError(f"{d}: not a directory")
    notes: list = []
    manifest = _read_json(d / "manifest.json") if (d / "manifest.json").is_file() else {}
    kind = manifest.get("kind")
    if kind in TIDY or kind == "calibrate" or all((d / f).is_file() for f in CALIBRATION_FILES):
        return _load_kind(d, kind if kind in TIDY else "calibrate", manifest, notes)
    if not is_run_dir(d):
        modes = {}
        if (d / "compare.csv").is_file():
            for sub in sorted(p for p in d.iterdir() if p.is_dir()):
                if is_run_dir(sub):
                    modes[sub.name] = load(sub, paths=paths)
        if not modes:
            raise NotARunError(f"{d}: not a perpjax run directory (no summary.json and manifest.json, "
                               "nor compare.csv with one run folder per mode)")
        compare = pd.read_csv(d / "compare.csv", index_col=0)
        first = next(iter(modes.values()))
        order = [c for c in compare.columns if c in modes] or list(modes)
        modes = {m: modes[m] for m in order if m in modes}
        return Run(dir=d, kind="compare", summary=first.summary, manifest=first.manifest, compare=compare,
                   modes=modes, warnings=notes)
    summary, manifest = _read_json(d / "summary.json"), _read_json(d / "manifest.json")
    if (d / "liquidation_cases.csv").is_file() or (d / "var_series.csv").is_file() or "backtest" in manifest:
        tables = {}
        for stem in ("liquidation_cases", "var_series", "liquidation_forecasts", "var_forecasts"):
            t = _read_csv(d / f"{stem}.csv", notes)
            if t is not None:
                tables[stem] = t
        return Run(dir=d, kind="backtest", summary=summary, manifest=manifest, backtest=tables, warnings=notes)
    run = Run(dir=d, kind="run", summary=summary, manifest=manifest, accounts=_read_csv(d / "accounts.csv", notes),
              tiers=_read_csv(d / "tiers.csv", notes),
              paths=_read_paths(d, manifest, summary, notes) if paths else None,
              warnings=notes)
    for n in notes:
        warnings.warn(n, stacklevel=2)
    return run
