"""Python API: config in, pandas out."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .config import build_model, load_config
from .engine import Outcome, simulate
from .io import atomic_write_json, atomic_write_text, manifest
from .metrics import by_tier, summarize


@dataclass
class Result:
    """A finished run: venue summary, per-unit table, per-path table, manifest."""

    summary: dict
    accounts: pd.DataFrame
    paths: pd.DataFrame
    manifest: dict
    outcome: Outcome

    def write(self, out_dir) -> None:
        """Write summary.json, accounts.csv, tiers.csv and manifest.json atomically into ``out_dir``."""
        d = Path(out_dir)
        atomic_write_json(d / "summary.json", self.summary)
        atomic_write_text(d / "accounts.csv", self.accounts.to_csv(index=False))
        atomic_write_text(d / "tiers.csv", by_tier(self.accounts).to_csv(index=False))
        atomic_write_json(d / "manifest.json", self.manifest)


def run(config=None, *, overrides=(), paths=None, seed=None, progress=None, checkpoint=None) -> Result:
    """Run a simulation from a config file path, a dict, or the packaged default (None).

    ``checkpoint``: a file to save progress to after every chunk and to resume from
    (see ``engine.simulate``); it is removed once the run has finished.
    """
    cfg = config if isinstance(config, dict) else load_config(config, overrides)
    if isinstance(config, dict) and overrides:
        from .config import apply_overrides

        cfg = apply_overrides(cfg, overrides)
    if paths is not None:
        cfg = {**cfg, "paths": paths}
    if seed is not None:
        cfg = {**cfg, "seed": seed}
    model, labels, resolved = build_model(cfg)
    t0 = time.perf_counter()
    import hashlib
    import json

    fingerprint = hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()
    out = simulate(model, seed=resolved["seed"], n_paths=resolved["paths"], chunk_size=resolved["chunk_size"],
                   progress=progress, checkpoint=checkpoint, fingerprint=fingerprint)
    wall = time.perf_counter() - t0
    summary, accounts, per_path = summarize(out, model, labels, resolved)
    summary["path_steps_per_second"] = out.n_paths * out.n_steps / wall
    return Result(summary, accounts, per_path, manifest(resolved, seed=resolved["seed"], wall_seconds=wall), out)
