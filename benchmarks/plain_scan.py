"""Independent plain-``jax.lax.scan`` reference of the benchmark workload (the JAX twin of reference_numpy.py).

The same model as ``reference_numpy.py`` and ``workload.yaml``: 4 correlated GBM assets, one cross
account, EMA mark of the index, 8 h funding at the interest rate (zero basis), a tiered ladder, full
liquidation with square-root slippage, 1-minute steps over one day. Written from DOMAIN.md and the
NumPy reference, not from perpjax's kernel: the whole book is carried as ``(paths, assets)`` arrays,
one ``lax.scan`` over the steps, every path computed densely (liquidations by ``where``), the step's
normals drawn as one ``(paths, assets)`` block from ``fold_in(key, t)``. Simple and untuned on
purpose: it is what a JAX user would write first, and the baseline perpjax is measured against.

    python benchmarks/plain_scan.py [--paths 100000] [--repeats 3] [--dtype float32]

prints one JSON line (compile and run timed separately, best of N, blocked until ready).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

S0 = np.array([95000.0, 3500.0, 180.0, 0.30])
VOL = np.array([0.60, 0.75, 1.00, 1.10])
CORR = np.array([[1.00, 0.85, 0.75, 0.65], [0.85, 1.00, 0.75, 0.62], [0.75, 0.75, 1.00, 0.60],
                 [0.65, 0.62, 0.60, 1.00]])
SIZE = np.array([20.0, -300.0, 2000.0, -1.0e6])
ENTRY = S0.copy()
COLLATERAL = 120_000.0
FLOORS = np.array([0.0, 50_000.0, 600_000.0, 3_000_000.0])
MMR = np.array([0.004, 0.005, 0.010, 0.025])
DEPTH = np.array([3.4e6, 2.5e6, 1.2e6, 6.0e5])
SPREAD = np.array([1e-5, 3e-5, 1e-4, 2e-4])
FEE = 0.005
DEPTH_DISTANCE = 0.005
STEP = 60.0
HORIZON = 86400.0
WINDOW = 150.0
FUNDING_EVERY = 480
INTEREST = 1e-4
N_STEPS = int(HORIZON / STEP)


def constants(dtype):
    """The model's constants as ``dtype`` arrays (per-step drift and vol, Cholesky factor, ladder)."""
    dt = STEP / (365 * 86400)
    c = lambda a: jnp.asarray(a, dtype)  # noqa: E731
    cum = np.concatenate([[0.0], np.cumsum(FLOORS[1:] * np.diff(MMR))])  # MM(N) = max_k (N MMR_k - cum_k)
    return {"L": c(np.linalg.cholesky(CORR)), "drift": c(-0.5 * VOL**2 * dt), "sd": c(VOL * np.sqrt(dt)),
            "alpha": c(1 - np.exp(-STEP / WINDOW)), "mmr": c(MMR), "cum": c(cum), "size": c(SIZE),
            "entry": c(ENTRY), "depth": c(DEPTH), "spread": c(SPREAD), "s0": c(S0)}


def log_price_step(k, x, eps):
    """Log prices after one step, from standard normals ``eps`` (paths, assets) made correlated by the
    Cholesky factor. The increment is summed before it is added: in float32 BTC's drift per step
    (-sigma^2 dt / 2 = -3.4e-7) is below half an ulp of log(95000), so ``x + drift`` would round back
    to ``x`` at every step and lose the drift (P(liquidation) 0.0070 instead of 0.0080 at 100,000 paths)."""
    z = jnp.matmul(eps, k["L"].T, precision=jax.lax.Precision.HIGHEST)  # not TF32 on a GPU
    return x + (k["drift"] + k["sd"] * z)


def step(k, key, carry, t):
    """One minute for every path: prices, mark, funding, margin check, full liquidation of the hit paths."""
    x, mark, coll, alive, bad, liq_step = carry
    dtype = x.dtype
    x = log_price_step(k, x, jax.random.normal(jax.random.fold_in(key, t), x.shape, dtype))
    index = jnp.exp(x)
    mark = mark + k["alpha"] * (index - mark)
    pos = k["size"] * alive[:, None].astype(dtype)
    funding = jnp.where(t % FUNDING_EVERY == 0, (pos * mark).sum(1) * INTEREST, 0.0)
    coll = coll - funding
    notional = jnp.abs(pos) * mark
    mm = (notional[..., None] * k["mmr"] - k["cum"]).max(-1).sum(1)
    equity = coll + (pos * (mark - k["entry"])).sum(1)
    hit = alive & (equity < mm)
    q = jnp.abs(pos) * index
    slip = 0.5 * k["spread"] + DEPTH_DISTANCE * jnp.sqrt(q / k["depth"]) / 1.5  # mean of sqrt impact over the fill
    fill = index * (1 - jnp.sign(pos) * slip)
    eq = coll + (pos * (fill - k["entry"])).sum(1)
    fee = jnp.clip(FEE * (jnp.abs(pos) * fill).sum(1), 0.0, jnp.maximum(eq, 0.0))
    bad = jnp.where(hit, jnp.maximum(-eq, 0.0), bad)
    coll = jnp.where(hit, jnp.maximum(eq, 0.0) - fee, coll)
    liq_step = jnp.where(hit, t, liq_step)
    return (x, mark, coll, alive & ~hit, bad, liq_step), None


def simulate(key, n_paths: int, dtype=jnp.float32):
    """Per-path liquidation step (0 = never), bad debt and trader loss (USD: collateral minus the
    equity at the horizon, open positions marked at the mark) of ``n_paths`` workload paths."""
    k = constants(dtype)
    x0 = jnp.broadcast_to(jnp.log(k["s0"]), (n_paths, 4))
    carry = (x0, jnp.broadcast_to(k["s0"], (n_paths, 4)), jnp.full((n_paths,), COLLATERAL, dtype),
             jnp.ones((n_paths,), bool), jnp.zeros((n_paths,), dtype), jnp.zeros((n_paths,), jnp.int32))
    ts = jnp.arange(1, N_STEPS + 1, dtype=jnp.int32)
    (_, mark, coll, alive, bad, liq_step), _ = jax.lax.scan(lambda c, t: step(k, key, c, t), carry, ts)
    equity = coll + (k["size"] * alive[:, None].astype(dtype) * (mark - k["entry"])).sum(1)
    return liq_step, bad, COLLATERAL - equity


simulate_jit = jax.jit(simulate, static_argnums=(1, 2))


def run(n_paths: int, seed: int = 0, dtype=jnp.float32) -> dict:
    """The workload's metrics with their Monte Carlo standard errors."""
    liq_step, bad, loss = (np.asarray(a, np.float64) for a in simulate_jit(jax.random.PRNGKey(seed), n_paths, dtype))
    p = float((liq_step > 0).mean())
    se = lambda v: float(v.std(ddof=1) / math.sqrt(n_paths))  # noqa: E731
    return {"p_liquidation": p, "p_liquidation_se": math.sqrt(p * (1 - p) / n_paths),
            "bad_debt_mean": float(bad.mean()), "bad_debt_mean_se": se(bad),
            "expected_loss": float(loss.mean()), "expected_loss_se": se(loss)}


def peak_memory_bytes() -> int | None:
    """Peak device memory from ``device.memory_stats()`` (None where the backend has none, e.g. CPU)."""
    try:
        return int(jax.devices()[0].memory_stats()["peak_bytes_in_use"])
    except Exception:  # noqa: BLE001 - CPU devices have no memory_stats
        return None


def bench(n_paths: int, repeats: int, dtype=jnp.float32) -> dict:
    """Compile + first run, then best of ``repeats`` (different seeds), blocked until ready."""
    t0 = time.perf_counter()
    jax.block_until_ready(simulate_jit(jax.random.PRNGKey(0), n_paths, dtype))
    first = time.perf_counter() - t0
    runs = []
    for r in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(simulate_jit(jax.random.PRNGKey(r + 1), n_paths, dtype))
        runs.append(time.perf_counter() - t0)
    liq = np.asarray(out[0])
    p = float((liq > 0).mean())
    best = min(runs)
    dev = jax.devices()[0]
    return {"case": "plain_scan", "paths": n_paths, "steps": N_STEPS, "compile_plus_first_s": first,
            "run_best_s": best, "path_steps_per_s": n_paths * N_STEPS / best,
            "ns_per_path_step": best / (n_paths * N_STEPS) * 1e9, "p_liquidation": p,
            "p_liquidation_se": math.sqrt(p * (1 - p) / n_paths), "dtype": jnp.dtype(dtype).name,
            "device": dev.device_kind, "platform": dev.platform, "jax": jax.__version__,
            "peak_memory_bytes": peak_memory_bytes(),
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paths", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    a = ap.parse_args()
    if a.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    print(json.dumps(bench(a.paths, a.repeats, jnp.dtype(a.dtype))), flush=True)


if __name__ == "__main__":
    main()
