"""The filtered market state at a forecast origin, the FHS residual file, and the conditional config
(``perpjax.estimate.state``, ``residuals``, ``conditional``; the ``fit`` / ``filter`` commands)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from perpjax import estimate as F

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "binance_usdm_perp_1h.csv.gz"
T0 = 1_600_000_000 - 1_600_000_000 % 3600


def _garch_closes(n=600, k=2, seed=0, alpha=(0.08, 0.12), beta=(0.85, 0.8), var=(1e-4, 2e-4), bar=3600):
    """Closes of k independent GARCH-t assets, hourly from T0 (n + 1 bars)."""
    rng = np.random.default_rng(seed)
    r = np.column_stack([F.simulate_garch_t(n, alpha[i], beta[i], var[i], 5.0, rng) for i in range(k)])
    px = 100.0 * np.exp(np.vstack([np.zeros((1, k)), np.cumsum(r, axis=0)]))
    idx = pd.Index(T0 + bar * np.arange(n + 1), name="timestamp")
    return pd.DataFrame(px, index=idx, columns=[f"A{i}" for i in range(k)])


def test_garch_filter_equals_the_recursion_by_hand():
    r = np.array([0.01, -0.02, 0.005, 0.03, -0.001])
    a, b, v = 0.1, 0.85, 2e-4
    h = v
    for x in r:  # h_{t+1} = (1 - a - b) v + a x_t^2 + b h_t, h_0 = v
        h = (1 - a - b) * v + a * x * x + b * h
    got = F.garch_filter(r, a, b, v)
    assert got[0] == v and len(got) == len(r) + 1
    assert got[-1] == pytest.approx(h, rel=1e-14)
    ex = np.array([False, False, False, True, False])  # a jump bar enters as the average shock x^2 = v
    h = v
    for x, e in zip(r, ex, strict=True):
        h = (1 - a - b) * v + a * (v if e else x * x) + b * h
    assert F.garch_filter(r, a, b, v, exclude=ex)[-1] == pytest.approx(h, rel=1e-14)
    with pytest.raises(ValueError, match="alpha, beta"):
        F.garch_filter(r, 0.5, 0.6, v)


def test_filter_state_by_hand_and_regime():
    closes = _garch_closes()
    origin = int(closes.index[-1]) + 3600  # the last close is the one at the origin
    st = F.filter_state(closes, ["A0", "A1"], origin, alpha=[0.08, 0.12], beta=[0.85, 0.8], var=[1e-4, 2e-4],
                        stress_drawdown=0.05, stress_halflife_bars=6.0, lookback_seconds=400 * 3600,
                        jump_threshold=None)
    sub = closes[closes.index >= origin - 400 * 3600]
    for i, (a, b, v) in enumerate(((0.08, 0.85, 1e-4), (0.12, 0.8, 2e-4))):
        r = np.diff(np.log(sub.iloc[:, i].to_numpy()))
        h = v
        for x in r:
            h = (1 - a - b) * v + a * x * x + b * h
        assert st.variance_ratio[i] == pytest.approx(h / v, rel=1e-12)
    assert st.n_bars == 399 and st.origin == origin and st.window_start == origin - 400 * 3600
    np.testing.assert_array_equal(st.last_price, closes.iloc[-1].to_numpy())
    # the regime: the simulator's rule, by hand (level vs its EWMA, hysteresis), state after the last bar
    r = np.diff(np.log(sub.to_numpy()), axis=0)
    al = 1 - 0.5 ** (1 / 6.0)
    level = ref = 0.0
    on = False
    for row in r:
        level += row.mean()
        ref += al * (level - ref)
        gap = level - ref
        on = bool(gap < -0.025 if on else gap < -0.05)
    assert st.stress is on
    ms = F.market_state(st)
    assert ms["time"] == pd.Timestamp(origin, unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    assert ms["stress"] is on and all(type(x) is float for x in ms["variance_ratio"])


def test_filter_state_stress_on_after_a_selloff():
    closes = _garch_closes(n=300)
    closes.iloc[-3:] *= np.array([[0.95], [0.9], [0.85]])  # three bad hours at the end
    origin = int(closes.index[-1]) + 3600
    st = F.filter_state(closes, ["A0", "A1"], origin, alpha=[0.08, 0.12], beta=[0.85, 0.8], var=[1e-4, 2e-4],
                        stress_drawdown=0.05, jump_threshold=None)
    assert st.stress
    assert not F.filter_state(closes, ["A0", "A1"], origin, alpha=[0.08, 0.12], beta=[0.85, 0.8],
                              var=[1e-4, 2e-4], stress_drawdown=None).stress


def test_filter_state_does_not_leak():
    closes = _garch_closes(n=800)
    origin = int(closes.index[500])
    kw = dict(alpha=[0.08, 0.12], beta=[0.85, 0.8], var=[1e-4, 2e-4], stress_drawdown=0.03)
    st = F.filter_state(closes, ["A0", "A1"], origin, **kw)
    moved = closes.copy()
    moved.loc[moved.index >= origin] *= np.exp(np.random.default_rng(1).normal(0, 0.2, (301, 2)))
    st2 = F.filter_state(moved, ["A0", "A1"], origin, **kw)
    np.testing.assert_array_equal(st.variance_ratio, st2.variance_ratio)
    assert st.stress == st2.stress
    np.testing.assert_array_equal(st.last_price, st2.last_price)
    # ... while the bar just before the origin does count
    moved.loc[moved.index == origin - 3600] *= 1.05
    assert not np.array_equal(F.filter_state(moved, ["A0", "A1"], origin, **kw).variance_ratio, st.variance_ratio)


def test_filter_state_errors_name_the_problem():
    closes = _garch_closes(n=400)
    kw = dict(alpha=[0.08, 0.12], beta=[0.85, 0.8], var=[1e-4, 2e-4])
    with pytest.raises(ValueError, match="too few bars"):
        F.filter_state(closes, ["A0", "A1"], int(closes.index[50]), **kw)
    holed = closes.drop(index=closes.index[300])
    with pytest.raises(ValueError, match="missing bar"):
        F.filter_state(holed, ["A0", "A1"], int(closes.index[-1]), **kw)
    one = closes.copy()
    one.iloc[300, 1] = np.nan
    with pytest.raises(ValueError, match="A1 has no bar"):
        F.filter_state(one, ["A0", "A1"], int(closes.index[-1]), **kw)
    with pytest.raises(ValueError, match="XX"):
        F.filter_state(closes, ["A0", "XX"], int(closes.index[-1]), **kw)
    with pytest.raises(ValueError, match="not on a bar boundary"):  # the bar around it closes after it
        F.filter_state(closes, ["A0", "A1"], int(closes.index[-1]) - 1800, **kw)
    with pytest.raises(ValueError, match="end at"):
        F.filter_state(closes, ["A0", "A1"], int(closes.index[-1]) + 7200, **kw)


def test_garch_from_config():
    cfg = {"assets": [{"name": "A", "vol": 0.6}, {"name": "B", "vol": 0.9}],
           "garch": {"alpha": [0.05, 0.1], "beta": [0.9, 0.85], "fitted_seconds": 3600},
           "regimes": {"switch": "shock", "drawdown": 0.04, "reference_halflife_seconds": 7200}}
    g = F.garch_from_config(cfg)
    np.testing.assert_allclose(g["var"], np.array([0.36, 0.81]) * 3600 / (365 * 86400), rtol=1e-15)
    assert g["stress_drawdown"] == 0.04 and g["stress_halflife_bars"] == 2.0 and g["names"] == ["A", "B"]
    with pytest.raises(ValueError, match="garch"):
        F.garch_from_config({"assets": cfg["assets"]})
    with pytest.raises(ValueError, match="garch.beta"):
        F.garch_from_config({**cfg, "garch": {"alpha": [0.1, 0.1], "beta": [0.9]}})


def _fit_synthetic():
    closes = _garch_closes(n=1500, k=2, seed=3)
    closes.iloc[700:, :] *= 0.7  # one big joint jump, kept in the residuals
    return F.fit_market(closes, ["A0", "A1"], stress="quantile"), closes


def test_residuals_are_the_standardized_returns(tmp_path):
    fit, closes = _fit_synthetic()
    r = np.diff(np.log(closes.to_numpy()), axis=0)
    names = ["X", "Y"]
    info = F.write_residuals(tmp_path / "f.residuals.npz", fit, names)
    got = F.read_residuals(tmp_path / "f.residuals.npz")
    assert got["assets"] == names and got["symbols"] == ["A0", "A1"] and got["bar_seconds"] == 3600.0
    assert got["start"] == int(closes.index[0]) and got["end"] == int(closes.index[-1]) + 3600
    assert info["rows"] == len(r) and not info["truncated"]
    z = got["residuals"]
    for i in range(2):  # the window's standardised returns, by hand from the fit's own recursion
        jf = F.fit_jumps(r[:, i], 8.0)
        x = r[:, i] - r[~jf.mask, i].mean()
        v = float(np.mean(x[~jf.mask] ** 2))
        g = F.fit_garch(r[:, i], var=v, exclude=jf.mask)
        want = x / np.sqrt(g.conditional_var)
        np.testing.assert_allclose(z[:, i], want, rtol=1e-12)
        for q in (0.001, 0.01, 0.5, 0.99, 0.999):
            assert np.quantile(z[:, i], q) == pytest.approx(np.quantile(want, q), rel=1e-12)
        assert z[:, i].std() == pytest.approx(want.std(), rel=1e-12)
    assert z[699].min() < -20  # the jump bar is in the sample
    small = F.write_residuals(tmp_path / "s.npz", fit, names, max_rows=100)
    assert small["rows"] == 100 and small["truncated"]
    np.testing.assert_array_equal(F.read_residuals(tmp_path / "s.npz")["residuals"], z[-100:])
    with pytest.raises(ValueError, match="names"):
        F.write_residuals(tmp_path / "e.npz", fit, ["X"])
    with pytest.raises(ValueError, match="no such residual file"):
        F.read_residuals(tmp_path / "missing.npz")


def test_rebase_book_keeps_leverage_and_free_step_intervals():
    cfg = {"time": {"step_seconds": 60}, "oracle": {"update_every_seconds": 60},
           "liquidation": {"check_every_seconds": 300, "fee_rate": 0.005},
           "assets": [{"name": "A", "price": 50.0}, {"name": "B", "price": 3.0}],
           "book": {"accounts": [
               {"id": "x", "collateral": 1000.0, "positions": [{"asset": "A", "size": 10, "entry": 99.0},
                                                               {"asset": "B", "size": -100, "entry": 2.0}]},
               {"id": "i", "mode": "isolated", "positions": [{"asset": "B", "size": 50, "entry": 2.1,
                                                               "margin": 10.0}]}]}}
    out, ratio = F.rebase_book(cfg, {"A": 100.0, "B": 2.0})
    assert ratio == {"A": 0.5, "B": 1.5}
    x, i = out["book"]["accounts"]
    assert x["positions"][0]["entry"] == pytest.approx(49.5) and x["positions"][1]["entry"] == pytest.approx(3.0)
    lev = lambda acc, m: sum(abs(p["size"]) * p["entry"] for p in acc["positions"]) / m  # noqa: E731
    assert lev(x, x["collateral"]) == pytest.approx(lev(cfg["book"]["accounts"][0], 1000.0), rel=1e-9)
    assert i["positions"][0]["margin"] == pytest.approx(15.0) and cfg["book"]["accounts"][1]["positions"][0][
        "margin"] == 10.0
    free, removed = F.free_step_intervals(cfg)
    assert removed == ["oracle.update_every_seconds"] and "update_every_seconds" not in free["oracle"]
    assert free["liquidation"]["check_every_seconds"] == 300


def test_fit_stress_fallback_on_a_calm_window():
    closes = _garch_closes(n=1500, k=2, seed=5)
    with pytest.raises(ValueError, match="stress"):
        F.fit_market(closes, ["A0", "A1"], stress_drawdown=1.0)
    with pytest.warns(UserWarning, match="fell back"):
        q = F.fit_market(closes, ["A0", "A1"], stress_drawdown=1.0, stress_fallback="quantile")
    assert q.stress == "quantile" and "fell back" in q.stress_note
    with pytest.warns(UserWarning, match="fell back"):
        c = F.fit_market(closes, ["A0", "A1"], stress_drawdown=1.0, stress_fallback="calm")
    assert c.stress == "drawdown" and np.array_equal(c.stress_correlation, c.calm_correlation)
    np.testing.assert_array_equal(c.stress_vol_multiplier, np.ones(2))


def test_read_prices_several_files(tmp_path):
    closes = _garch_closes(n=200, k=2)
    long = closes.stack().rename("close").reset_index().rename(columns={"level_1": "symbol"})
    a, b = long.iloc[:300], long.iloc[250:]  # overlapping rows
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_csv(tmp_path / "b.csv.gz", index=False)
    got = F.read_prices([tmp_path / "a.csv", tmp_path / "b.csv.gz"])
    pd.testing.assert_frame_equal(got, F.read_prices(_write(tmp_path / "all.csv", long)), check_freq=False)
    bad = b.copy()
    bad.iloc[0, bad.columns.get_loc("close")] *= 1.01
    _write(tmp_path / "bad.csv", bad)
    with pytest.raises(ValueError, match="disagree"):
        F.read_prices([tmp_path / "a.csv", tmp_path / "bad.csv"])


def _write(path, df):
    df.to_csv(path, index=False)
    return path


@pytest.mark.skipif(not DATA.is_file(), reason="needs ../shared/data")
def test_real_data_fit_end_state_equals_the_filter():
    closes = F.read_prices(DATA)
    syms = ["BTCUSDT", "ETHUSDT"]
    fit = F.fit_market(closes, syms, start="2022-01-01", end="2022-04-01")
    var = fit.vol**2 * fit.bar_seconds / F.SECONDS_PER_YEAR
    origin = fit.end + 3600
    st = F.filter_state(closes, syms, origin, alpha=fit.garch_alpha, beta=fit.garch_beta, var=var,
                        stress_drawdown=fit.stress_drawdown, stress_halflife_bars=fit.stress_halflife_bars)
    assert st.start_weight < 1e-6 and np.all(st.variance_ratio > 0.05) and np.all(st.variance_ratio < 20)
    # the fit's own recursion over the whole window ends close to the 90-day filter (start forgotten)
    for i, s in enumerate(syms):
        r = np.log(closes.loc[(closes.index >= fit.start) & (closes.index < origin), s]).diff().dropna().to_numpy()
        h = F.garch_filter(r, fit.garch_alpha[i], fit.garch_beta[i], var[i])
        assert h[-1] / var[i] == pytest.approx(st.variance_ratio[i], rel=0.05 if st.jump_bars[i] else 1e-6)
    assert math.isfinite(fit.nu)
    # the whole 2022-03-01 state does not depend on anything at or after it
    later = closes[closes.index < origin]
    st2 = F.filter_state(later, syms, origin, alpha=fit.garch_alpha, beta=fit.garch_beta, var=var,
                         stress_drawdown=fit.stress_drawdown, stress_halflife_bars=fit.stress_halflife_bars)
    np.testing.assert_array_equal(st.variance_ratio, st2.variance_ratio)
    assert yaml.safe_load(yaml.safe_dump(F.market_state(st))) == F.market_state(st)


# --- the commands: `perpjax fit --conditional` and `perpjax filter` -----------------------------------------

SYMS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT"]


def _csvs(tmp_path, n=2400, hole=None):
    """Two overlapping long CSVs of 4 synthetic GARCH-t assets named like the default config's."""
    closes = _garch_closes(n=n, k=4, seed=11, alpha=(0.05, 0.07, 0.1, 0.12), beta=(0.9, 0.88, 0.85, 0.8),
                           var=(1e-4, 1.5e-4, 3e-4, 3e-4))
    closes.columns = SYMS
    long = closes.stack().rename("close").reset_index().rename(columns={"level_1": "symbol"})
    if hole is not None:
        long = long[long["timestamp"] != int(closes.index[hole])]
    cut = int(closes.index[n // 2])
    a = _write(tmp_path / "a.csv", long[long["timestamp"] <= cut + 24 * 3600])
    b = _write(tmp_path / "b.csv", long[long["timestamp"] >= cut])
    return closes, [str(a), str(b)]


def _main(argv, capsys):
    from perpjax.cli import main

    rc = main([str(x) for x in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_cli_fit_conditional_then_filter(tmp_path, capsys):
    from perpjax.config import build_model, load_config

    closes, files = _csvs(tmp_path)
    end = int(closes.index[1800])
    out = tmp_path / "fitted.yaml"
    rc, text, err = _main(["fit", *files, "--conditional", "--end", end, "--out", out], capsys)
    assert rc == 0, err
    assert "nu " in text and "(SE " in text and "stress correlation" in text and "calm correlation" in text
    cfg = yaml.safe_load(out.read_text())
    # moving blocks of round(n^(1/4)) bars by default (1799 rows: 7)
    assert cfg["innovations"] == {"kind": "historical", "residuals": "fitted.residuals.npz", "bar_seconds": 3600.0,
                                  "block_bars": 7}
    assert "jumps" not in cfg and cfg["garch"]["fitted_seconds"] == 3600.0
    assert cfg["market_state"]["time"] == pd.Timestamp(end, unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    res = F.read_residuals(tmp_path / "fitted.residuals.npz")
    assert res["assets"] == ["BTC", "ETH", "SOL", "DOGE"] and res["symbols"] == SYMS and res["end"] == end
    assert len(res["residuals"]) == 1799  # all returns of the window, jump bars included
    jumps = np.load(tmp_path / "fitted.residuals.npz")["jumps"]  # the fit's jump bars, fed to the GARCH as such
    assert jumps.shape == res["residuals"].shape and jumps.dtype == bool
    g = F.garch_from_config(cfg)
    st = F.filter_state(closes, SYMS, end, alpha=g["alpha"], beta=g["beta"], var=g["var"],
                        stress_drawdown=g["stress_drawdown"], stress_halflife_bars=g["stress_halflife_bars"])
    assert cfg["market_state"] == F.market_state(st)
    # venue-ready: runs at another step; the book sits at the fitted prices with the base leverage
    assert "update_every_seconds" not in cfg["oracle"] and "check_every_seconds" not in cfg["liquidation"]
    build_model(load_config(out, ["time.step_seconds=3600", "time.horizon_seconds=7200"]))
    base = load_config()
    whale = cfg["book"]["accounts"][0]
    base_whale = base["book"]["accounts"][0]
    q = cfg["assets"][0]["price"] / base["assets"][0]["price"]
    assert whale["positions"][0]["entry"] == pytest.approx(base_whale["positions"][0]["entry"] * q, rel=1e-9)
    assert whale["collateral"] == pytest.approx(float(base_whale["collateral"]) * q, rel=1e-9)  # "1.9e6": a str
    assert "book rebased" in out.read_text()

    # filter at the fit's own origin gives the fit's state; at a later one only market_state changes
    same = tmp_path / "same.yaml"
    assert _main(["filter", out, *files, "--end", end, "--out", same], capsys)[0] == 0
    assert yaml.safe_load(same.read_text()) == cfg
    later = int(closes.index[2200])
    f2 = tmp_path / "f2.yaml"
    # the new prices would put the fitted (synthetic) book below maintenance: refused, nothing written
    rc, text, err = _main(["filter", out, *files, "--end", later, "--out", f2], capsys)
    assert rc == 2 and "start below maintenance" in err and "--rebase-book" in err and not f2.exists(), err
    rc, text, err = _main(["filter", out, *files, "--end", later, "--out", f2, "--rebase-book"], capsys)
    assert rc == 0, err
    new = yaml.safe_load(f2.read_text())
    assert {k: v for k, v in new.items() if k not in ("market_state", "assets", "book")} == {
        k: v for k, v in cfg.items() if k not in ("market_state", "assets", "book")}
    # the paths start at the last close before the origin; every other asset field as fitted
    last = closes.loc[closes.index < later, SYMS].iloc[-1].to_numpy()
    assert [x["price"] for x in new["assets"]] == last.tolist()
    assert [{**x, "price": 0} for x in new["assets"]] == [{**x, "price": 0} for x in cfg["assets"]]
    q = new["assets"][0]["price"] / cfg["assets"][0]["price"]  # the book moved with BTC, leverage kept
    whale, whale0 = new["book"]["accounts"][0], cfg["book"]["accounts"][0]
    assert whale["positions"][0]["entry"] == pytest.approx(whale0["positions"][0]["entry"] * q, rel=1e-9)
    assert whale["positions"][0]["size"] == whale0["positions"][0]["size"]
    m, labels, _ = build_model(load_config(f2))
    from perpjax.solvency import below_maintenance
    assert {u for u, _, _ in below_maintenance(m, labels)} <= {u for u, _, _ in below_maintenance(
        *build_model(load_config(out))[:2])}  # runs wherever the fitted config ran
    kept = tmp_path / "kept.yaml"
    assert _main(["filter", out, *files, "--end", later, "--out", kept, "--keep-prices"], capsys)[0] == 0
    assert yaml.safe_load(kept.read_text())["assets"] == cfg["assets"]
    st2 = F.filter_state(closes, SYMS, later, alpha=g["alpha"], beta=g["beta"], var=g["var"],
                         stress_drawdown=g["stress_drawdown"], stress_halflife_bars=g["stress_halflife_bars"])
    assert new["market_state"] == F.market_state(st2)
    # a comment inside the assets list: the block is still replaced whole (read back and checked)
    commented = tmp_path / "commented.yaml"
    commented.write_text(out.read_text().replace("\n- name: ETH", "\n# the alts\n- name: ETH", 1))
    assert "# the alts" in commented.read_text()
    assert _main(["filter", commented, *files, "--end", later, "--out", tmp_path / "c2.yaml", "--rebase-book"],
                 capsys)[0] == 0
    assert [x["name"] for x in yaml.safe_load((tmp_path / "c2.yaml").read_text())["assets"]] == [
        x["name"] for x in cfg["assets"]]
    # in place, twice: one note, one block
    assert _main(["filter", f2, *files, "--end", int(closes.index[2300]), "--rebase-book"], capsys)[0] == 0
    assert f2.read_text().count("market_state:") == 1 and f2.read_text().count("filtered by `perpjax filter`") == 1
    # to another directory: the residual path follows
    (tmp_path / "sub").mkdir()
    f3 = tmp_path / "sub" / "f3.yaml"
    assert _main(["filter", out, *files, "--end", later, "--out", f3, "--rebase-book"], capsys)[0] == 0
    assert yaml.safe_load(f3.read_text())["innovations"]["residuals"] == "../fitted.residuals.npz"
    build_model(load_config(f3))


def test_cli_fit_conditional_block_bootstrap(tmp_path, capsys):
    """``--block-bars N`` writes ``innovations.block_bars: N`` (the config builds, jumps still dropped);
    N < 1 is an input error and nothing is written."""
    from perpjax.config import build_model, load_config

    closes, files = _csvs(tmp_path)
    end = int(closes.index[1800])
    out = tmp_path / "blocks.yaml"
    rc, _, err = _main(["fit", *files, "--conditional", "--block-bars", 24, "--end", end, "--out", out], capsys)
    assert rc == 0, err
    cfg = yaml.safe_load(out.read_text())
    assert cfg["innovations"]["block_bars"] == 24 and "jumps" not in cfg
    assert build_model(load_config(out))[0].prices.block_bars == 24
    bad = tmp_path / "bad.yaml"
    with pytest.raises(SystemExit) as e:  # argparse: exit 2, the flag named
        _main(["fit", *files, "--conditional", "--block-bars", 0, "--end", end, "--out", bad], capsys)
    assert e.value.code == 2 and "--block-bars" in capsys.readouterr().err
    iid = tmp_path / "iid.yaml"
    assert _main(["fit", *files, "--conditional", "--block-bars", 1, "--end", end, "--out", iid], capsys)[0] == 0
    assert "block_bars" not in yaml.safe_load(iid.read_text())["innovations"]
    assert not bad.exists() and not list(tmp_path.glob("bad*"))


def test_cli_filter_errors_write_nothing(tmp_path, capsys):
    closes, files = _csvs(tmp_path)
    end = int(closes.index[1800])
    out = tmp_path / "fitted.yaml"
    assert _main(["fit", *files, "--conditional", "--end", end, "--out", out], capsys)[0] == 0
    new = tmp_path / "new.yaml"

    def fails(argv, match):
        rc, _, err = _main(["filter", *argv, "--out", new], capsys)
        assert rc == 2 and match in err, err
        assert not new.exists()

    fails([out, *files, "--end", int(closes.index[1500])], "before the end of the fit window")
    fails([out, *files, "--end", int(closes.index[2300]), "--lookback-days", "1"], "too few bars")
    (tmp_path / "h").mkdir()
    _, holed = _csvs(tmp_path / "h", hole=2100)
    fails([out, *holed, "--end", int(closes.index[2300])], "missing bar")
    fails([out, *files, "--end", int(closes.index[-1]) + 7200], "before the origin")
    fails([out, *files, "--end", int(closes.index[2300]) + 1800], "bar boundary")
    fails([out, *files, "--end", "next tuesday"], "--end")
    fails([out, *files, "--end", int(closes.index[2300]), "--symbols", "BTCUSDT,ETHUSDT"], "--symbols")
    three = tmp_path / "three.yaml"
    cfg = yaml.safe_load(out.read_text())
    cfg["market_state"]["variance_ratio"] = cfg["market_state"]["variance_ratio"][:3]
    three.write_text(yaml.safe_dump(cfg))
    fails([three, *files, "--end", int(closes.index[2300])], "different asset set")
    nogarch = tmp_path / "nogarch.yaml"
    cfg = yaml.safe_load(out.read_text())
    del cfg["garch"], cfg["market_state"]
    nogarch.write_text(yaml.safe_dump(cfg))
    fails([nogarch, *files, "--end", int(closes.index[2300])], "garch")


def test_cli_fit_calm_window_falls_back(tmp_path, capsys):
    _, files = _csvs(tmp_path, n=1200)
    out = tmp_path / "calm.yaml"
    rc, text, err = _main(["fit", *files, "--stress-drawdown", "1.0", "--out", out], capsys)
    assert rc == 0 and "warning" in err and "fell back" in err and "stress: quantile" in text
    rc, _, err = _main(["fit", *files, "--stress-drawdown", "1.0", "--stress-fallback", "error", "--out",
                        tmp_path / "x.yaml"], capsys)
    assert rc == 2 and "stress" in err and not (tmp_path / "x.yaml").exists()
    bad = _write(tmp_path / "bad.csv", pd.read_csv(files[1]).assign(close=lambda d: d["close"] * 1.001))
    rc, _, err = _main(["fit", files[0], bad, "--out", tmp_path / "y.yaml"], capsys)
    assert rc == 2 and "disagree" in err
