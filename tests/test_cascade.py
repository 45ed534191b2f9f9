"""Cascades and stress dynamics: endogenous price impact, regimes, GARCH, scenario events.

References: the configured impact law itself (a single liquidation moves the price by
exactly that much), the no-feedback engine (identical results), conservation of value,
the GARCH(1,1) autocorrelation of squared returns (closed form), and sample correlations
against the configured calm and stress matrices (within stated standard errors).
"""

import copy
import math

import jax.numpy as jnp
import numpy as np
import pytest

from perpjax import random as R
from perpjax.config import ConfigError, build_model, load_config
from perpjax.engine import price_returns, simulate

from .test_venue import stress_config


def _one_asset(accounts, *, horizon=1800.0, shock=None, depth=1e6, cascade=None, events=None):
    """One asset at 100 with no diffusion (vol 0): prices move only by scheduled shocks and impact."""
    cfg = {
        "seed": 1, "paths": 4, "chunk_size": 4, "dtype": "float64",
        "time": {"step_seconds": 60.0, "horizon_seconds": horizon},
        "assets": [{"name": "X", "price": 100.0, "vol": 0.0, "depth_usd": depth}],
        "correlation": [[1.0]],
        "funding": {"enabled": False},
        "ladders": {"X": [{"floor": 0, "mmr": 0.01, "imr": 0.02}]},
        "liquidation": {"fee_rate": 0.0, "depth_distance": 0.005, "impact_exponent": 0.5},
        "book": {"accounts": accounts},
        "events": events if events is not None else
        {"shocks": [{"assets": "all", "start_seconds": 60, "duration_seconds": 600, "return": shock}]},
    }
    if cascade is not None:
        cfg["cascade"] = cascade
    return cfg


def _long(name, size, collateral):
    return {"id": name, "collateral": collateral, "positions": [{"asset": "X", "size": size, "entry": 100.0}]}


@pytest.mark.parametrize("law, exponent", [("linear", None), ("sqrt", None), ("power", 0.7)])
def test_single_liquidation_moves_the_price_by_the_configured_law(law, exponent):
    """A 10,000-unit long is liquidated once; the final log price differs from the no-feedback
    path by exactly -psi * d0 * (Q / D)^e, Q the notional sold at the fill's mid."""
    psi, d0, depth = 0.7, 0.005, 1e6
    cascade = {"impact": law, "permanent_fraction": psi, "window_seconds": 300}
    if exponent is not None:
        cascade["impact_exponent"] = exponent
    e = {"linear": 1.0, "sqrt": 0.5, "power": exponent}[law]
    acc = [_long("big", 1e4, 6e4)]  # 10x... MM 1%: liquidated after a ~5% fall
    fb = simulate(build_model(_one_asset(acc, shock=-0.10, depth=depth, cascade=cascade))[0], seed=0, n_paths=1,
                  keep_unit_paths=True)
    ex = simulate(build_model(_one_asset(acc, shock=-0.10, depth=depth))[0], seed=0, n_paths=1, keep_unit_paths=True)
    t = int(fb.unit_paths.liq_step[0, 0])
    assert t == int(ex.unit_paths.liq_step[0, 0]) > 0
    mid = 100.0 * math.exp(math.log(0.9) / 10 * (t - 1))  # shock rows 1..10 (steps 2..11)
    expected = -psi * d0 * (1e4 * mid / depth) ** e
    move = fb.path_log_return[0, 0] - ex.path_log_return[0, 0]
    assert move == pytest.approx(expected, rel=1e-10)
    dd, dd0 = fb.path_drawdown[0, 0], fb.path_drawdown_exog[0, 0]
    assert dd - dd0 == pytest.approx(-expected, rel=1e-10)  # the whole path after the fill sits lower
    assert fb.path_cascade_rounds[0] == 1 and fb.path_cascade_episodes[0] == 1


def test_forced_flow_chains_liquidations_and_vanishes_with_impact():
    """Account B would survive the shock alone; A's forced sale pushes the price through B's
    liquidation price one step later: two chained rounds. As psi -> 0 the price move from
    feedback goes to 0 linearly and B survives."""
    acc = [_long("a", 1e5, 6e5), _long("b", 1e4, 1.3e5)]  # A: ~5% to MM, B: ~12% to MM
    moves = {}
    for psi in (2.0, 1e-2, 1e-3, 1e-4):
        cfg = _one_asset(acc, shock=-0.10, cascade={"impact": "sqrt", "permanent_fraction": psi})
        out = simulate(build_model(cfg)[0], seed=0, n_paths=1, keep_unit_paths=True)
        ex = simulate(build_model(_one_asset(acc, shock=-0.10))[0], seed=0, n_paths=1, keep_unit_paths=True)
        moves[psi] = out.path_log_return[0, 0] - ex.path_log_return[0, 0]
        liq = out.unit_paths.liq_step[0] > 0
        if psi == 2.0:
            assert liq.all() and out.path_cascade_rounds[0] == 2
        else:
            assert liq.tolist() == [True, False]
            assert ex.unit_paths.liq_step[0].tolist()[1] == 0
    assert moves[1e-2] / moves[1e-3] == pytest.approx(10.0, rel=1e-9)
    assert moves[1e-3] / moves[1e-4] == pytest.approx(10.0, rel=1e-9)


def test_no_feedback_is_the_exogenous_engine_exactly():
    """Cascade monitoring without impact (or with psi = 0) changes nothing: same per-path results."""
    base = stress_config("full", 5)
    base["time"]["horizon_seconds"] = 3 * 3600
    runs = []
    for extra in (None, {"impact": "none"}, {"impact": "sqrt", "permanent_fraction": 0.0}):
        cfg = copy.deepcopy(base)
        if extra is not None:
            cfg["cascade"] = extra
        out = simulate(build_model(cfg)[0], seed=5, n_paths=64, chunk_size=64, keep_unit_paths=True)
        runs.append(out)
    for out in runs[1:]:
        for f in ("loss", "liq_step", "bad_debt", "slippage", "fee"):
            np.testing.assert_array_equal(getattr(out.unit_paths, f), getattr(runs[0].unit_paths, f))
        np.testing.assert_array_equal(out.path_log_return, runs[0].path_log_return)
        np.testing.assert_array_equal(out.path_drawdown, out.path_drawdown_exog)


def _long_book_crash(depth_scale, psi=0.5):
    cfg = load_config(None)
    cfg["dtype"] = "float64"
    cfg["time"]["horizon_seconds"] = 4 * 3600
    cfg["book"] = {"generate": {"n_accounts": 300, "seed": 11, "long_fraction": 1.0, "leverage": [10, 20, 50],
                                "leverage_weights": [0.4, 0.4, 0.2], "notional_median": 2e5}}
    for a in cfg["assets"]:
        a["depth_usd"] = float(a["depth_usd"]) * depth_scale
    cfg["cascade"] = {"impact": "sqrt", "permanent_fraction": psi}
    cfg["events"] = {"shocks": [{"assets": "all", "start_seconds": 3600, "duration_seconds": 3600, "return": -0.08}]}
    return cfg


def test_amplification_is_at_least_one_and_grows_as_depth_shrinks():
    """A long-only book only ever sells when liquidated, so on every path the price with feedback
    sits at or below the no-feedback price after each fill and its drawdown is at least as deep;
    thinner books amplify more (same random paths, common random numbers)."""
    amp = []
    for scale in (1.0, 0.25, 0.0625):
        model, labels, c = build_model(_long_book_crash(scale))
        out = simulate(model, seed=3, n_paths=200, chunk_size=200)
        assert np.all(out.path_drawdown >= out.path_drawdown_exog - 1e-12)
        amp.append(out.path_drawdown.max(1).mean() / out.path_drawdown_exog.max(1).mean())
    assert 1.0 < amp[0] < amp[1] < amp[2], amp


@pytest.mark.parametrize("extra", ["cascade", "stress"])
def test_value_is_conserved_with_feedback_and_stress(extra):
    """The ledger identities of test_venue hold when forced flow moves prices (and with regimes,
    GARCH, depth bursts and oracle freezes)."""
    cfg = stress_config("buffer", 7)
    cfg["cascade"] = {"impact": "sqrt", "permanent_fraction": 1.0}
    if extra == "stress":
        c = np.asarray(cfg["correlation"], float)
        cfg["regimes"] = {"stress_correlation": (0.3 * c + 0.7).tolist(), "switch": "markov",
                          "enter_rate_per_day": 6.0, "exit_rate_per_day": 12.0, "vol_multiplier": 1.5,
                          "depth_factor": 0.5}
        for i in range(len(c)):
            cfg["regimes"]["stress_correlation"][i][i] = 1.0
        cfg["garch"] = {"alpha": 0.05, "beta": 0.93}
        cfg["events"] = {"depth_bursts": [{"start_seconds": 3600, "duration_seconds": 3600, "factor": 0.3}],
                         "oracle_freezes": [{"start_seconds": 7200, "duration_seconds": 600}]}
    model, _, _ = build_model(cfg)
    out = simulate(model, seed=7, n_paths=200, chunk_size=200, keep_unit_paths=True)
    u = out.unit_paths
    lhs = -u.loss
    rhs = u.mtm - u.funding_paid + u.basis - u.slippage - u.fee + u.bad_debt - u.adl_charge - u.backstop
    np.testing.assert_array_less(np.abs(lhs - rhs), 1e-9 * (1.0 + np.abs(u.mtm) + u.liq_notional))
    np.testing.assert_allclose(u.bad_debt.sum(1), u.venue_fund_paid + u.venue_adl + u.venue_uncovered,
                               rtol=1e-12, atol=1e-6)
    assert (u.liq_events > 0).any() and (out.path_drawdown > out.path_drawdown_exog).any()
    if extra == "stress":
        assert 0 < out.path_stress_steps.mean() < model.grid.n_steps


def _returns(overrides, n_paths, seed=0):
    cfg = load_config(None, ["jumps=null", "innovations={kind: gaussian}", "dtype=float64", *overrides])
    model = build_model(cfg)[0]
    return np.asarray(price_returns(model, R.seed_key(seed), jnp.uint32(0), n_paths)), model


def test_garch_matches_the_closed_form_variance_and_squared_return_autocorrelation():
    """GARCH(1,1) with Gaussian innovations (Bollerslev 1986): unconditional variance vol^2 dt and
    lag-1 autocorrelation of squared returns rho1 = a (1 - a b - b^2) / (1 - 2 a b - b^2).
    Per-step parameters (fitted_seconds = step), 400 independent paths; SEs across paths."""
    a, b = 0.10, 0.80
    r, model = _returns([f"garch={{alpha: {a}, beta: {b}, fitted_seconds: 60}}", "time.horizon_seconds=172800"], 400)
    r = r[:, 200:, 0]  # BTC, after a burn-in from v2 = 1 (the stationary mean; burn-in removes the start-up)
    var0 = float(model.prices.vol[0]) ** 2 * model.grid.dt_years
    per_path_var = (r**2).mean(1)
    se = per_path_var.std(ddof=1) / math.sqrt(len(per_path_var))
    assert abs(per_path_var.mean() - var0) < 4 * se
    x = r**2 - (r**2).mean()
    num, den = (x[:, 1:] * x[:, :-1]).sum(1), (x * x).sum(1)
    rho = num.sum() / den.sum()
    # delta-method SE of a ratio of sums over independent paths
    g = (num - rho * den) / den.mean()
    rho_se = g.std(ddof=1) / math.sqrt(len(g))
    expected = a * (1 - a * b - b * b) / (1 - 2 * a * b - b * b)
    assert abs(rho - expected) < 4 * rho_se, (rho, expected, rho_se)
    assert rho_se < 0.02


def test_stress_regime_uses_the_stress_correlation_and_vol():
    """Steps in the stress regime (forced by a stress window) have the stress matrix's correlation
    and 1.5x the vol; calm steps the calm matrix (Fisher-z SEs, 4 sigma)."""
    stress = [[1.0, 0.97, 0.95, 0.95], [0.97, 1.0, 0.95, 0.95], [0.95, 0.95, 1.0, 0.95], [0.95, 0.95, 0.95, 1.0]]
    r, model = _returns([f"regimes={{stress_correlation: {stress}, switch: schedule, vol_multiplier: 1.5}}",
                         "events={stress_windows: [{start_seconds: 43200, duration_seconds: 43200}]}"], 60)
    calm, hot = r[:, :720].reshape(-1, 4), r[:, 720:].reshape(-1, 4)
    cc = np.asarray(load_config(None)["correlation"], float)
    for sample, target in ((calm, cc), (hot, np.asarray(stress))):
        est = np.corrcoef(sample.T)
        se = 1.0 / math.sqrt(len(sample) - 3)
        iu = np.triu_indices(4, 1)
        assert np.all(np.abs(np.arctanh(est[iu]) - np.arctanh(target[iu])) < 4 * se), (est, target)
    ratio = hot.std(0) / calm.std(0)
    se = 1.5 / math.sqrt(2 * len(calm))  # SE of a std ratio of two independent Gaussian samples
    assert np.all(np.abs(ratio - 1.5) < 4 * math.sqrt(2) * se), ratio


def test_markov_regime_spends_the_stationary_share_in_stress():
    """Two-state Markov chain: long-run share in stress = p_enter / (p_enter + p_exit)."""
    stress = np.full((4, 4), 0.9)
    np.fill_diagonal(stress, 1.0)
    model, _, _ = build_model(load_config(None, [
        f"regimes={{stress_correlation: {stress.tolist()}, switch: markov, enter_rate_per_day: 8, "
        "exit_rate_per_day: 24}", "paths=400", "time.horizon_seconds=172800"]))
    out = simulate(model, seed=2, n_paths=300, chunk_size=300)
    pe, px = float(model.regimes.p_enter), float(model.regimes.p_exit)
    share = out.path_stress_steps / model.grid.n_steps
    # the chain starts calm: the expected share over n steps is below the stationary one by the start-up
    lam = 1 - pe - px
    n = model.grid.n_steps
    expected = pe / (pe + px) * (1 - lam * (1 - lam**n) / (n * (1 - lam)))
    assert abs(share.mean() - expected) < 4 * share.std(ddof=1) / math.sqrt(len(share))


def test_oracle_freeze_delays_liquidation_to_the_catch_up_step():
    """The oracle is frozen for 10 minutes while the price falls 10%: no liquidation during the freeze;
    the account is liquidated at the first step the index updates again."""
    acc = [_long("a", 1e3, 6e3)]
    ev = {"shocks": [{"assets": "all", "start_seconds": 60, "duration_seconds": 600, "return": -0.10}]}
    free = simulate(build_model(_one_asset(acc, events=ev))[0], seed=0, n_paths=1, keep_unit_paths=True)
    ev["oracle_freezes"] = [{"start_seconds": 0, "duration_seconds": 900}]
    frozen = simulate(build_model(_one_asset(acc, events=ev))[0], seed=0, n_paths=1, keep_unit_paths=True)
    assert 1 < free.unit_paths.liq_step[0, 0] < 15
    assert frozen.unit_paths.liq_step[0, 0] == 16  # rows 0..14 frozen: steps 1..15


def test_depth_burst_scales_slippage_by_the_depth_law():
    """Halving depth in a burst raises the square-root walk's reach by sqrt(2) for the same fill."""
    acc = [_long("a", 1e4, 6e4)]
    ev = {"shocks": [{"assets": "all", "start_seconds": 60, "duration_seconds": 600, "return": -0.10}]}
    base = simulate(build_model(_one_asset(acc, events=ev))[0], seed=0, n_paths=1, keep_unit_paths=True)
    ev["depth_bursts"] = [{"start_seconds": 0, "duration_seconds": 1800, "factor": 0.5}]
    thin = simulate(build_model(_one_asset(acc, events=ev))[0], seed=0, n_paths=1, keep_unit_paths=True)
    assert thin.unit_paths.liq_step[0, 0] == base.unit_paths.liq_step[0, 0]
    assert thin.unit_paths.slippage[0, 0] / base.unit_paths.slippage[0, 0] == pytest.approx(math.sqrt(2), rel=1e-9)


def test_funding_crowding_makes_a_crowded_long_book_pay_more():
    """With crowding the basis reverts to crowding x net/gross open interest: a long-only book pays
    positive funding that grows with the crowding coefficient (funding stays zero-sum by construction
    of the payment: each position pays size x price x rate)."""
    paid = []
    for crowding in (0.0, 0.002, 0.004):
        cfg = _one_asset([_long("a", 10.0, 1e4)], horizon=86400.0, shock=-0.0001)
        cfg["funding"] = {"enabled": True, "interval_seconds": 28800, "interest": 0.0, "clamp": 0.0, "cap": 0.05}
        cfg["basis"] = {"crowding": crowding, "half_life_seconds": 600}
        out = simulate(build_model(cfg)[0], seed=0, n_paths=1, keep_unit_paths=True)
        paid.append(float(out.unit_paths.funding_paid[0, 0]))
    assert paid[0] == pytest.approx(0.0, abs=1e-9)
    assert 0 < paid[1] < paid[2]
    # steady state: premium = crowding (net / gross = 1); three payments of size x price x rate
    assert paid[2] == pytest.approx(3 * 10.0 * 100.0 * 0.004, rel=0.05)


@pytest.mark.parametrize("override, needle", [
    ("regimes={stress_correlation: [[1, 2, 0, 0], [2, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}",
     "regimes.stress_correlation"),
    ("regimes={stress_correlation: [[1, 0.9], [0.9, 1]]}", "regimes.stress_correlation: must be 4x4"),
    ("garch={alpha: 0.2, beta: 0.85}", "garch.alpha + beta"),
    ("events={shocks: [{assets: XRP, start_seconds: 0, duration_seconds: 60, return: -0.1}]}",
     "events.shocks[0].assets"),
    ("events={shocks: [{start_seconds: 86000, duration_seconds: 3600, return: -0.1}]}", "events.shocks[0]"),
    ("events={depth_bursts: [{start_seconds: 0, duration_seconds: 60, factor: 0}]}", "events.depth_bursts[0].factor"),
    ("cascade={impact: cubic}", "cascade.impact"),
    ("cascade={impact: power}", "cascade.impact_exponent"),
    ("cascade={window_seconds: 90}", "cascade.window_seconds"),
    ("events={stress_windows: [{start_seconds: 0, duration_seconds: 60}]}", "events.stress_windows[0]"),
    ("regimes={stress_correlation: [[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]], switch: sometimes}", "switch"),
])
def test_bad_stress_settings_name_the_field(override, needle):
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]").replace("+", r"\+")):
        build_model(load_config(None, [override]))
