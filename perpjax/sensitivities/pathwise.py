"""Pathwise gradients through the relaxed engine (``calibrate.relaxed``), one per path.

Per path ``i`` the relaxed engine (the hard engine's market on the same random numbers, a soft
first passage of equity below maintenance at temperature ``tau``) gives four smooth outputs

    Y_i = (bad debt, P(any unit liquidated) = 1 - prod_u S_u, units liquidated = sum_u (1 - S_u),
           the fund's loss = bad debt - liquidation fees)

and their Jacobian ``J_i = dY_i / d theta`` over every parameter at once by reverse mode (one
backward pass per output, vmapped over the outputs and the paths, so the cost does not grow with
the number of parameters). Metrics and their standard errors follow on the host (``metrics``):
a mean's gradient is the mean of ``J_i`` (Glasserman 2004, section 7.2), an expected shortfall's
is the mean of ``J_i`` over the paths at or beyond its VaR (Hong and Liu 2009).
"""

from __future__ import annotations

import time
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import random as R
from ..calibrate import prepared, soft_outcome
from .params import Base, apply

OUTPUTS = ("bad_debt", "p_any", "n_liquidated", "fund_loss")
NO_FAIRNESS = {"over_liquidation": 0.0, "excess_cost": 0.0}


class PathGrads(NamedTuple):
    """Per path: the relaxed outputs (paths, outputs) and their Jacobian {param: (paths, outputs)}."""

    values: np.ndarray
    jac: dict
    seconds_per_path: float  # wall time per path (padding included), compilation excluded
    compile_seconds: float


def _path_outputs(model, base: Base, key, tau, block_steps: int):
    """theta, start -> the relaxed outputs of path ``start`` (a (4,) vector), differentiable in theta."""
    model = prepared(model, NO_FAIRNESS)

    def f(theta, start):
        m = apply(model, theta, base)
        o = soft_outcome(m, m.ladder, key, start, 1, tau, block_steps=block_steps)
        bd, p = jnp.sum(o.bad_debt[0]), o.p_liq[0]
        return jnp.stack([bd, 1.0 - jnp.prod(1.0 - p), jnp.sum(p), bd - jnp.sum(o.fee[0])])

    return f


@eqx.filter_jit
def _chunk(model, base, key, start, theta, count: int, tau, block_steps: int, ad: str):
    """Per path of a chunk: the outputs (count, 4) and {param: (count, 4)} Jacobian columns."""
    f = _path_outputs(model, base, key, tau, block_steps)
    starts = start + jnp.arange(count, dtype=jnp.uint32)
    names = tuple(theta)

    def reverse(s):  # one backward pass per output, for every parameter at once
        y, vjp = jax.vjp(lambda th: f(th, s), theta)
        (jac,) = jax.vmap(vjp)(jnp.eye(y.shape[0], dtype=y.dtype))
        return y, jac

    def forward(s):  # one tangent per parameter, for every output at once
        basis = {n: jnp.eye(len(names), dtype=model.dtype)[i] for i, n in enumerate(names)}
        y, tang = jax.vmap(lambda t: jax.jvp(lambda th: f(th, s), (theta,), (t,)), in_axes=(0,),
                           out_axes=(None, 0))(basis)
        return y, {n: tang[i] for i, n in enumerate(names)}

    return jax.vmap(reverse if ad == "reverse" else forward)(starts)


@eqx.filter_jit
def _chunk_forward(model, base, key, start, theta, count: int, tau, block_steps: int):
    f = _path_outputs(model, base, key, tau, block_steps)
    return jax.vmap(lambda s: f(theta, s))(start + jnp.arange(count, dtype=jnp.uint32))


def path_grads(model, base: Base, names, *, seed: int, n_paths: int, chunk: int, tau: float,
               block_steps: int = 60, ad: str = "reverse", forward_only: bool = False) -> PathGrads:
    """The relaxed outputs and their per-path Jacobian over ``names`` on paths 0 .. n_paths - 1 of
    ``seed`` (the same paths as ``simulate``), in chunks of ``chunk`` paths (the last one padded).

    ``ad``: "reverse" (one backward pass per output: cost independent of the number of parameters)
    or "forward" (one tangent per parameter). ``forward_only``: the relaxed outputs alone (no
    Jacobian; to measure what a gradient costs over a forward run)."""
    key = R.seed_key(seed)
    theta = {n: jnp.zeros((), model.dtype) for n in names}
    chunk = max(1, min(chunk, n_paths))
    t0 = time.perf_counter()
    args = (tau, block_steps) if forward_only else (tau, block_steps, ad)
    kernel = (_chunk_forward if forward_only else _chunk).lower(
        model, base, key, jnp.asarray(0, jnp.uint32), theta, chunk, *args).compile()
    t1 = time.perf_counter()
    vals, jacs = [], []
    for start in range(0, n_paths, chunk):
        out = kernel(model, base, key, jnp.asarray(start, jnp.uint32), theta, chunk, *args)
        y, j = (out, None) if forward_only else out
        if j is not None:
            jacs.append({n: np.asarray(v, np.float64) for n, v in j.items()})
        vals.append(np.asarray(y, np.float64))
    t2 = time.perf_counter()
    values = np.concatenate(vals)[:n_paths]
    jac = {n: np.concatenate([j[n] for j in jacs])[:n_paths] for n in names} if jacs else {}
    return PathGrads(values, jac, (t2 - t1) / (len(vals) * chunk), t1 - t0)
