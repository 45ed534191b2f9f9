"""The independent plain-``lax.scan`` benchmark reference (benchmarks/plain_scan.py) agrees with perpjax on
the benchmark workload (benchmarks/workload.yaml) within Monte Carlo error.

Both run 20,000 float32 paths of one day at one minute, on independent random streams (different
generators and seeds), so their estimates differ by Monte Carlo noise only: the difference of two
independent means has SE sqrt(se_a^2 + se_b^2), and we allow 4 of them (a false alarm once in
~16,000 runs at fixed keys; these keys are fixed, so the test is deterministic). At 20,000 paths
P(liquidation) ~ 0.008 has SE ~ 6e-4 per side, the expected trader loss ~ $400 has SE ~ $90.
"""

import math
import sys
from pathlib import Path

import jax.numpy as jnp
import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import plain_scan  # noqa: E402

import perpjax  # noqa: E402

N = 20_000
K_SE = 4.0


@pytest.fixture(scope="module")
def both():
    ref = plain_scan.run(N, seed=11, dtype=jnp.float32)
    res = perpjax.run(str(BENCH / "workload.yaml"), paths=N, seed=0)
    return ref, res


def _close(a, se_a, b, se_b):
    se = math.sqrt(se_a**2 + se_b**2)
    assert se > 0
    assert abs(a - b) < K_SE * se, f"{a} vs {b}: {abs(a - b) / se:.1f} SE apart (SE of the difference {se:.3g})"


def test_p_liquidation_agrees(both):
    ref, res = both
    s = res.summary
    _close(ref["p_liquidation"], ref["p_liquidation_se"], s["p_any_liquidation"], s["p_any_liquidation_se"])


def test_expected_loss_agrees(both):
    ref, res = both
    acc = res.accounts.iloc[0]
    o = res.outcome
    loss = o.path_trader_loss
    se = float(loss.std(ddof=1) / math.sqrt(N))
    assert abs(float(loss.mean()) - float(acc["expected_loss"])) <= 1e-6 * max(1.0, abs(float(acc["expected_loss"])))
    _close(ref["expected_loss"], ref["expected_loss_se"], float(acc["expected_loss"]), se)


def test_no_bad_debt_on_the_workload(both):
    """The workload's book is liquidated well before bankruptcy: both give exactly zero bad debt."""
    ref, res = both
    assert ref["bad_debt_mean"] == 0.0 and res.summary["bad_debt_mean"] == 0.0


def test_log_price_keeps_its_drift_in_float32():
    """BTC's drift per step (-sigma^2 dt / 2 = -3.4e-7) is below half an ulp of log(95000) in float32.
    The float32 scan of the log price must track the float64 sum of the same increments: per step the
    rounding error is at most half an ulp (4.8e-7) with mean zero, so after 1,440 steps the mean over
    2,000 paths of (float32 - float64) is within 1e-5 (losing the drift would put it at -4.9e-4)."""
    import jax

    n = 2000
    k32, k64 = plain_scan.constants(jnp.float32), plain_scan.constants(jnp.float64)
    eps = jax.random.normal(jax.random.PRNGKey(5), (plain_scan.N_STEPS, n, 4), jnp.float64)

    def walk(k, e):
        x0 = jnp.broadcast_to(jnp.log(k["s0"]), (n, 4))
        return jax.lax.scan(lambda x, z: (plain_scan.log_price_step(k, x, z), None), x0, e)[0]

    x32 = jax.jit(walk)(k32, eps.astype(jnp.float32)).astype(jnp.float64)
    x64 = jax.jit(walk)(k64, eps)
    err = x32 - x64
    assert float(jnp.abs(err.mean(0)).max()) < 1e-5
    drift_T = float(k64["drift"][0]) * plain_scan.N_STEPS
    assert drift_T < -4e-4  # what would be lost
