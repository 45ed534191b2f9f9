"""Gradient calibration of maintenance ladders (float64, common random numbers).

References: the hard engine (the relaxed engine converges to it as the temperature falls),
central finite differences (gradients), a brute-force grid of the hard objective (the
optimum), the closed-form first-passage probability with the Broadie-Glasserman-Kou shift
and the hard engine's finite difference (d P(liq) / d MMR), and an uninterrupted run (resume).
"""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from perpjax import calibrate as C
from perpjax import random as R
from perpjax.cli import main
from perpjax.config import build_model, load_config
from perpjax.engine import simulate

from .helpers import build, single_position_config


def _default_short():
    return build_model(load_config(None, ["dtype=float64", "time.horizon_seconds=10800"]))[0]


def test_relaxed_engine_converges_to_the_hard_engine():
    """P(liq) and E[bad debt] per unit of the relaxed engine approach the hard engine's on the same
    paths as the temperature falls; at 1e-7 they agree to within one path's weight."""
    model = _default_short()
    n = 300
    hard = simulate(model, seed=3, n_paths=n, chunk_size=n, keep_unit_paths=True)
    ph = (hard.unit_paths.liq_step > 0).mean(0)
    bdh = hard.unit_paths.bad_debt.mean(0)
    err = []
    for tau in (1e-3, 1e-4, 1e-7):
        o = C.soft_outcome(model, model.ladder, R.seed_key(3), jnp.uint32(0), n, tau)
        err.append((np.abs(np.asarray(o.p_liq).mean(0) - ph).max(),
                    np.abs(np.asarray(o.bad_debt).mean(0) - bdh).max()))
    assert err[0][0] > err[1][0] > err[2][0]
    assert err[2][0] <= 1.0 / n and err[2][1] <= 1e-6 * (1 + bdh.max())


def test_gradient_matches_central_finite_differences():
    model = _default_short()
    space = C.LadderSpace.from_ladder(model.ladder, [0, 1, 2, 3], 0.001, 0.25)
    theta = space.theta_from(np.asarray(space.base_mmr))
    obj = {**C.OBJECTIVE_DEFAULTS, "exceed_budget": 1e4, "exceed_weight": 1.0, "trader_cost": 1.0, "fund_es": 1.0,
           "fund_es_level": 0.95}
    loss = C.make_loss(model, space, obj, 1e-3, 100, 30)
    f = jax.jit(lambda th: loss(th, R.seed_key(0), jnp.uint32(0))[0])
    g = np.asarray(jax.jit(jax.grad(lambda th: loss(th, R.seed_key(0), jnp.uint32(0))[0]))(theta))
    for a, k in [(0, 0), (0, 2), (1, 1), (2, 0), (3, 3)]:
        e = np.zeros(theta.shape)
        e[a, k] = 1e-4
        fd = (float(f(theta + e)) - float(f(theta - e))) / 2e-4
        assert g[a, k] == pytest.approx(fd, rel=1e-5, abs=1e-12)


def test_gradients_reach_floors_fee_and_mark_window():
    """With ``tune: [mmr, floors, fee_rate, mark_window]`` the gradient of the relaxed objective
    matches central differences for each kind of parameter."""
    model = build_model(load_config(None, ["dtype=float64", "time.horizon_seconds=10800", "mark.kind=ema"]))[0]
    space = C.LadderSpace.from_model(model, [0, 1, 2, 3], 0.001, 0.25, ("mmr", "floors", "fee_rate", "mark_window"))
    theta = space.init(model)
    same = space.apply(model, theta)
    np.testing.assert_allclose(np.asarray(same.ladder.floors), np.asarray(model.ladder.floors), rtol=1e-12)
    assert float(same.liquidation.fee_rate) == pytest.approx(float(model.liquidation.fee_rate), rel=1e-12)
    obj = {**C.OBJECTIVE_DEFAULTS, "trader_cost": 1.0}
    loss = C.make_loss(model, space, obj, 1e-3, 100, 30)
    f = jax.jit(lambda t: loss(t, R.seed_key(0), jnp.uint32(0))[0])
    g = jax.jit(jax.grad(lambda t: loss(t, R.seed_key(0), jnp.uint32(0))[0]))(theta)
    for key, idx in (("fee_rate", ()), ("mark_window", ()), ("floors", (0, 1)), ("floors", (2, 0))):
        plus, minus = dict(theta), dict(theta)
        plus[key], minus[key] = theta[key].at[idx].add(1e-4), theta[key].at[idx].add(-1e-4)
        fd = (float(f(plus)) - float(f(minus))) / 2e-4
        assert float(g[key][idx]) == pytest.approx(fd, rel=1e-5), key
        assert abs(fd) > 0  # the parameter matters to the objective


def _one_tier_book(mmr):
    accounts = [{"id": f"u{i}", "mode": "isolated",
                 "positions": [{"asset": "X", "size": 1000.0, "entry": 100.0, "margin": 1e5 / lev}]}
                for i, lev in enumerate([5, 8, 12, 20, 30, 50, 75, 100])]
    return {"seed": 1, "paths": 1000, "chunk_size": 1000, "dtype": "float64",
            "time": {"step_seconds": 300.0, "horizon_seconds": 86400.0},
            "assets": [{"name": "X", "price": 100.0, "vol": 0.9, "depth_usd": 2e5}],
            "correlation": [[1.0]], "innovations": {"kind": "student_t", "nu": 4.0},
            "funding": {"enabled": False},
            "ladders": {"X": [{"floor": 0, "mmr": mmr, "imr": 2 * mmr}]},
            "liquidation": {"fee_rate": 0.0, "depth_distance": 0.005},
            "book": {"accounts": accounts}}


def test_gradient_optimum_matches_a_brute_force_grid_of_the_hard_objective():
    """One tier, eight isolated longs from 5x to 100x in a thin book: J(m) = E[bad debt] / notional
    + lambda m. The gradient optimum from m = 0.03 lands within one grid step (0.002) of the grid's
    argmin of the hard engine's J on the same paths."""
    lam, n = 0.02, 1000
    grid = np.arange(0.002, 0.0401, 0.002)
    book = 8 * 1000 * 100.0
    hard = [simulate(build_model(_one_tier_book(float(m)))[0], seed=1, n_paths=n, chunk_size=n).path_bad_debt.mean()
            / book + lam * m for m in grid]
    m_grid = grid[int(np.argmin(hard))]
    assert 0.002 < m_grid < 0.04  # an interior optimum: the test can tell a wrong answer
    model = build_model(_one_tier_book(0.03))[0]
    space = C.LadderSpace.from_ladder(model.ladder, [0], 0.001, 0.2)
    cal = {**C.DEFAULTS, "iterations": 50, "paths": n, "learning_rate": 0.3, "temperature": 1e-3, "patience": 0,
           "objective": {"bad_debt": 1.0, "capital": lam}}
    theta, hist = C.calibrate(model, space, cal, seed=1, names=["X"])
    m_grad = float(space.ladder(theta).mmr[0, 0])
    assert abs(m_grad - m_grid) <= 0.002 + 1e-9, (m_grad, m_grid, np.round(np.asarray(hard) * 1e4, 3))
    assert hist[0]["mmr_X_1"] == pytest.approx(0.03)


def test_pathwise_gradient_of_liquidation_probability_agrees_with_fd_and_closed_form():
    """Single isolated 10x long, GBM, MMR m = 1%: liquidation when S <= B(m) = 100 (1 - 1/L) / (1 - m).
    d P(liq) / d m from (a) the relaxed engine's pathwise gradient, (b) the hard engine's central
    difference on common random numbers, (c) the reflection-principle first-passage probability with
    the Broadie-Glasserman-Kou shift for 5-minute checks, differentiated in the barrier. (a) and (b)
    agree within 3 combined standard errors; (a) is within 3 standard errors + 5% of (c) (BGK's error)."""
    vol, lev, m, step = 0.8, 10.0, 0.01, 300.0
    cfg = single_position_config(vol=vol, leverage=lev, mmr=m, step_seconds=step)
    model = build(cfg)[0]
    space = C.LadderSpace.from_ladder(model.ladder, [0], 1e-4, 0.2)
    theta = space.theta_from(np.asarray(space.base_mmr))
    batches, per = 32, 1000

    def p_liq(th, start):
        o = C.soft_outcome(model, space.ladder(th), R.seed_key(5), start, per, 5e-4, block_steps=48)
        return jnp.mean(o.p_liq)

    grad = jax.jit(jax.grad(p_liq))
    # d theta0 -> d mmr: mmr = lo + softplus(theta0)
    dm_dtheta = float(jax.nn.sigmoid(theta[0, 0]))
    g = np.array([float(grad(theta, jnp.uint32(b * per))[0, 0]) / dm_dtheta for b in range(batches)])
    pw, pw_se = g.mean(), g.std(ddof=1) / math.sqrt(batches)
    h = 0.002
    n = batches * per
    hi = simulate(build(cfg, [f"ladders.X=[{{floor: 0, mmr: {m + h}, imr: 0.5}}]"])[0], seed=5, n_paths=n,
                  keep_unit_paths=True).unit_paths.liq_step[:, 0] > 0
    lo = simulate(build(cfg, [f"ladders.X=[{{floor: 0, mmr: {m - h}, imr: 0.5}}]"])[0], seed=5, n_paths=n,
                  keep_unit_paths=True).unit_paths.liq_step[:, 0] > 0
    d = (hi.astype(float) - lo.astype(float)) / (2 * h)
    fd, fd_se = d.mean(), d.std(ddof=1) / math.sqrt(n)
    assert abs(pw - fd) < 3 * math.hypot(pw_se, fd_se), (pw, pw_se, fd, fd_se)
    T, sig = 1.0 / 365.0, vol
    mu = -0.5 * sig**2
    beta = 0.5826
    shift = beta * sig * math.sqrt(step / (365.0 * 86400.0))

    def p_cross(mm):
        b = math.log((1 - 1 / lev) / (1 - mm)) - shift
        s = sig * math.sqrt(T)
        return norm.cdf((b - mu * T) / s) + math.exp(2 * mu * b / sig**2) * norm.cdf((b + mu * T) / s)

    closed = (p_cross(m + 1e-6) - p_cross(m - 1e-6)) / 2e-6
    assert abs(pw - closed) < 3 * pw_se + 0.05 * closed, (pw, pw_se, closed)


def test_constraints_hold_and_resume_equals_an_uninterrupted_run(tmp_path):
    model = _default_short()
    space = C.LadderSpace.from_ladder(model.ladder, [0, 2], 0.002, 0.3)
    cal = {**C.DEFAULTS, "iterations": 6, "paths": 64, "learning_rate": 0.5, "checkpoint_every": 2, "patience": 0,
           "block_steps": 30, "objective": {"bad_debt": 1.0, "capital": 0.5}}
    names = ["BTC", "ETH", "SOL", "DOGE"]
    full, hist_full = C.calibrate(model, space, cal, seed=0, names=names)
    ck = tmp_path / "ck.npz"
    C.calibrate(model, space, cal, seed=0, names=names, checkpoint=ck, fingerprint="x", max_iterations=3)
    resumed, hist = C.calibrate(model, space, cal, seed=0, names=names, checkpoint=ck, fingerprint="x")
    np.testing.assert_array_equal(np.asarray(resumed["mmr"]), np.asarray(full["mmr"]))
    assert [r["objective"] for r in hist] == [r["objective"] for r in hist_full]
    for r in hist_full:  # every iterate: bounded, non-decreasing across tiers
        for name, a in (("BTC", 0), ("SOL", 2)):
            rates = [r[f"mmr_{name}_{k + 1}"] for k in range(space.n_tiers[a])]
            assert all(0.002 - 1e-12 <= x <= 0.3 + 1e-12 for x in rates) and rates == sorted(rates)
        assert r["mmr_ETH_1"] == pytest.approx(float(model.ladder.mmr[1, 0]))  # not tuned
    assert hist_full[-1]["objective"] < hist_full[0]["objective"]
    with pytest.raises(ValueError, match="another calibration"):
        C.calibrate(model, space, cal, seed=0, names=names, checkpoint=ck, fingerprint="y")
    # the settings that differ are named (the fingerprint is the JSON of the settings)
    import json

    from perpjax.config import ConfigError

    ck2 = tmp_path / "ck2.npz"
    saved = json.dumps([{"time": {"horizon_seconds": 3600}, "seed": 0}, {"paths": 64}])
    C.calibrate(model, space, cal, seed=0, names=names, checkpoint=ck2, fingerprint=saved, max_iterations=2)
    now = json.dumps([{"time": {"horizon_seconds": 7200}, "seed": 0}, {"paths": 64}])
    with pytest.raises(ConfigError, match=r"time\.horizon_seconds \(3600 saved, 7200 now\)"):
        C.calibrate(model, space, cal, seed=0, names=names, checkpoint=ck2, fingerprint=now)
    ck2.write_bytes(ck2.read_bytes()[:100])  # a checkpoint cut short
    with pytest.raises(ConfigError, match="is corrupted"):
        C.calibrate(model, space, cal, seed=0, names=names, checkpoint=ck2, fingerprint=saved)


def test_check_ladder_states_the_margin_rules_for_iterates():
    """Every iterate is checked by the margin module's rules (bounds, monotone rates, MMR < IMR <= 1)."""
    from perpjax.margin import Ladder

    model = _default_short()
    space = C.LadderSpace.from_ladder(model.ladder, [0], 0.002, 0.3)
    C.check_ladder(space.ladder(space.theta_from(np.asarray(space.base_mmr))), space)
    lad = model.ladder
    m = np.asarray(lad.mmr).copy()
    m[0, :] = 0.5  # above the bound 0.3, still a valid ladder (imr stays above)
    bad = Ladder(lad.floors, jnp.asarray(m), jnp.maximum(lad.imr, 0.6), lad.n_tiers)
    with pytest.raises(AssertionError, match="a rate left its bounds"):
        C.check_ladder(bad, space)
    m = np.asarray(lad.mmr).copy()
    m[0, 1] = m[0, 0] - 1e-3  # a decreasing rate (built without validation, as a traced iterate would be)
    bad = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(lad), [lad.floors, jnp.asarray(m), lad.imr])
    with pytest.raises(AssertionError, match="non-monotone rates"):
        C.check_ladder(bad, space)
    with pytest.raises(ValueError, match="calibration.min_mmr, max_mmr: need 0 <= min < max < 1"):
        C.LadderSpace.from_ladder(model.ladder, [0], 0.3, 0.2)


def test_calibrate_command_writes_ladder_history_metrics_and_plots(tmp_path, capsys):
    out = tmp_path / "cal"
    code = main(["calibrate", "--out", str(out), "--set", "time.horizon_seconds=7200", "--set",
                 "calibration={iterations: 3, paths: 64, eval_paths: 128, block_steps: 30, assets: [BTC]}"])
    assert code == 0
    for f in ("ladder.csv", "ladder_before.csv", "history.csv", "metrics.json", "calibrated.yaml", "history.png",
              "by_tier.png"):
        assert (out / f).exists(), f
    import pandas as pd

    lad = pd.read_csv(out / "ladder.csv")
    assert {"floor", "cap", "mmr", "imr", "max_leverage", "maintenance_amount"} <= set(lad.columns)
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["before"]) == set(m["after"]) and m["eval_paths"] == 128
    man = json.loads((out / "manifest.json").read_text())
    assert man["kind"] == "calibrate" and man["compiles"] >= 1 and man["compile_seconds"] > 0
    build_model(load_config(out / "calibrated.yaml"))  # the tuned ladder is a valid config
    assert main(["calibrate", "--out", str(out), "--set", "calibration={temperature: -1}"]) == 2
    assert "calibration.temperature" in capsys.readouterr().err
    assert main(["calibrate", "--out", str(out), "--set", "liquidation.adl=true"]) == 2
    assert main(["calibrate", "--out", str(out), "--set", "calibration.tune=[mmr, fraction]"]) == 2  # mode full


def test_chunked_gradient_equals_the_whole_batch_gradient():
    """Accumulating over chunks of paths (memory bound by one chunk) gives the whole batch's objective
    and gradient, the nonlinear exceedance penalty included."""
    from .test_venue import stress_config as _stress_config

    model = build_model(_stress_config("full", 3, adl=False))[0]  # thin books, leveraged generated book
    space = C.LadderSpace.from_model(model, [0, 1, 2, 3], 0.001, 0.25, ("mmr", "fee_rate"))
    theta = space.init(model)
    obj = {**C.OBJECTIVE_DEFAULTS, "exceed_budget": 500.0, "exceed_probability": 0.01, "exceed_weight": 1.0,
           "trader_cost": 1.0}
    cfg = {**C.DEFAULTS, "paths": 128, "temperature": 1e-3, "block_steps": 30}
    whole = C.chunked_value_and_grad(model, space, obj, cfg, R.seed_key(4), 128, 1)
    parts = C.chunked_value_and_grad(model, space, obj, cfg, R.seed_key(4), 32, 4)
    j1, t1, g1 = whole(theta, jnp.uint32(0))
    j4, t4, g4 = parts(theta, jnp.uint32(0))
    assert float(t1.exceed) > 0.01  # the penalty is active, so the objective is nonlinear in the terms
    assert float(j4) == pytest.approx(float(j1), rel=1e-12)
    for k in g1:
        np.testing.assert_allclose(np.asarray(g4[k]), np.asarray(g1[k]), rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("mode", ["fraction", "tier_step", "buffer"])
def test_partial_liquidation_relaxation_converges_to_the_hard_engine(mode):
    """Partial paths: the relaxed engine carries the expected size and collateral after a liquidation
    with probability h; as tau -> 0 (h in {0, 1}) it is the hard engine path by path: first-liquidation
    probability, bad debt and fees per unit agree (thin books, leveraged book, no cooldown)."""
    from .test_venue import stress_config as _stress_config

    cfg = _stress_config(mode, 3, adl=False)
    cfg["liquidation"]["cooldown_seconds"] = 0
    cfg["time"]["horizon_seconds"] = 3 * 3600
    model = build_model(cfg)[0]
    n = 100
    u = simulate(model, seed=3, n_paths=n, chunk_size=n, keep_unit_paths=True).unit_paths
    assert (u.liq_events > 1).any()  # partial liquidations repeat
    err = []
    for tau in (1e-3, 1e-8):
        o = C.soft_outcome(model, model.ladder, R.seed_key(3), jnp.uint32(0), n, tau)
        err.append(max(np.abs(np.asarray(o.bad_debt).mean(0) - u.bad_debt.mean(0)).max(),
                       np.abs(np.asarray(o.fee).mean(0) - u.fee.mean(0)).max()))
        p_err = np.abs(np.asarray(o.p_liq).mean(0) - (u.liq_step > 0).mean(0)).max()
    assert err[1] < 1e-4 * (1 + u.fee.mean(0).max()) and p_err == 0 and err[0] > err[1]


def test_gradient_reaches_the_partial_liquidation_fraction():
    """d objective / d fraction equals the central difference at a small step. The switch from a
    partial to a full close when the partial fill would be bankrupt is not relaxed, so the objective
    has jumps in the fraction (a 1e-4 step crosses one on these paths): the gradient is the pathwise
    one between jumps, and the difference must be taken inside a smooth piece."""
    from .test_venue import stress_config as _stress_config

    cfg = _stress_config("fraction", 3, adl=False)
    cfg["liquidation"]["cooldown_seconds"] = 0
    cfg["time"]["horizon_seconds"] = 3 * 3600
    model = build_model(cfg)[0]
    space = C.LadderSpace.from_model(model, [0, 1, 2, 3], 0.001, 0.25, ("mmr", "fraction"))
    theta = space.init(model)
    assert float(space.apply(model, theta).liquidation.fraction) == pytest.approx(0.25, rel=1e-9)
    obj = {**C.OBJECTIVE_DEFAULTS, "trader_cost": 1.0}
    loss = C.make_loss(model, space, obj, 1e-3, 64, 30)
    f = jax.jit(lambda t: loss(t, R.seed_key(0), jnp.uint32(0))[0])
    g = jax.jit(jax.grad(lambda t: loss(t, R.seed_key(0), jnp.uint32(0))[0]))(theta)
    plus, minus = dict(theta), dict(theta)
    plus["fraction"], minus["fraction"] = theta["fraction"] + 1e-5, theta["fraction"] - 1e-5
    fd = (float(f(plus)) - float(f(minus))) / 2e-5
    assert float(g["fraction"]) == pytest.approx(fd, rel=1e-5) and abs(fd) > 0


@pytest.mark.parametrize("mode, knobs, extra, keys", [
    ("buffer", ("mmr", "buffer"), {"trader_cost": 1.0}, [("buffer", ()), ("mmr", (0, 0)), ("mmr", (2, 1))]),
    ("full", ("mmr",), {"over_liquidation": 1.0, "excess_cost": 1.0, "bad_debt": 0.0, "capital": 0.0},
     [("mmr", (0, 0)), ("mmr", (2, 1))]),
])
def test_minimal_cut_gets_the_implicit_function_gradient(mode, knobs, extra, keys):
    """The minimal cut (Drift-style buffer, and the fairness terms' minimum close) is a bisection;
    its gradient is the exact root's, -(dg/dp) / (dg/df). With a 44-step bisection (float64, so the
    objective is smooth at the difference's scale) it matches central differences within 2 % (the
    rest: jumps where a cut flips to a full close at bankruptcy)."""
    import dataclasses

    import equinox as eqx

    from .test_venue import stress_config as _stress_config

    cfg = _stress_config(mode, 3, adl=False)
    cfg["time"]["horizon_seconds"] = 3 * 3600
    model = build_model(cfg)[0]
    model = eqx.tree_at(lambda m: m.liquidation, model, dataclasses.replace(model.liquidation, bisection_steps=44))
    space = C.LadderSpace.from_model(model, [0, 1, 2, 3], 0.001, 0.25, knobs)
    theta = space.init(model)
    loss = C.make_loss(model, space, {**C.OBJECTIVE_DEFAULTS, **extra}, 1e-3, 64, 30)
    f = jax.jit(lambda t: loss(t, R.seed_key(0), jnp.uint32(0))[0])
    g = jax.jit(jax.grad(lambda t: loss(t, R.seed_key(0), jnp.uint32(0))[0]))(theta)
    for key, idx in keys:
        plus, minus = dict(theta), dict(theta)
        plus[key], minus[key] = theta[key].at[idx].add(1e-6), theta[key].at[idx].add(-1e-6)
        fd = (float(f(plus)) - float(f(minus))) / 2e-6
        assert float(g[key][idx]) == pytest.approx(fd, rel=0.02) and abs(fd) > 0, key


def test_fund_loss_constraint_is_reported_before_and_after_on_hard_paths():
    from types import SimpleNamespace

    from perpjax.calibrate.job import fund_loss_constraint

    def res(fund_min):
        return SimpleNamespace(outcome=SimpleNamespace(path_fund_min=np.asarray(fund_min, float)))

    obj = {"exceed_budget": 100.0, "exceed_probability": 0.25}
    c = fund_loss_constraint(obj, res([0, -50, -150, -300]), res([0, -10, -120, 0]))
    assert c == {"exceed_budget_usd": 100.0, "limit": 0.25, "before": 0.5, "after": 0.25, "met_after": True}
    assert fund_loss_constraint({"exceed_budget": None}, res([0]), res([0])) is None
