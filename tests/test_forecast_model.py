"""The forecast model: conditional state at the origin, filtered historical simulation, innovations at
the fitted bar bridged inside it, the conditional barrier bridge, stable GARCH, no recompiles.

Statistical assertions are in Monte Carlo standard errors at fixed seeds: quantile SEs by batch means
(the paths split in 20 batches: SE = sd(batch quantiles) / sqrt(20)), probabilities by the binomial SE,
means by the sd of per-path means / sqrt(paths)."""

import copy
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from perpjax import random as R
from perpjax.config import ConfigError, build_model, load_config
from perpjax.engine import draw, draw_spec, initial_state, market_step, positions, simulate
from perpjax.engine.kernel import simulate_chunk
from perpjax.innovations import MIN_RESIDUAL_ROWS

from .helpers import single_position_config

K_SE = 4.0
NAMES = ["A", "B"]
PAIR = {
    "assets": [{"name": "A", "price": 100.0, "vol": 0.7, "drift": 0.0, "depth_usd": 1e9},
               {"name": "B", "price": 10.0, "vol": 1.0, "drift": 0.0, "depth_usd": 1e9}],
    "correlation": [[1.0, 0.6], [0.6, 1.0]],
    "ladders": {n: [{"floor": 0, "mmr": 0.01, "imr": 0.02}] for n in NAMES},
    "book": {"accounts": [{"id": "a", "mode": "cross", "collateral": 1000.0,
                           "positions": [{"asset": "A", "size": 10.0, "entry": 100.0},
                                         {"asset": "B", "size": -20.0, "entry": 10.0}]}]},
}
GARCH = {"alpha": 0.08, "beta": 0.9, "fitted_seconds": 3600}


def residual_file(tmp_path, n=2000, seed=0, names=NAMES, bar=3600.0, name="res.npz", z=None):
    """A skewed, fat-tailed, dependent residual sample (not unit variance: the load standardises it, and its
    std per asset scales the simulated vol)."""
    if z is None:
        rng = np.random.default_rng(seed)
        common = rng.standard_t(4, size=(n, 1))
        z = np.concatenate([common + 0.5 * rng.standard_normal((n, 1)),
                            0.8 * common + rng.standard_exponential((n, 1)) - 1.0], axis=1) * [1.3, 0.7]
    p = tmp_path / name
    np.savez(p, residuals=z, assets=np.array(names), bar_seconds=bar)
    return p


def pair_config(step=3600.0, horizon=86400.0, innovations=None, garch=None, market_state=None, **extra):
    cfg = single_position_config(step_seconds=step, horizon_seconds=horizon)
    cfg.update(copy.deepcopy(PAIR))
    cfg["innovations"] = innovations or {"kind": "gaussian"}
    if garch is not None:
        cfg["garch"] = garch
    if market_state is not None:
        cfg["market_state"] = market_state
    cfg.update(extra)
    return cfg


def market_paths(model, count, seed=3, start=0):
    """(log returns (count, steps, assets), GARCH v2 before each step or None): the market step alone."""
    P = positions(model)
    spec = draw_spec(model)

    def path(pkey):
        def one(m, t):
            mk = market_step(model, P, R.split(draw(model, pkey, t), spec), m, t, P.size).state
            return mk, (mk.x - m.x, m.v2 if m.v2 is not None else jnp.zeros(()))

        m0 = initial_state(model, P, pkey).market
        return jax.lax.scan(one, m0, jnp.arange(1, model.grid.n_steps + 1, dtype=jnp.int32))[1]

    keys = R.path_key(R.seed_key(seed), start + jnp.arange(count, dtype=jnp.uint32))
    r, v2 = jax.jit(jax.vmap(path))(keys)
    return np.asarray(r), (None if model.garch is None else np.asarray(v2))


def batch_quantiles(x, qs, batches=20):
    """Quantiles of the rows of ``x`` (paths first) and their batch-means SE."""
    x = np.asarray(x)
    q = np.quantile(x.reshape(-1, x.shape[-1]), qs, axis=0)
    parts = np.array_split(np.arange(x.shape[0]), batches)
    qb = np.stack([np.quantile(x[i].reshape(-1, x.shape[-1]), qs, axis=0) for i in parts])
    return q, qb.std(axis=0, ddof=1) / math.sqrt(batches)


# ---------------------------------------------------------------------------------------------- config


def test_defaults_leave_the_model_unchanged():
    model, _, c = build_model(pair_config())
    assert model.prices.bar_steps == 1 and model.prices.residuals is None
    assert c["market_state"] is None and c["innovations"]["bar_seconds"] is None


@pytest.mark.parametrize("case, match", [
    ("order", r"innovations.residuals: .*do not match the config's assets \['A', 'B'\]"),
    ("names", r"innovations.residuals: .*do not match"),
    ("missing", r"innovations.residuals: file not found"),
    ("corrupt", r"innovations.residuals: cannot read"),
    ("short", rf"innovations.residuals: .*need at least {MIN_RESIDUAL_ROWS}"),
    ("nan", r"innovations.residuals: .*must be finite"),
    ("no_file_key", r"innovations.residuals: required with kind 'historical'"),
    ("bar", r"innovations.bar_seconds: the residuals were fitted on 3600 s bars"),
    ("bar_multiple", r"innovations.bar_seconds: must be a whole multiple of time.step_seconds"),
    ("vr_length", r"market_state.variance_ratio: needs one value per asset"),
    ("vr_positive", r"market_state.variance_ratio: must be > 0"),
    ("vr_no_garch", r"market_state.variance_ratio: needs a garch section"),
    ("stress_no_regimes", r"market_state.stress: needs a regimes section"),
    ("nonstationary", r"garch.alpha \+ beta: must be < 1"),
])
def test_bad_forecast_inputs_fail_at_config_time(tmp_path, case, match):
    inn = {"kind": "historical", "residuals": str(residual_file(tmp_path)), "bar_seconds": 3600}
    kw = {"innovations": inn}
    if case == "order":
        inn["residuals"] = str(residual_file(tmp_path, names=["B", "A"], name="o.npz"))
    elif case == "names":
        inn["residuals"] = str(residual_file(tmp_path, names=["A", "C"], name="n.npz"))
    elif case == "missing":
        inn["residuals"] = str(tmp_path / "nope.npz")
    elif case == "corrupt":
        (tmp_path / "bad.npz").write_bytes(b"not a zip")
        inn["residuals"] = str(tmp_path / "bad.npz")
    elif case == "short":
        inn["residuals"] = str(residual_file(tmp_path, n=MIN_RESIDUAL_ROWS - 1, name="s.npz"))
    elif case == "nan":
        z = np.ones((300, 2)) + np.arange(600).reshape(300, 2) % 7
        z[17, 1] = np.nan
        inn["residuals"] = str(residual_file(tmp_path, z=z, name="nan.npz"))
    elif case == "no_file_key":
        inn.pop("residuals")
    elif case == "bar":
        inn["bar_seconds"] = None
        kw["step"] = 60.0
    elif case == "bar_multiple":
        kw = {"innovations": {"kind": "gaussian", "bar_seconds": 90}, "step": 60.0}
    elif case.startswith("vr"):
        kw = {"garch": None if case == "vr_no_garch" else GARCH,
              "market_state": {"variance_ratio": [1.0, 2.0, 3.0] if case == "vr_length" else [1.0, 0.0]}}
    elif case == "stress_no_regimes":
        kw = {"market_state": {"stress": True}}
    elif case == "nonstationary":
        kw = {"garch": {"alpha": 0.2, "beta": 0.8}}
    with pytest.raises(ConfigError, match=match):
        build_model(pair_config(**kw))


def test_residual_path_is_relative_to_the_config_file(tmp_path):
    sub = tmp_path / "fits"
    sub.mkdir()
    residual_file(sub, name="fitted.residuals.npz")
    cfg = pair_config(innovations={"kind": "historical", "residuals": "fitted.residuals.npz", "bar_seconds": 3600})
    import yaml

    (sub / "fitted.yaml").write_text(yaml.safe_dump(cfg))
    model, _, c = build_model(load_config(sub / "fitted.yaml"))
    assert c["innovations"]["residuals"] == str((sub / "fitted.residuals.npz").resolve())
    assert model.prices.residuals.shape == (2000, 2)


# -------------------------------------------------------------------------------- state at the origin


def test_variance_ratio_decays_to_the_target_from_the_origin():
    """E[v2_t] = 1 + (v2_0 - 1)(alpha + beta)^t for GARCH(1,1) from the origin's state (hourly, Gaussian)."""
    model, _, _ = build_model(pair_config(garch=GARCH, market_state={"variance_ratio": [3.0, 0.25]}))
    _, v2 = market_paths(model, 4000)
    t = np.arange(v2.shape[1])
    ref = 1.0 + (np.array([3.0, 0.25])[None, :] - 1.0) * (0.98 ** t)[:, None]
    se = v2.std(axis=0, ddof=1) / math.sqrt(v2.shape[0])
    assert np.all(np.abs(v2.mean(axis=0) - ref) < K_SE * se + 1e-12)
    assert v2[:, 0].tolist() == [[3.0, 0.25]] * 4000


@pytest.mark.parametrize("switch", ["markov", "shock"])
def test_stress_at_the_origin(switch):
    regimes = {"stress_correlation": [[1.0, 0.95], [0.95, 1.0]], "switch": switch, "vol_multiplier": 2.0,
               "enter_rate_per_day": 0.0, "exit_rate_per_day": 0.0, "drawdown": 0.5}
    steps = {}
    for stress in (False, True):
        model, _, _ = build_model(pair_config(regimes=regimes, market_state={"stress": stress}))
        steps[stress] = simulate(model, seed=1, n_paths=200, chunk_size=200).path_stress_steps
    assert np.all(steps[False] == 0)
    if switch == "markov":
        assert np.all(steps[True] == 24)  # no exit
    else:  # the reference starts `drawdown` above the level and decays to it (6 h half-life): stress ~6 steps
        assert np.all(steps[True] >= 3) and np.all(steps[True] <= 12)


# ----------------------------------------------------------------------------- filtered historical sim


def test_historical_draws_whole_standardised_vectors(tmp_path):
    """Each step's innovation is one row of the standardised sample (no correlation factor on top)."""
    model, _, _ = build_model(pair_config(innovations={"kind": "historical", "bar_seconds": 3600,
                                                       "residuals": str(residual_file(tmp_path))}))
    sample = np.asarray(model.prices.residuals)
    np.testing.assert_allclose(sample.mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(sample.std(0), 1.0, atol=1e-12)
    r, _ = market_paths(model, 50)
    vol = np.asarray(model.prices.vol)
    dt = model.grid.dt_years
    eps = (r.reshape(-1, 2) - (-0.5 * vol**2 * dt)) / (vol * math.sqrt(dt))
    d = np.abs(eps[:, None, :] - sample[None, :, :]).max(axis=-1).min(axis=1)
    assert d.max() < 1e-9  # every simulated vector is a sample row, both assets from the same row
    # the skew of the sample survives (asset B's residuals are skewed right)
    sk = ((eps - eps.mean(0)) ** 3).mean(0) / eps.std(0) ** 3
    sk_sample = (sample**3).mean(0)
    assert abs(sk[1] - sk_sample[1]) < 0.5 and sk_sample[1] > 0.5


def test_historical_returns_keep_the_samples_own_variance(tmp_path):
    """FHS returns are vol x sqrt(v) x z with z the file's rows as written (demeaned): a fit's residuals keep
    the jump bars around a non-jump variance target, so their variance k^2 > 1 is the data's excess over
    ``assets.vol``. The simulated hourly return variance is vol^2 dt k^2 (within 4 SE), the GARCH update
    sees the unit-variance sample (its variance ratio stays at its target), and the model's vol is vol k."""
    rng = np.random.default_rng(4)
    z = rng.standard_normal((4000, 2))
    z[rng.choice(4000, 40, replace=False), 1] = rng.choice([-9.0, 11.0], 40)  # "jump bars" of asset B
    k = z.std(axis=0)
    assert k[1] > 1.15
    cfg = pair_config(step=3600.0, horizon=24 * 3600.0, garch=GARCH, dtype="float64",
                      innovations={"kind": "historical", "residuals": str(residual_file(tmp_path, z=z))})
    model = build_model(cfg)[0]
    vol = np.array([a["vol"] for a in cfg["assets"]])
    np.testing.assert_allclose(np.asarray(model.prices.vol), vol * k, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(model.prices.residuals).std(axis=0), 1.0, rtol=1e-12)
    r, v2 = market_paths(model, 20000)
    dt = model.grid.dt_years
    x = r[:, 0, :] + 0.5 * (vol * k) ** 2 * dt  # the first hour (unconditional start); the Ito correction
    m, se = (x**2).mean(axis=0), (x**2).std(axis=0) / math.sqrt(len(x))
    want = vol**2 * dt * k**2
    assert np.all(np.abs(m - want) < 4 * se), (m / (vol**2 * dt), k**2, se / (vol**2 * dt))
    assert abs(m[1] - vol[1] ** 2 * dt) > 4 * se[1]  # the unit-variance reading is refused for B
    v = np.asarray(v2)[:, -1, :]  # the GARCH ratio after 23 updates fed the unit sample: still at its target
    assert np.all(np.abs(v.mean(axis=0) - 1.0) < 4 * v.std(axis=0) / math.sqrt(len(v))), v.mean(axis=0)
    # a file in other units (raw returns: std ~0.01) is refused, naming the asset and the bound
    with pytest.raises(ConfigError, match=r"residuals of A have std 0.01.*outside \[0.2, 5\]"):
        build_model(pair_config(innovations={"kind": "historical", "residuals": str(
            residual_file(tmp_path, z=0.01 * rng.standard_normal((400, 2)), name="raw.npz"))}))


def test_jump_rows_feed_the_garch_an_average_shock(tmp_path):
    """A residual file's ``jumps`` rows (the bars the fit's GARCH entered as an average shock) feed the
    simulated GARCH update 1, other rows their square over the non-jump mean square: E[feed] = 1, a sampled
    jump moves the price but not the next bar's variance."""
    from perpjax.innovations import garch_feed

    rng = np.random.default_rng(8)
    z = rng.standard_normal((3000, 2))
    jumps = np.zeros_like(z, bool)
    jumps[rng.choice(3000, 30, replace=False), 1] = True
    z[jumps] = rng.choice([-10.0, 12.0], 30)
    feed = garch_feed(z, jumps)
    np.testing.assert_allclose(feed.mean(axis=0), 1.0, rtol=1e-12)
    assert np.all(feed[jumps] == 1.0)
    p = tmp_path / "jumps.npz"
    np.savez(p, residuals=z, assets=np.array(NAMES), bar_seconds=3600.0, jumps=jumps)
    g = {"alpha": 0.1, "beta": 0.85, "fitted_seconds": 3600}
    model = build_model(pair_config(step=3600.0, horizon=2 * 3600.0, garch=g, dtype="float64",
                                    innovations={"kind": "historical", "residuals": str(p)}))[0]
    np.testing.assert_allclose(np.asarray(model.prices.residual_feed), feed, rtol=1e-12)
    _, v2 = market_paths(model, 20000)
    after = np.asarray(v2)[:, 1, 1]  # B's variance ratio after one update from 1: 1 - a + a feed
    want = 1 - 0.1 + 0.1 * feed[:, 1]
    assert np.all(np.min(np.abs(after[:, None] - want[None, :]), axis=1) < 1e-12)
    assert after.max() <= want[~jumps[:, 1]].max() + 1e-12  # no jump row's square reached the update
    assert np.any(np.abs(after - 1.0) < 1e-12)  # some paths drew a jump row: fed the average shock
    assert abs(after.mean() - 1.0) < 4 * after.std() / math.sqrt(len(after))


@pytest.mark.parametrize("kind", ["historical", "student_t"])
def test_results_do_not_depend_on_chunking(tmp_path, kind):
    inn = {"kind": kind, "nu": 4.0, "bar_seconds": 3600}
    if kind == "historical":
        inn["residuals"] = str(residual_file(tmp_path))
    model, _, _ = build_model(pair_config(step=600.0, horizon=6 * 3600.0, innovations=inn, garch=GARCH,
                                          market_state={"variance_ratio": [2.0, 0.5]}))
    a = simulate(model, seed=5, n_paths=60, chunk_size=60)
    b = simulate(model, seed=5, n_paths=60, chunk_size=16)
    np.testing.assert_array_equal(a.path_log_return, b.path_log_return)
    np.testing.assert_array_equal(a.path_trader_loss, b.path_trader_loss)


# ------------------------------------------------------------------------------------- bars and bridge


def test_bridge_sums_to_the_bar_and_garch_updates_once_per_bar():
    inn = {"kind": "student_t", "nu": 4.0, "bar_seconds": 3600}
    fine, _, _ = build_model(pair_config(step=600.0, horizon=4 * 3600.0, innovations=inn, garch=GARCH,
                                         market_state={"variance_ratio": [3.0, 0.5]}))
    r, v2 = market_paths(fine, 20)
    assert v2[:, 0, 0].tolist() == [3.0] * 20
    for b in range(4):  # v2 constant inside each bar, changes at bar starts
        blk = v2[:, 6 * b:6 * b + 6]
        assert np.all(blk == blk[:, :1])
    assert np.all(v2[:, 6] != v2[:, 5])


def _bar_and_day(step, inn, paths, seed):
    model, _, _ = build_model(pair_config(step=step, horizon=86400.0, innovations=inn, garch=GARCH,
                                          market_state={"variance_ratio": [2.0, 0.7]}))
    rs = [market_paths(model, paths // 4, seed=seed, start=i * (paths // 4))[0] for i in range(4)]
    r = np.concatenate(rs)
    m = int(round(3600 / step))
    bars = r.reshape(r.shape[0], -1, m, 2).sum(axis=2)
    return bars, bars.sum(axis=1, keepdims=True)


QS = [0.001, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gaussian", "student_t", "historical"])
def test_bar_and_day_quantiles_do_not_depend_on_the_step(tmp_path, kind):
    """Hour (the bar) and day log-return quantiles at 60 s and 3600 s steps agree within 4 batch SEs."""
    inn = {"kind": kind, "nu": 3.5, "bar_seconds": 3600}
    if kind == "historical":
        inn["residuals"] = str(residual_file(tmp_path))
    fine = _bar_and_day(60.0, inn, 2000, seed=1)
    coarse = _bar_and_day(3600.0, inn, 20000, seed=2)
    for f, c in zip(fine, coarse, strict=True):
        qf, sf = batch_quantiles(f, QS)
        qc, sc = batch_quantiles(c, QS)
        z = np.abs(qf - qc) / np.sqrt(sf**2 + sc**2)
        assert np.all(z < K_SE), (qf, qc, z)


# ------------------------------------------------------------------------------ conditional barrier bridge


def _liq_probability(step, bridge, n, market_state, extra=None, innovations=None):
    cfg = single_position_config(vol=0.8, leverage=12.0, mmr=0.01, step_seconds=step, bridge=bridge)
    cfg["innovations"] = innovations or {"kind": "gaussian", "bar_seconds": 3600}
    cfg["garch"] = {"alpha": 0.1, "beta": 0.85}
    cfg["market_state"] = market_state
    cfg.update(extra or {})
    model, _, _ = build_model(cfg)
    out = simulate(model, seed=9, n_paths=n, chunk_size=min(n, 20000))
    p = out.liq_count[0] / n
    return p, math.sqrt(p * (1 - p) / n)


STRESS = {"regimes": {"stress_correlation": [[1.0]], "switch": "markov", "vol_multiplier": 1.8,
                      "enter_rate_per_day": 0.5, "exit_rate_per_day": 2.0}}


@pytest.mark.slow
@pytest.mark.parametrize("case", ["garch", "fhs_regimes"])
def test_conditional_bridge_matches_the_fine_grid(tmp_path, case):
    """Hourly steps with the bridge at the step's conditional variance vs a 60 s grid (unbridged, and
    bridged at the sub-bar rate): liquidation probabilities agree within 3 SE. GARCH starts at 4x its
    target variance; "fhs_regimes" adds historical innovations and a start in the stress regime."""
    ms, extra, inn = {"variance_ratio": 4.0}, None, None
    if case == "fhs_regimes":
        ms, extra = {"variance_ratio": 2.0, "stress": True}, STRESS
        inn = {"kind": "historical", "bar_seconds": 3600,
               "residuals": str(residual_file(tmp_path, z=np.random.default_rng(1).standard_t(4, (3000, 1)),
                                              names=["X"]))}
    pc, sc = _liq_probability(3600.0, True, 40000, ms, extra, inn)
    pf, sf = _liq_probability(60.0, False, 20000, ms, extra, inn)
    assert abs(pc - pf) < 3 * math.hypot(sc, sf), (pc, pf, sc, sf)
    pb, sb = _liq_probability(60.0, True, 20000, ms, extra, inn)
    assert abs(pc - pb) < 3 * math.hypot(sc, sb), (pc, pb, sc, sb)
    pn, sn = _liq_probability(3600.0, False, 40000, ms, extra, inn)
    assert pc - pn > 10 * math.hypot(sc, sn)  # the hourly grid alone misses crossings: the bridge is resolved


# ------------------------------------------------------------------------------------ stable dynamics


@pytest.mark.slow
@pytest.mark.parametrize("step, bar, winsorize", [(60.0, 3600, None), (60.0, None, None), (3600.0, None, 20.0),
                                                   (60.0, 3600, 20.0)])
def test_heavy_tailed_garch_is_stationary_over_30_days(step, bar, winsorize):
    """Student-t nu = 3.5 (infinite fourth moment) + GARCH over 30 days: mean variance ratio = 1 (the
    target) within 4 SE (+ 0.02), everything finite, daily log returns |r| < 3. At the hourly bar the
    winsorised update is needed: see ``test_unbounded_heavy_tails_explode_at_the_bar``."""
    garch = {"alpha": 0.08, "beta": 0.9, **({"winsorize": winsorize} if winsorize else {})}
    inn = {"kind": "student_t", "nu": 3.5, **({"bar_seconds": bar} if bar else {})}
    model, _, _ = build_model(pair_config(step=step, horizon=30 * 86400.0, innovations=inn, garch=garch))
    n = 200 if step == 60.0 else 4000
    r, v2 = market_paths(model, n, seed=4)
    assert np.all(np.isfinite(r)) and np.all(np.isfinite(v2))
    per_path = v2.mean(axis=(1, 2))
    se = per_path.std(ddof=1) / math.sqrt(n)
    assert abs(per_path.mean() - 1.0) < K_SE * se + 0.02, (per_path.mean(), se)
    days = r.reshape(n, 30, -1, 2).sum(axis=2)
    assert np.abs(days).max() < 3.0


@pytest.mark.slow
def test_unbounded_heavy_tails_explode_at_the_bar():
    """Why the cap: hourly GARCH on nu = 3.5 innovations without it reaches a variance ratio > 500 and
    daily |log return| > 3 within 4000 paths of 30 days; with the cap (same draws) the largest ratio is
    several times smaller and the daily returns stay plausible."""
    inn = {"kind": "student_t", "nu": 3.5}
    raw, _, _ = build_model(pair_config(horizon=30 * 86400.0, innovations=inn, garch=GARCH))
    r, v2 = market_paths(raw, 4000, seed=4)
    assert v2.max() > 500 and np.abs(r.reshape(4000, 30, -1, 2).sum(axis=2)).max() > 3
    capped, _, _ = build_model(pair_config(horizon=30 * 86400.0, innovations=inn, garch={**GARCH, "winsorize": 20}))
    rc, v2c = market_paths(capped, 4000, seed=4)
    assert v2c.max() < 0.2 * v2.max() and np.abs(rc.reshape(4000, 30, -1, 2).sum(axis=2)).max() < 3


def test_winsorised_update_keeps_the_variance_target():
    from perpjax.config.events import winsorised_mean

    model, _, _ = build_model(pair_config(innovations={"kind": "student_t", "nu": 3.0},
                                          garch={**GARCH, "winsorize": 15.0}))
    rng = np.random.default_rng(0)
    nu = 3.0
    eps = rng.standard_t(nu, size=4_000_000) * math.sqrt((nu - 2) / nu)
    ref = np.minimum(eps**2, 15.0).mean()
    cm = float(winsorised_mean(model.prices, 15.0)[0][0])
    assert abs(cm - ref) < 5e-3 and abs(float(model.garch.cap_mean[0]) - cm) < 1e-12
    with pytest.raises(ConfigError, match=r"garch.winsorize: with cap 100 the variance ratio has no finite variance"):
        build_model(pair_config(innovations={"kind": "student_t", "nu": 3.0}, garch={**GARCH, "winsorize": 100.0}))


# ------------------------------------------------------------------------------------------ recompiles


def test_new_origin_values_do_not_recompile(tmp_path):
    """vols, GARCH alpha/beta, variance ratio, regime state, residual sample and MMR are traced."""
    def cfg(i):
        c = pair_config(step=1800.0, horizon=7200.0,
                        innovations={"kind": "historical", "bar_seconds": 3600,
                                     "residuals": str(residual_file(tmp_path, seed=i, name=f"r{i}.npz"))},
                        garch={"alpha": 0.05 + 0.01 * i, "beta": 0.9 - 0.01 * i},
                        market_state={"variance_ratio": [1.0 + i, 2.0], "stress": bool(i % 2)},
                        regimes={"stress_correlation": [[1.0, 0.9], [0.9, 1.0]], "switch": "markov",
                                 "vol_multiplier": 1.5})
        c["assets"][0]["vol"] = 0.5 + 0.1 * i
        c["ladders"]["A"][0]["mmr"] = 0.01 + 0.002 * i
        return c

    models = [build_model(cfg(i))[0] for i in range(3)]
    key = R.seed_key(0)
    outs = [simulate_chunk(m, key, jnp.uint32(0), 8) for m in models[:1]]
    size = simulate_chunk._cached_size() if hasattr(simulate_chunk, "_cached_size") else None
    compiles, listening = [], [True]
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, *a, **k: compiles.append(name) if listening[0] and "/jax/core/compile" in name else None)
    outs += [simulate_chunk(m, key, jnp.uint32(0), 8) for m in models[1:]]
    jax.block_until_ready(outs)
    listening[0] = False
    assert compiles == [], compiles
    if size is not None:
        assert simulate_chunk._cached_size() == size
    assert not np.array_equal(np.asarray(outs[0].log_return), np.asarray(outs[1].log_return))
