"""Independent plain-NumPy reference of the benchmark workload (vectorised over paths).

4 correlated GBM assets, one cross account, EMA mark of the index, 8 h funding
at the interest rate (zero basis), a tiered ladder, full liquidation with
square-root slippage, 1-minute steps. Written from DOMAIN.md, not from perpjax.
"""

from __future__ import annotations

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
IMR = 2 * MMR
DEPTH = np.array([3.4e6, 2.5e6, 1.2e6, 6.0e5])
SPREAD = np.array([1e-5, 3e-5, 1e-4, 2e-4])
FEE = 0.005
STEP = 60.0
HORIZON = 86400.0
WINDOW = 150.0
FUNDING_EVERY = 480
INTEREST = 1e-4


def run(n_paths: int, seed: int = 0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    dt = STEP / (365 * 86400)
    L = np.linalg.cholesky(CORR).astype(dtype)
    cum = np.concatenate([[0.0], np.cumsum(FLOORS[1:] * np.diff(MMR))])
    alpha = 1 - np.exp(-STEP / WINDOW)
    drift = ((-0.5 * VOL**2) * dt).astype(dtype)
    sd = (VOL * np.sqrt(dt)).astype(dtype)
    x = np.tile(np.log(S0).astype(dtype), (n_paths, 1))
    mark = np.tile(S0.astype(dtype), (n_paths, 1))
    coll = np.full(n_paths, COLLATERAL, dtype)
    alive = np.ones(n_paths, bool)
    bad = np.zeros(n_paths, dtype)
    liq_step = np.zeros(n_paths, np.int32)
    for t in range(1, int(HORIZON / STEP) + 1):
        z = rng.standard_normal((n_paths, 4), dtype=dtype) @ L.T
        x += drift + sd * z
        index = np.exp(x)
        mark += alpha * (index - mark)
        pos = SIZE * alive[:, None]
        if t % FUNDING_EVERY == 0:
            coll -= (pos * mark).sum(1) * INTEREST
        notional = np.abs(pos) * mark
        mm = (notional[..., None] * MMR - cum).max(-1).sum(1)
        equity = coll + (pos * (mark - ENTRY)).sum(1)
        hit = alive & (equity < mm)
        if hit.any():
            p = pos[hit]
            mid = index[hit]
            q = np.abs(p) * mid
            slip = 0.5 * SPREAD + 0.005 * np.sqrt(q / DEPTH) / 1.5
            fill = mid * (1 - np.sign(p) * slip)
            eq = coll[hit] + (p * (fill - ENTRY)).sum(1)
            fee = np.clip(FEE * (np.abs(p) * fill).sum(1), 0, np.maximum(eq, 0))
            bad[hit] = np.maximum(-eq, 0)
            coll[hit] = np.maximum(eq, 0) - fee
            alive[hit] = False
            liq_step[hit] = t
    return {"p_liquidation": float((liq_step > 0).mean()), "bad_debt_mean": float(bad.mean())}
