"""``run_sensitivities``: the job behind ``perpjax sensitivities`` (checks, both estimates, the table)."""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np
import pandas as pd

from ..calibrate import check_calibratable
from ..config import ConfigError, build_model
from ..engine import auto_chunk_size
from .estimates import (
    METRICS,
    Z_AGREE,
    ZERO_BY_CONSTRUCTION,
    compare,
    hard_values,
    pathwise_terms,
    zero_by_construction,
)
from .hard import hard_bumped, hard_run
from .params import PARAMS, STEP, base_of, check_bumps, check_supported
from .pathwise import AD_MODES, carry_copies, path_grads

REVERSE_CHUNK = 1000  # paths per reverse-mode chunk (memory: each path keeps its block checkpoints)
TEMPERATURE = 3e-4  # tau: the relaxed hazard's width, a fraction of the unit's notional (package doc)
COLUMNS = ["parameter", "metric", "unit", "gradient", "gradient_se", "fd", "fd_se", "z", "agree", "method",
           "value", "z_paired", "note", "fd_paths"]


@dataclasses.dataclass
class Setup:
    """A checked sensitivity job: the model, what to differentiate, and how."""

    model: object
    resolved: dict
    names: tuple
    bumps: dict
    paths: int
    seed: int
    temperature: float
    ad: str
    relaxed_refusal: str | None  # why the relaxed engine cannot run this model (None: it can)


def prepare(cfg: dict, names, bumps: dict, *, paths: int, seed: int | None, temperature: float = TEMPERATURE,
            ad: str = AD_MODES[0]) -> Setup:
    """Validate everything before compute (``ConfigError`` naming the field and bound)."""
    model, _, resolved = build_model(cfg)
    if not (1 <= paths <= 10_000_000):
        raise ConfigError(f"--paths: must lie in [1, 10,000,000] (got {paths})")
    if not (0 < temperature <= 1):
        raise ConfigError(f"--temperature: must lie in (0, 1] (got {temperature})")
    if seed is not None and not (0 <= int(seed) < 2**64):
        raise ConfigError(f"--seed: must lie in [0, 2**64) (got {seed})")
    if ad not in AD_MODES:
        raise ConfigError(f"--ad: {' or '.join(AD_MODES)} (got {ad!r})")
    check_supported(model, names)
    check_bumps(model, base_of(resolved), bumps)
    try:
        check_calibratable(model)
        refusal = None
    except ValueError as e:
        refusal = str(e).replace("calibration: ", "", 1)
    seed = resolved["seed"] if seed is None else int(seed)
    return Setup(model, resolved, tuple(names), dict(bumps), int(paths), seed, float(temperature), ad, refusal)


def run_sensitivities(s: Setup, *, chunk: int | None = None, progress=print) -> tuple[pd.DataFrame, dict]:
    """Both estimates for every (parameter, metric): (the table, the manifest's extra entries).

    ``chunk``: paths per pathwise chunk; default the hard runs' (the config's ``chunk_size``), at most
    ``REVERSE_CHUNK`` in reverse mode (which keeps every path's checkpoints)."""
    base = base_of(s.resolved)
    n = s.paths
    t0 = time.perf_counter()
    progress(f"hard engine: {n:,} paths at the config and at +-h for {', '.join(s.names)}")
    hard0 = hard_run(s.model, seed=s.seed, n_paths=n, chunk_size=s.resolved["chunk_size"])
    bumped = hard_bumped(s.model, base, s.bumps, seed=s.seed, n_paths=n, chunk_size=s.resolved["chunk_size"])
    pw = None
    if s.relaxed_refusal is None:
        progress(f"relaxed engine: pathwise gradients ({s.ad} mode), temperature {s.temperature:g}")
        pw = path_grads(s.model, base, s.names, seed=s.seed, n_paths=n, chunk=chunk or _pathwise_chunk(s),
                        tau=s.temperature, ad=s.ad)
    fund = float(s.model.insurance_fund)
    rows = []
    for name in s.names:
        lo, hi = bumped[name]
        h = s.bumps[name]
        for metric, meta in METRICS.items():
            d = (hard_values(hi, metric) - hard_values(lo, metric)) / (2.0 * h)
            note = _note(s, metric, fund)
            g, method = None, "finite-difference"
            if pw is not None and not note and zero_by_construction(name, metric):
                method, note = ZERO_BY_CONSTRUCTION, f"{name} moves no relaxed output: its pathwise column is 0"
            elif pw is not None and not note:
                dfund = fund if name == "fund" else 0.0
                g = pathwise_terms(metric, pw.values, pw.jac[name], fund=fund, dfund=dfund)
                method = "pathwise"
            value = float(np.mean(hard_values(hard0, metric)))
            est = compare(g, d, value)
            note = est.pop("note", "") or note  # no z where neither estimate resolves anything
            if method == ZERO_BY_CONSTRUCTION:
                est["gradient"] = 0.0
            rows.append({"parameter": name, "metric": metric, "unit": f"{meta.unit} per {PARAMS[name].unit}",
                         **est, "method": method, "value": value, "note": note})
    table = pd.DataFrame(rows, columns=COLUMNS)
    runs = [r for pair in bumped.values() for r in pair]  # compiled already: no compile in their times
    extra = _extra(s, min(r.seconds_per_path for r in runs), pw, time.perf_counter() - t0)
    return table, extra


def _pathwise_chunk(s: Setup) -> int:
    """The hard runs' chunk; reverse mode at most ``REVERSE_CHUNK``. On an accelerator (where the hard
    chunk fills memory) divided by the copies of the carry forward mode holds (``carry_copies``)."""
    c = s.resolved["chunk_size"]
    c = auto_chunk_size(s.model, s.paths) if c == "auto" else int(c)
    if s.ad == "reverse":
        return min(c, REVERSE_CHUNK)
    return c if jax.default_backend() == "cpu" else max(64, c // carry_copies(s.names))


def _note(s: Setup, metric: str, fund: float) -> str:
    """Why a row has no pathwise gradient ('' when it has one)."""
    if s.relaxed_refusal is not None:
        return f"relaxed engine refuses this model: {s.relaxed_refusal}"
    if METRICS[metric].kind == "depleted" and not fund > 0:
        return "no insurance fund (insurance_fund = 0): no depletion proxy to smooth"
    return ""


def _extra(s: Setup, hard_per_path: float, pw, wall: float) -> dict:
    """The manifest's entries: bumps (in parameter units, as the table), temperature, cost ratio (wall
    time per path, compilation excluded: the pathwise pass over the fastest hard forward run)."""
    cost = {"hard_forward_seconds_per_path": hard_per_path}
    if pw is not None:
        cost["pathwise_seconds_per_path"] = pw.seconds_per_path
        cost["pathwise_compile_seconds"] = pw.compile_seconds
        cost["ratio_vs_hard_forward"] = pw.seconds_per_path / hard_per_path
    return {"kind": "sensitivities", "paths": s.paths, "seed": s.seed, "parameters": list(s.names),
            "metrics": list(METRICS), "bumps": {n: h / STEP for n, h in s.bumps.items()},
            "bumps_log_or_shift": s.bumps, "parameter_units": {n: PARAMS[n].unit for n in s.names},
            "temperature": s.temperature, "ad_mode": s.ad, "z_agree": Z_AGREE,
            "relaxed_refusal": s.relaxed_refusal, "cost": cost, "sensitivities_wall_seconds": wall}

