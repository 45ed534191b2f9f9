"""Risk sensitivities (``perpjax sensitivities``): pathwise gradients of the relaxed engine against a
closed form and against the hard engine's central finite differences on common random numbers.

References: the lognormal terminal distribution of GBM (a single isolated long checked once, at the
horizon: P(liq) = Phi(a) exactly, differentiated in log vol and log MMR by hand), and the hard
engine's finite differences (same seed, same paths)."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from perpjax import sensitivities as S
from perpjax.cli import main
from perpjax.config import ConfigError, build_model
from perpjax.metrics import MIN_TAIL_PATHS
from perpjax.sensitivities.estimates import FEW_PATHS, UNRESOLVED, ZERO_BY_CONSTRUCTION, compare

from .helpers import single_position_config


def _terminal_check_model(vol, lev, mmr, horizon):
    cfg = single_position_config(vol=vol, leverage=lev, mmr=mmr, step_seconds=3600.0, horizon_seconds=horizon,
                                 check_every_seconds=horizon)
    return build_model(cfg)


def test_pathwise_liquidation_probability_gradient_matches_the_lognormal_closed_form():
    """One isolated 20x long (entry = S0 = 100, MMR m = 1%), GBM with zero drift, checked only at T = 1 day:
    liquidated iff S_T < B = 100 (1 - 1/L) / (1 - m), so P = Phi(a), a = (b + s^2/2) / s, b = ln(B / 100),
    s = sigma sqrt(T). Per +1 %: dP/dlog(sigma) = phi(a) (s/2 - b/s) and dP/dlog(m) = phi(a) m / ((1 - m) s).
    The pathwise estimates (P(any liquidation) and expected liquidations: the same for one unit) are within
    3 standard errors of both."""
    vol, lev, m, T = 0.8, 20.0, 0.01, 86400.0
    model, _, resolved = _terminal_check_model(vol, lev, m, T)
    base = S.params.base_of(resolved)
    g = S.path_grads(model, base, ("vol", "mmr"), seed=11, n_paths=6000, chunk=3000, tau=1e-3)
    s = vol * math.sqrt(T / (365.0 * 86400.0))
    b = math.log((1 - 1 / lev) / (1 - m))
    a = (b + s * s / 2) / s
    closed = {"vol": norm.pdf(a) * (s / 2 - b / s), "mmr": norm.pdf(a) * m / ((1 - m) * s)}
    assert abs(g.values[:, 1].mean() - norm.cdf(a)) < 3 * g.values[:, 1].std() / math.sqrt(6000)
    for name, want in closed.items():
        for col in (1, 2):  # P(any liquidation), expected liquidations
            j = g.jac[name][:, col]
            se = j.std(ddof=1) / math.sqrt(j.size)
            assert abs(j.mean() - want) < 3 * se, (name, col, j.mean(), se, want)
            assert se < 0.1 * want  # the test has power: a 30 % error would fail


TINY = {
    "seed": 3, "paths": 1500, "chunk_size": 1500, "dtype": "float64",
    "time": {"step_seconds": 300.0, "horizon_seconds": 14400.0},
    "assets": [{"name": "A", "price": 100.0, "vol": 0.9, "depth_usd": 3.0e4, "spread": 2e-4},
               {"name": "B", "price": 10.0, "vol": 1.2, "depth_usd": 2.0e4, "spread": 4e-4}],
    "correlation": [[1.0, 0.6], [0.6, 1.0]],
    "jumps": {"intensity_per_year": 800.0, "mean": -0.02, "std": 0.03},  # gaps through bankruptcy: bad debt
    "mark": {"kind": "index"},
    "funding": {"enabled": False},
    "ladders": {"A": [{"floor": 0, "mmr": 0.01, "imr": 0.02}, {"floor": 20000, "mmr": 0.02, "imr": 0.04}],
                "B": [{"floor": 0, "mmr": 0.02, "imr": 0.04}]},
    "liquidation": {"fee_rate": 0.004},
    "insurance_fund": 3000.0,
    "book": {"accounts": [
        {"id": "cross", "collateral": 2600.0,
         "positions": [{"asset": "A", "size": 300, "entry": 100.0}, {"asset": "B", "size": -800, "entry": 10.0}]},
        {"id": "iso_long", "mode": "isolated", "positions": [{"asset": "A", "size": 40, "entry": 100.0,
                                                              "margin": 160.0}]},
        {"id": "iso_short", "mode": "isolated", "positions": [{"asset": "B", "size": -500, "entry": 10.0,
                                                               "margin": 200.0}]}]},
}


def test_pathwise_gradients_agree_with_hard_finite_differences_for_every_parameter():
    """Every parameter x metric of a tiny two-asset book: the pathwise gradient and the hard engine's central
    difference on the same paths agree within 3 combined standard errors, and vol, MMR, depth and spread
    move some metric by more than 3 standard errors (the check has something to check)."""
    names = tuple(S.PARAMS)
    setup = S.prepare(TINY, names, S.parse_bumps([], names), paths=1500, seed=None)
    table, extra = S.run_sensitivities(setup, chunk=750, progress=lambda m: None)
    assert list(table.columns[:10]) == ["parameter", "metric", "unit", "gradient", "gradient_se", "fd", "fd_se",
                                        "z", "agree", "method"]
    # the fund moves no relaxed output: its pathwise column is 0 by construction (no estimate, no z) for every
    # metric but the depletion proxy's
    zero = table["method"] == ZERO_BY_CONSTRUCTION
    assert set(table.loc[zero, "parameter"]) == {"fund"}
    assert set(table.loc[zero, "metric"]) == set(S.METRICS) - {"p_insurance_fund_depleted"}
    assert (table.loc[zero, "gradient"] == 0).all() and table.loc[zero, "z"].isna().all()
    assert (table.loc[zero, "agree"] == "").all() and table.loc[zero, "note"].str.contains("fund").all()
    rest = table[~zero]
    assert (rest["method"] == "pathwise").all()
    # no z where nothing is measured, and it says why: no path depletes the fund at any bump (the FD is 0 from 0
    # paths), depth / spread / fee do not move P(liquidation) in this model (both estimates exactly 0), the MMR
    # moves the bad debt of a single path
    unjudged = rest[rest["z"].isna()]
    few = {FEW_PATHS.format(k=k) for k in range(MIN_TAIL_PATHS)}
    assert unjudged["note"].isin({UNRESOLVED} | few).all(), unjudged.to_string()
    assert unjudged["agree"].eq("").all() and unjudged["fd_se"].isna().all()
    depleted = rest[rest.metric == "p_insurance_fund_depleted"]
    assert (depleted["value"] == 0).all() and depleted["z"].isna().all() and (depleted["fd"] == 0).all()
    judged = rest[rest["z"].notna()]
    assert len(judged) >= 15  # the check has something to check
    bad = judged[~judged["agree"].astype(bool)]
    assert bad.empty, bad.to_string()
    moved = table[(table.fd.abs() > 3 * table.fd_se) & (table.fd_se > 0)]
    assert {"vol", "mmr", "depth", "spread"} <= set(moved.parameter), table.to_string()
    assert extra["kind"] == "sensitivities" and extra["cost"]["ratio_vs_hard_forward"] > 0


def test_no_verdict_between_two_estimates_below_resolution():
    """A pathwise gradient of 1e-12 (float32 noise of a sigmoid's far tail) beside a finite difference of exactly
    0 is no agreement: both lie below the floor, so the row has no z and says why. A finite difference moved by
    fewer than ``MIN_TAIL_PATHS`` paths has no SE and gives no z. Resolved estimates keep their z."""
    rng = np.random.default_rng(0)
    d = np.zeros(500)
    noise = compare(rng.normal(1e-12, 1e-12, 500), d, scale=0.0)
    assert math.isnan(noise["z"]) and noise["agree"] == "" and noise["note"] == UNRESOLVED
    assert abs(noise["gradient"]) < 1e-12 and noise["fd"] == 0.0
    assert math.isnan(noise["fd_se"])  # 0 paths move the finite difference: its "± 0" would say nothing
    real = compare(rng.normal(1e-3, 1e-3, 500), rng.normal(0.0, 1e-3, 500), scale=0.0)
    assert real["z"] > 3 and real["agree"] is False and "note" not in real and real["fd_se"] > 0
    few = np.zeros(500)
    few[:3] = 1.0  # 3 paths change between the bumps
    one_sided = compare(rng.normal(1e-3, 1e-3, 500), few, scale=0.0)
    assert math.isnan(one_sided["z"]) and math.isnan(one_sided["fd_se"])
    assert one_sided["note"] == FEW_PATHS.format(k=3)


def test_printed_table_says_n_a_and_why_for_an_se_not_estimated():
    """A finite difference moved by 3 paths has no SE: the printed table says "n/a (3 paths move it)", never
    "± nan"; a resolved row keeps both SEs; a finite-difference-only row prints its gradient as n/a."""
    import pandas as pd

    from perpjax.cli.sensitivities import format_table

    rng = np.random.default_rng(1)
    few = np.zeros(500)
    few[:3] = 1.0
    rows = [{"parameter": "vol", "metric": "p_any_liquidation", "unit": "probability per +1 %",
             **compare(rng.normal(1e-3, 1e-3, 500), few, scale=0.0), "method": "pathwise", "value": 0.1},
            {"parameter": "mmr", "metric": "bad_debt_mean", "unit": "USD per +1 %",
             **compare(rng.normal(1e-3, 1e-3, 500), rng.normal(1e-3, 1e-3, 500), scale=0.0), "method": "pathwise",
             "value": 1.0},
            {"parameter": "fee", "metric": "bad_debt_mean", "unit": "USD per +1 %", **compare(None, few),
             "method": "finite-difference", "value": 1.0}]
    table = pd.DataFrame(rows, columns=S.COLUMNS)
    assert list(table.fd_paths) == [3, 500, 3] and math.isnan(table.fd_se[0])
    extra = {"paths": 500, "seed": 1, "temperature": 3e-4, "ad_mode": "forward", "z_agree": 3.0,
             "parameters": ["vol", "mmr", "fee"], "cost": {}}
    text = format_table(table, extra)
    assert "nan" not in text.lower().replace("n/a", "")
    lines = {ln.split()[1]: ln for ln in text.splitlines()[2:]}  # metric, parameter, ...
    vol, mmr, fee = lines["vol"], lines["mmr"], lines["fee"]
    assert "± n/a (3 paths move it)" in vol and vol.count("± n/a") == 1  # the pathwise SE is given
    assert "n/a" not in mmr and mmr.count("±") == 2
    assert "± n/a (3 paths move it)" in fee and " n/a " in fee.split("±")[0]  # no pathwise gradient
    assert f"fewer than {MIN_TAIL_PATHS} paths" in text


@pytest.mark.parametrize("liq", [{}, {"mode": "fraction", "fraction": 0.3}, {"mode": "buffer"}, {"mode": "tier_step"},
                                 {"check_every_seconds": 900.0}], ids=["full", "fraction", "buffer", "tier_step",
                                                                        "checks_every_3_steps"])
def test_sparse_relaxed_engine_gives_the_dense_engines_values_and_jacobian(liq):
    """The default pathwise pass (forward mode, soft liquidations only where a unit's weight reaches
    ``ACTIVE_HAZARD`` = 1e-9, compacted over the chunk, nested market / venue tangents) against the dense
    relaxed engine on the same 128 paths, float64, for every liquidation mode: equal to 1e-6 of each
    column's scale. A skipped unit-step weighs < 1e-9, and its derivative < 1e-9 x |dz/dx| with z the
    hazard's argument (|dz/dx| ~ 1 / tau = 3e3 per unit relative move), so 1e-6 bounds the skips of these
    48 steps x 3 units; measured <= 4e-7. Capacities (1/64, 1/8): 2 or 16 of the 128 paths compacted, the
    dense fallback beyond, so every branch runs. Reverse mode (dense, per path) gives the same Jacobian to
    rounding (full and fraction modes)."""
    from perpjax import random as R
    from perpjax.sensitivities import pathwise as PW

    names = tuple(S.PARAMS)
    model, _, resolved = build_model({**TINY, "liquidation": {**TINY["liquidation"], **liq}})
    base = S.params.base_of(resolved)
    theta = {n: jnp.zeros((), model.dtype) for n in names}
    key, start = R.seed_key(3), jnp.asarray(0, jnp.uint32)
    y0, j0 = PW.chunk_forward(model, base, key, start, theta, 128, 3e-4, 0.0)
    assert float(np.max(np.abs(y0[:, 2]))) > 0.5  # units liquidate: the comparison has something to compare
    y, j = PW.chunk_forward(model, base, key, start, theta, 128, 3e-4, (1 / 64, 1 / 8))
    assert np.max(np.abs(y - y0)) <= 1e-6 * np.max(np.abs(y0))
    assert np.any(y != y0)  # steps were skipped (the sparse branch ran)
    for n in names:
        assert np.max(np.abs(j[n] - j0[n])) <= 1e-6 * np.max(np.abs(j0[n])), n
    if liq.get("mode", "full") in ("full", "fraction") and "check_every_seconds" not in liq:
        yr, jr = PW.chunk_reverse(model, base, key, start, theta, 128, 3e-4, 16)
        assert np.max(np.abs(yr - y0)) <= 1e-12 * np.max(np.abs(y0))
        for n in names:
            assert np.max(np.abs(jr[n] - j0[n])) <= 1e-9 * np.max(np.abs(j0[n])), n


def test_forward_mode_columns_do_not_depend_on_which_parameters_are_asked():
    """The nested forward pass splits the parameters into market (inner jvp), venue (outer) and the fund
    (no jvp: its column is 0); any subset, including one side only, gives the all-seven run's columns."""
    from perpjax import random as R
    from perpjax.sensitivities import pathwise as PW

    model, _, resolved = build_model(TINY)
    base = S.params.base_of(resolved)
    key, start = R.seed_key(3), jnp.asarray(0, jnp.uint32)

    def run(names):
        return PW.chunk_forward(model, base, key, start, {n: jnp.zeros((), model.dtype) for n in names}, 32,
                                      3e-4, PW.SPARSE)

    y_all, j_all = run(tuple(S.PARAMS))
    assert np.all(j_all["fund"] == 0) and np.max(np.abs(j_all["mmr"])) > 0
    for names in (("mmr",), ("vol",), ("fund",), ("fee", "correlation")):
        y, j = run(names)
        assert set(j) == set(names)
        np.testing.assert_allclose(y, y_all, rtol=1e-12, atol=0)
        for n in names:
            np.testing.assert_allclose(j[n], j_all[n], rtol=1e-9, atol=1e-12 * np.max(np.abs(j_all[n])))


def test_unknown_wrt_is_a_config_error_listing_the_names_and_writes_nothing(tmp_path, capsys):
    with pytest.raises(ConfigError, match="valid: vol, correlation, mmr"):
        S.parse_wrt("vol,gamma")
    out = tmp_path / "sens"
    assert main(["sensitivities", "--wrt", "vol,gamma", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "'gamma'" in err and "valid:" in err
    assert not out.exists()
    assert main(["sensitivities", "--bump", "vol=2", "--out", str(out)]) == 2
    assert not out.exists()


def test_cli_writes_the_table_and_the_manifest_and_falls_back_to_finite_differences(tmp_path, capsys):
    """With ADL on the relaxed engine refuses the model: every row is a finite difference and says why."""
    import json

    import pandas as pd
    import yaml

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "liquidation": {**TINY["liquidation"], "adl": True}}))
    out = tmp_path / "sens"
    assert main(["sensitivities", str(cfg), "--wrt", "depth,fund", "--paths", "200", "--out", str(out)]) == 0
    t = pd.read_csv(out / "sensitivities.csv", keep_default_na=False)
    assert list(t.columns[:10]) == list(S.COLUMNS[:10]) and len(t) == 2 * len(S.METRICS)
    assert (t["method"] == "finite-difference").all() and t["note"].str.contains("adl").all()
    assert (t["gradient"] == "").all() and np.isfinite(t["fd"].astype(float)).all()
    m = json.loads((out / "manifest.json").read_text())
    assert m["kind"] == "sensitivities" and m["bumps"] == {"depth": 5.0, "fund": 5.0}
    assert m["temperature"] == S.TEMPERATURE and m["relaxed_refusal"]
    assert "compile_seconds" in m and "compiles" in m
    assert "finite differences only" in capsys.readouterr().out
