"""Student-t nu is a traced value: a new non-integer nu reuses the compiled simulation, and the draws follow
the Student-t law at each nu. Jumps with historical innovations are refused at config time.

Statistical assertions in Monte Carlo SEs at fixed seeds (K_SE = 4): quantiles by batch means (20
batches), the variance by the sd of the squared draws / sqrt(n)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from perpjax import random as R
from perpjax.config import ConfigError, build_model
from perpjax.engine.kernel import simulate_chunk
from perpjax.innovations import StudentLaw

from .test_forecast_model import batch_quantiles, pair_config, residual_file

K_SE = 4.0


def _compiles_during(fn):
    compiles, listening = [], [True]
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, *a, **k: compiles.append(name) if listening[0] and "/jax/core/compile" in name else None)
    try:
        jax.block_until_ready(fn())
    finally:
        listening[0] = False
    return compiles


def test_new_nu_does_not_recompile():
    """Two non-integer nu share one compiled program (nu is traced; only the gamma draw's shape is static)."""
    models = [build_model(pair_config(step=1800.0, horizon=7200.0, innovations={"kind": "student_t", "nu": nu}))[0]
              for nu in (4.3, 6.7)]
    key = R.seed_key(0)
    first = simulate_chunk(models[0], key, jnp.uint32(0), 8)
    jax.block_until_ready(first)
    out = []
    assert _compiles_during(lambda: out.append(simulate_chunk(models[1], key, jnp.uint32(0), 8)) or out) == []
    assert not np.array_equal(np.asarray(first.log_return), np.asarray(out[0].log_return))


def test_law_structure_is_static_and_values_traced():
    integer, half = StudentLaw.build(5.0), StudentLaw.build(4.3)
    assert (integer.k, integer.odd) == (2, True) and half.k == -1
    assert jax.tree_util.tree_structure(half) == jax.tree_util.tree_structure(StudentLaw.build(6.7))
    assert jax.tree_util.tree_structure(integer) != jax.tree_util.tree_structure(StudentLaw.build(6.0))
    # constants rounded once from float64 (bit-identical to the former compile-time constants)
    d = 4.3 / 2 - 1 / 3
    assert float(half.gamma_d) == float(np.float32(d))
    assert float(half.gamma_c) == float(np.float32(1 / math.sqrt(9 * d)))
    assert float(half.nu_minus_2) == float(np.float32(4.3 - 2.0))
    with pytest.raises(ValueError, match="nu: Student-t degrees of freedom must be > 2"):
        StudentLaw.build(2.0)
    # a sweep: the law at traced values, under vmap, equals the host-built laws within an ulp
    nus = jnp.asarray([4.3, 6.7, 9.1], jnp.float32)
    swept = jax.vmap(half.at)(nus)
    for i, nu in enumerate((4.3, 6.7, 9.1)):
        ref = StudentLaw.build(nu)
        for name in ("nu", "nu_minus_2", "gamma_d", "gamma_c"):
            a, b = np.float32(getattr(swept, name)[i]), np.float32(getattr(ref, name))
            assert abs(a - b) <= np.spacing(b), (nu, name, a, b)


@pytest.mark.parametrize("nu", [4.3, 6.7, 5.0])
def test_draws_follow_the_student_t_law(nu):
    """Unit innovations of one asset: quantiles 0.1 % .. 99.9 % equal the scaled t quantiles
    ``t_nu(q) sqrt((nu - 2) / nu)`` within 4 batch SE; the variance is 1 within 4 SE (finite fourth
    moment for nu > 4)."""
    model = build_model(pair_config(innovations={"kind": "student_t", "nu": nu}))[0]
    n = 200_000
    keys = R.path_key(R.seed_key(11), jnp.arange(n, dtype=jnp.uint32))
    eps = np.asarray(jax.jit(jax.vmap(lambda k: model.prices.innovation(k, 1)))(keys), np.float64)
    # the first asset's coordinate of L eps is eps_0 (L lower triangular with L_00 = 1)
    x = eps[:, :1]
    qs = np.array([0.001, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 0.999])
    q, se = batch_quantiles(x, qs)
    ref = stats.t.ppf(qs, nu) * math.sqrt((nu - 2) / nu)
    assert np.all(np.abs(q[:, 0] - ref) < K_SE * se[:, 0]), (q[:, 0], ref, se[:, 0])
    v = x[:, 0] ** 2
    assert abs(v.mean() - 1.0) < K_SE * v.std(ddof=1) / math.sqrt(n), (v.mean(), v.std(ddof=1) / math.sqrt(n))


def test_jumps_with_historical_innovations_are_refused(tmp_path):
    inn = {"kind": "historical", "residuals": str(residual_file(tmp_path))}
    jumps = {"intensity_per_year": [10.0, 10.0], "mean": [-0.02, -0.02], "std": [0.03, 0.03]}
    with pytest.raises(ConfigError, match=r"jumps: not with innovations.kind 'historical'"):
        build_model(pair_config(innovations=inn, jumps=jumps))
    build_model(pair_config(innovations=inn, jumps={**jumps, "intensity_per_year": [0.0, 0.0]}))  # no jumps: fine
