"""The optimiser: optax over the relaxed objective, with checkpoint/resume and early stopping.

Adam with a cosine-decayed learning rate after global-norm clipping; every iterate is checked to be
a publishable ladder (``space.check_ladder``) before it is used. Paths may be drawn afresh each
iteration (``resample``) and the gradient accumulated over chunks of paths (``chunk_paths``: memory
bound by one chunk, same gradient as the whole batch). A checkpoint written every
``checkpoint_every`` iterations resumes to the same result as an uninterrupted run; the best
iterate (by a relative ``tolerance``) is returned, and ``patience`` iterations without improvement stop.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import random as R
from ..config import schema
from ..engine import RiskModel
from ..errors import ConfigError
from .objective import OBJECTIVE_DEFAULTS, Terms, make_loss, objective, objective_terms, prepared
from .relaxed import check_calibratable, soft_outcome
from .space import LadderSpace, check_ladder

# config section ``calibration``: defaults from the schema (``schema.Calibration``)
DEFAULTS = schema.defaults(schema.Calibration)


def optimizer(cfg: dict) -> optax.GradientTransformation:
    sched = optax.cosine_decay_schedule(cfg["learning_rate"], max(1, cfg["iterations"]), alpha=0.1)
    return optax.chain(optax.clip_by_global_norm(cfg["clip_norm"]), optax.adam(sched))


def _save(path: Path, fingerprint: str, it: int, theta, opt_state, history: list, best) -> None:
    from ..io import atomic_write_npz

    leaves = jax.tree_util.tree_leaves(opt_state)
    arrays = {f"opt_{k}": np.asarray(v) for k, v in enumerate(leaves)}
    arrays.update({f"theta_{k}": np.asarray(v) for k, v in theta.items()})
    atomic_write_npz(path, key=np.asarray(fingerprint), it=np.asarray(it),
                     history=np.asarray(json.dumps(history)), best=np.asarray(json.dumps(best)), **arrays)


def _differences(a, b, where: str = "") -> list[str]:
    """Dotted paths where two JSON values differ (the settings a checkpoint was written with vs now)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str)
                for d in _differences(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{where}.{k}" if where else str(k))]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where or 'settings'} ({json.dumps(a, default=str)[:60]} saved, "
                              f"{json.dumps(b, default=str)[:60]} now)"]


def _load(path: Path, fingerprint: str, theta, opt_state):
    """The saved state, or a ``ConfigError`` naming the file and, for another calibration's
    checkpoint, which settings differ (``fingerprint``: the JSON of the settings it belongs to)."""
    try:
        with np.load(path) as z:
            saved = str(z["key"])
            if saved != fingerprint:
                try:
                    diff = _differences(json.loads(saved), json.loads(fingerprint))
                except ValueError:
                    diff = []
                raise ConfigError(f"calibration checkpoint: {path} belongs to another calibration"
                                  + (": " + "; ".join(d.removeprefix("[0].").removeprefix("[1].")
                                                      for d in diff[:5]) if diff else "")
                                  + "; run without --resume to start over")
            treedef = jax.tree_util.tree_structure(opt_state)
            leaves = jax.tree_util.tree_leaves(opt_state)
            new = [jnp.asarray(z[f"opt_{k}"], dtype=leaf.dtype) for k, leaf in enumerate(leaves)]
            th = {k: jnp.asarray(z[f"theta_{k}"], v.dtype) for k, v in theta.items()}
            return (int(z["it"]), th, jax.tree_util.tree_unflatten(treedef, new),
                    json.loads(str(z["history"])), json.loads(str(z["best"])))
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - any fault of the file is a corrupted checkpoint
        raise ConfigError(f"calibration checkpoint: {path} is corrupted ({type(e).__name__}: {e}); remove it or "
                          "run without --resume") from None


def _tolist(theta: dict) -> dict:
    return {k: np.asarray(v).tolist() for k, v in theta.items()}


def _history_row(it: int, j, terms: Terms, gnorm, space: LadderSpace, ladder, cur: RiskModel, theta: dict,
                 names) -> dict:
    """One iteration's row: objective, gradient norm, terms, and the values of every tuned parameter."""
    row = {"iteration": it, "objective": float(j), "grad_norm": float(gnorm),
           **{f"term_{k}": float(v) for k, v in terms._asdict().items()}}
    mmr, floors = np.asarray(ladder.mmr), np.asarray(ladder.floors)
    for a, name in enumerate(names):
        for k in range(space.n_tiers[a]):
            row[f"mmr_{name}_{k + 1}"] = float(mmr[a, k])
            if "floors" in theta and k > 0:
                row[f"floor_{name}_{k + 1}"] = float(floors[a, k])
    if "fee_rate" in theta:
        row["fee_rate"] = float(cur.liquidation.fee_rate)
    if "mark_window" in theta:
        row["mark_window_seconds"] = float(cur.mark.window_seconds)
    if "fraction" in theta:
        row["fraction"] = float(cur.liquidation.fraction)
    if "buffer" in theta:
        row["buffer"] = float(cur.liquidation.buffer)
    return row


def calibrate(model: RiskModel, space: LadderSpace, cfg: dict, *, seed: int, names, checkpoint=None,
              fingerprint: str = "", log=None, max_iterations=None):
    """Run the optimiser. Returns (best theta, history rows). ``checkpoint``: file written every
    ``checkpoint_every`` iterations; a matching one is resumed (same result as uninterrupted).
    ``max_iterations``: stop after this many iterations in this call (for tests of resume)."""
    check_calibratable(model)
    obj = {**OBJECTIVE_DEFAULTS, **cfg["objective"]}
    opt = optimizer(cfg)
    key = R.seed_key(seed)
    chunk = cfg.get("chunk_paths") or cfg["paths"]
    if cfg["paths"] % chunk:
        raise ValueError(f"calibration.chunk_paths: must divide paths ({cfg['paths']}), got {chunk}")
    n_chunks = cfg["paths"] // chunk
    value_and_grad = chunked_value_and_grad(model, space, obj, cfg, key, chunk, n_chunks)
    update = jax.jit(lambda g, opt_state, theta: opt.update(g, opt_state, theta))

    def step(theta, opt_state, start):
        j, terms, g = value_and_grad(theta, start)
        updates, opt_state = update(g, opt_state, theta)
        return optax.apply_updates(theta, updates), opt_state, j, terms, optax.tree.norm(g)

    theta = space.init(model)
    opt_state = opt.init(theta)
    history, best = [], {"it": -1, "objective": math.inf, "theta": _tolist(theta)}
    it0 = 0
    if checkpoint is not None and Path(checkpoint).exists():
        it0, theta, opt_state, history, best = _load(Path(checkpoint), fingerprint, theta, opt_state)
    stop = cfg["iterations"] if max_iterations is None else min(cfg["iterations"], it0 + max_iterations)
    for it in range(it0, stop):
        ladder = space.ladder(theta)
        check_ladder(ladder, space)
        cur = space.apply(model, theta)
        start = jnp.uint32(cfg["paths"] * it if cfg["resample"] else 0)
        new_theta, opt_state, j, terms, gnorm = step(theta, opt_state, start)
        row = _history_row(it, j, terms, gnorm, space, ladder, cur, theta, names)
        history.append(row)
        if float(j) < best["objective"] - cfg["tolerance"] * abs(best["objective"]) or best["it"] < 0:
            best = {"it": it, "objective": float(j), "theta": _tolist(theta)}
        if log is not None:
            log(row)
        theta = new_theta
        done = it + 1
        if checkpoint is not None and (done % cfg["checkpoint_every"] == 0 or done == stop):
            _save(Path(checkpoint), fingerprint, done, theta, opt_state, history, best)
        if cfg["patience"] and it - best["it"] >= cfg["patience"]:
            break
    return {k: jnp.asarray(v, theta[k].dtype) for k, v in best["theta"].items()}, history


def chunked_value_and_grad(model, space, obj, cfg, key, chunk: int, n_chunks: int):
    """(theta, start) -> (objective, terms, gradient) over ``n_chunks`` chunks of ``chunk`` paths.

    One chunk: a single jitted value-and-gradient. Several (memory bound by one chunk): the terms
    are means over paths, so pass 1 averages each chunk's terms (forward only) and gives the
    objective's weights ``dJ/dterm`` at the average; pass 2 back-propagates ``sum_k w_k term_k`` per
    chunk and averages: the exact gradient of the whole-batch objective, also with the nonlinear
    exceedance penalty.
    """
    temperature, block = cfg["temperature"], cfg["block_steps"]
    if n_chunks == 1:
        loss = make_loss(model, space, obj, temperature, chunk, block)

        @jax.jit
        def single(theta, start):
            (j, terms), g = jax.value_and_grad(loss, has_aux=True)(theta, key, start)
            return j, terms, g
        return single

    if obj["fund_es"]:
        raise ValueError("calibration.chunk_paths: the fund ES term ranks all paths together; "
                         "use one chunk (chunk_paths: 0) with objective.fund_es")

    model = prepared(model, obj)

    def chunk_terms(theta, start):
        m = space.apply(model, theta)
        out = soft_outcome(m, m.ladder, key, start, chunk, temperature, block_steps=block)
        return objective_terms(m, m.ladder, out, obj)

    terms_jit = jax.jit(chunk_terms)
    weighted = jax.jit(jax.grad(lambda theta, start, w: sum(
        wk * tk for wk, tk in zip(w, chunk_terms(theta, start), strict=True))))
    weights = jax.jit(jax.grad(lambda t: objective(Terms(*t), obj)))

    def run(theta, start):
        starts = [start + jnp.uint32(c * chunk) for c in range(n_chunks)]
        parts = [terms_jit(theta, s0) for s0 in starts]
        mean = Terms(*(sum(p[k] for p in parts) / n_chunks for k in range(len(Terms._fields))))
        w = tuple(weights(tuple(mean)))
        g = None
        for s0 in starts:
            gc = weighted(theta, s0, w)
            g = gc if g is None else jax.tree_util.tree_map(jnp.add, g, gc)
        g = jax.tree_util.tree_map(lambda x: x / n_chunks, g)
        return objective(mean, obj), mean, g

    return run
