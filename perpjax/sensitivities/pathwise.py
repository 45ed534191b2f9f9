"""Pathwise gradients through the relaxed engine (``calibrate.relaxed``), one per path.

Per path ``i`` the relaxed engine (the hard engine's market on the same random numbers, a soft
first passage of equity below maintenance at temperature ``tau``) gives four smooth outputs

    Y_i = (bad debt, P(any unit liquidated) = 1 - prod_u S_u, units liquidated = sum_u (1 - S_u),
           the fund's loss = bad debt - liquidation fees)

and their Jacobian ``J_i = dY_i / d theta``. Metrics and their standard errors follow on the host
(``metrics``): a mean's gradient is the mean of ``J_i`` (Glasserman 2004, section 7.2), an expected
shortfall's is the mean of ``J_i`` over the paths at or beyond its VaR (Hong and Liu 2009).

Two modes (``ad``):

* ``forward`` (default): forward mode on the sparse relaxed engine (``soft_outcome(sparse=...)``:
  a step's soft liquidation runs only on the paths where it weighs, compacted over the chunk, as
  the hard engine's liquidations are). Tangents are nested by what a parameter moves: the market
  parameters (``MARKET``: vol, correlation) are the inner ``jvp``, carried through the market step
  at every step; the venue parameters (MMR, depth, spread, fee) the outer one, which has no
  tangent in the market at all (JAX's symbolic zeros), only in the liquidations. The fund moves no
  relaxed output (its column is 0; its effect is the depletion proxy's threshold, ``estimates``). The outer
  tangent of the inner Jacobian (second derivatives) is computed where the liquidations run and
  discarded. Cost ~ a forward run + one market tangent per market parameter.
* ``reverse``: one backward pass per output through the dense relaxed engine, per path (its cost
  does not grow with the number of parameters, but each pass recomputes the checkpointed blocks;
  slower than ``forward`` for these few parameters on CPU, ``benchmarks/RESULTS.md``).

One chunk of paths, jitted (``path_grads`` runs them chunk by chunk; public so that the modes can be checked
against each other on the same paths): ``chunk_forward`` (forward mode; ``sparse=0.0`` is the dense relaxed
engine), ``chunk_reverse`` (reverse mode) and ``chunk_values`` (the outputs alone). Each takes
``(model, base, key, start, theta, count, tau, ...)``: the paths ``start .. start + count - 1`` of ``key``,
``theta`` = {parameter: its offset ``x``, 0 at the config's value}.
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
AD_MODES = ("forward", "reverse")  # the first is the default
MARKET = ("vol", "correlation")  # the parameters that move the market (the others act at liquidations only)
SPARSE = (1 / 64, 1 / 16, 1 / 8, 1 / 4)  # shares of a chunk's paths run compacted (sparse.where_active)
OUTSIDE = ("fund",)  # moves no relaxed output: its effect is the depletion proxy's threshold (``estimates``)
NO_FAIRNESS = {"over_liquidation": 0.0, "excess_cost": 0.0}


class PathGrads(NamedTuple):
    """Per path: the relaxed outputs (paths, outputs) and their Jacobian {param: (paths, outputs)}."""

    values: np.ndarray
    jac: dict
    seconds_per_path: float  # wall time per path (padding included), compilation excluded
    compile_seconds: float


def _outputs(model, base: Base, key, tau, block_steps: int, sparse: float | tuple):
    """theta, start, count -> the relaxed outputs (count, 4) of paths start .. start + count - 1,
    differentiable in theta. With ``sparse`` (not 0) the paths must stay vmapped inside the autodiff
    (call this for the whole chunk: ``relaxed._soft_step``)."""
    model = prepared(model, NO_FAIRNESS)

    def f(theta, start, count):
        m = apply(model, theta, base)
        o = soft_outcome(m, m.ladder, key, start, count, tau, block_steps=block_steps, sparse=sparse)
        bd, p = jnp.sum(o.bad_debt, axis=1), o.p_liq
        return jnp.stack([bd, 1.0 - jnp.prod(1.0 - p, axis=1), jnp.sum(p, axis=1), bd - jnp.sum(o.fee, axis=1)],
                         axis=1)

    return f


def carry_copies(names) -> int:
    """Copies of the carry forward mode holds for ``names``: the value and one tangent per market
    parameter, each with one tangent per venue parameter (the outer ``jvp``)."""
    n_market = sum(n in MARKET for n in names)
    n_venue = sum(n not in MARKET and n not in OUTSIDE for n in names)
    return (1 + n_market) * (1 + n_venue)


def _jvp_basis(fun, primal: dict, dtype):
    """``fun(primal)`` and its tangent along each of ``primal``'s scalars: (value, {name: tangent}),
    the tangents vmapped (the value computed once)."""
    names = tuple(primal)
    if not names:
        return fun(primal), {}
    basis = {n: jnp.eye(len(names), dtype=dtype)[i] for i, n in enumerate(names)}
    y, tang = jax.vmap(lambda t: jax.jvp(fun, (primal,), (t,)), out_axes=(None, 0))(basis)
    return y, {n: jax.tree_util.tree_map(lambda a, i=i: a[i], tang) for i, n in enumerate(names)}


@eqx.filter_jit
def chunk_forward(model, base, key, start, theta, count: int, tau, sparse: float | tuple):
    """Forward mode, market tangents inside, venue tangents outside (module doc): the outputs
    (count, 4) and {param: (count, 4)} Jacobian columns. ``sparse``: the shares of the chunk run
    compacted (``SPARSE``), 0.0 for the dense relaxed engine."""
    f = _outputs(model, base, key, tau, 0, sparse)
    th_m = {n: v for n, v in theta.items() if n in MARKET}
    th_v = {n: v for n, v in theta.items() if n not in MARKET and n not in OUTSIDE}

    def inner(tv):  # the outputs and their market-parameter tangents
        return _jvp_basis(lambda a: f({**a, **tv}, start, count), th_m, model.dtype)

    (y, jac), outer = _jvp_basis(inner, th_v, model.dtype)
    jac = dict(jac)
    jac.update({n: dy for n, (dy, _) in outer.items()})  # (_: second derivatives, unused)
    return y, {n: jac[n] if n in jac else jnp.zeros_like(y) for n in theta}


@eqx.filter_jit
def chunk_reverse(model, base, key, start, theta, count: int, tau, block_steps: int):
    """Reverse mode on the dense relaxed engine, per path: the outputs (count, 4) and {param: (count, 4)}
    Jacobian columns, ``block_steps`` steps per checkpoint."""
    f = _outputs(model, base, key, tau, block_steps, 0.0)

    def reverse(s):  # one backward pass per output, for every parameter at once
        y, vjp = jax.vjp(lambda th: f(th, s, 1)[0], theta)
        (jac,) = jax.vmap(vjp)(jnp.eye(y.shape[0], dtype=y.dtype))
        return y, jac

    return jax.vmap(reverse)(start + jnp.arange(count, dtype=jnp.uint32))


@eqx.filter_jit
def chunk_values(model, base, key, start, theta, count: int, tau, sparse: float | tuple):
    """The sparse relaxed engine's outputs alone (what a gradient costs over: ``forward_only``)."""
    return _outputs(model, base, key, tau, 0, sparse)(theta, start, count)


def path_grads(model, base: Base, names, *, seed: int, n_paths: int, chunk: int, tau: float,
               block_steps: int = 60, ad: str = "forward", sparse: float | tuple = SPARSE,
               forward_only: bool = False) -> PathGrads:
    """The relaxed outputs and their per-path Jacobian over ``names`` on paths 0 .. n_paths - 1 of
    ``seed`` (the same paths as ``simulate``), in chunks of ``chunk`` paths (the last one padded).

    ``ad``: "forward" (the sparse relaxed engine, nested tangents: module doc) or "reverse" (one
    backward pass per output through the dense engine, ``block_steps`` per checkpoint).
    ``forward_only``: the sparse relaxed outputs alone (no Jacobian; to measure what a gradient
    costs over a forward run)."""
    if ad not in AD_MODES:
        raise ValueError(f"ad: one of {AD_MODES} (got {ad!r})")
    key = R.seed_key(seed)
    theta = {n: jnp.zeros((), model.dtype) for n in names}
    chunk = max(1, min(chunk, n_paths))
    t0 = time.perf_counter()
    if forward_only:
        fn, args = chunk_values, (tau, sparse)
    elif ad == "reverse":
        fn, args = chunk_reverse, (tau, block_steps)
    else:
        fn, args = chunk_forward, (tau, sparse)
    kernel = fn.lower(model, base, key, jnp.asarray(0, jnp.uint32), theta, chunk, *args).compile()
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
