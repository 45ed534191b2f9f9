"""The backtest end to end: the realised rule, the forecast config, and forecasts that come true when
the data follow the model (the coverage test then holds within its stated error)."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from perpjax.backtest.cases import Case, default_cases, position_loss
from perpjax.backtest.report import liquidation_table, var_table
from perpjax.backtest.run import run_backtest
from perpjax.cli import main
from tests.helpers import backtest_config, gbm_bars


def test_liquidation_price_is_where_equity_meets_maintenance():
    for side in ("long", "short"):
        for lev in (5, 10, 20, 50):
            c = Case("X", side, lev, 0.005)
            p0, notional = 123.0, 1000.0
            size = notional / p0 * (1 if side == "long" else -1)
            p = c.liquidation_price(p0)
            equity = notional / lev + size * (p - p0)
            assert equity == pytest.approx(0.005 * abs(size) * p, rel=1e-12)
    # Binance's isolated one-way formula with one bracket (cum = 0):
    # LP = (WB - size * entry) / (|size| * MMR - size), WB = notional / leverage
    c, p0 = Case("X", "long", 20, 0.004), 95_000.0
    size = 2.0
    assert c.liquidation_price(p0) == pytest.approx((size * p0 / 20 - size * p0) / (size * 0.004 - size), rel=1e-12)


def test_realised_rule_and_losses():
    c = Case("X", "long", 10, 0.005)
    lp = c.liquidation_price(100.0)
    assert c.liquidated(100.0, highs=[101, 102], lows=[99, lp])
    assert not c.liquidated(100.0, highs=[101, 102], lows=[99, lp + 1e-9])
    s = Case("X", "short", 10, 0.005)
    assert s.liquidated(100.0, highs=[s.liquidation_price(100.0)], lows=[90])
    np.testing.assert_allclose(position_loss("long", math.log(0.9)), 0.1)
    np.testing.assert_allclose(position_loss("short", math.log(0.9)), -0.1)
    assert len(default_cases(["A", "B", "C", "D"])) == 24
    with pytest.raises(ValueError, match="mmr"):
        Case("X", "long", 50, 0.03)


@pytest.mark.slow
def test_forecasts_come_true_when_the_data_follow_the_model(tmp_path):
    """Bars drawn from the model itself: over 200 daily origins the realised count of 20x-long
    liquidations (bar lows through the liquidation price) is the Poisson-binomial count of the
    forecasts, within 3 of its standard deviations (plus the forecasts' own Monte Carlo error)."""
    vol = 0.8
    gbm_bars(tmp_path / "bars.csv", vol, days=202)
    cases = [Case("X", "long", 20, 0.005), Case("X", "short", 20, 0.005)]
    f = run_backtest(backtest_config(vol), tmp_path / "bars.csv", {"X": "XUSDT"}, start="2021-01-02", end="2021-07-21",
                     paths=4000, cases=cases)
    lt = liquidation_table(f.liquidations)
    for row in lt.itertuples():
        p = f.liquidations.loc[f.liquidations.case == row.case, "predicted"].to_numpy()
        sd = math.sqrt(np.sum(p * (1 - p)))
        mc = math.sqrt(np.sum(p * (1 - p) / 4000))  # the forecasts' Monte Carlo SE, summed over origins
        assert abs(row.realised - row.expected) < 3 * math.hypot(sd, len(p) * mc), row
        assert 0.15 < row.mean_predicted < 0.45  # the textbook first-passage probability ~0.28
    vt = var_table(f.var)
    assert set(vt["zone"]) <= {"green", "yellow"} and len(vt) == 2


def test_backtest_command_writes_tables_and_plots(tmp_path, capsys):
    gbm_bars(tmp_path / "bars.csv", 0.8, days=8, sub=30)
    import yaml

    (tmp_path / "m.yaml").write_text(yaml.safe_dump(backtest_config(0.8)))
    out = tmp_path / "bt"
    code = main(["backtest", str(tmp_path / "m.yaml"), "--data", str(tmp_path / "bars.csv"), "--start", "2021-01-02",
                 "--end", "2021-01-06", "--paths", "500", "--leverages", "20,50", "--out", str(out), "--no-progress",
                 "--report"])
    assert code == 0, capsys.readouterr().err
    for name in ("liquidation_cases.csv", "var_series.csv", "liquidation_forecasts.csv", "var_forecasts.csv",
                 "summary.json", "manifest.json", "reliability.png", "report.html"):
        assert (out / name).exists(), name
    assert len(pd.read_csv(out / "liquidation_forecasts.csv")) == 4 * 4
    m = json.loads((out / "manifest.json").read_text())  # what the run spent compiling (one kernel for 4 origins)
    assert m["compiles"] >= 1 and m["compile_seconds"] > 0 and "compile_cache_hits" in m
    assert main(["backtest", str(tmp_path / "m.yaml"), "--data", str(tmp_path / "bars.csv"), "--start", "2021-01-02",
                 "--end", "2021-01-06", "--symbols", "A,B", "--out", str(tmp_path / "x")]) == 2
    assert "--symbols" in capsys.readouterr().err


def test_refit_every_k_origins_reestimates_on_the_trailing_window(tmp_path, capsys):
    """--refit-every: the market is re-fitted on the window before every k-th origin (data before the
    origin only); the fitted vol follows the bars (here a GBM whose vol doubles half-way)."""
    import yaml

    gbm_bars(tmp_path / "a.csv", 0.4, days=30, sub=6, seed=1)
    gbm_bars(tmp_path / "b.csv", 1.6, days=30, sub=6, seed=2, start="2021-01-31")
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    b[["open", "high", "low", "close"]] *= a["close"].iloc[-1] / b["open"].iloc[0]
    pd.concat([a, b]).to_csv(tmp_path / "bars.csv", index=False)
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(backtest_config(0.4)))
    out = tmp_path / "bt"
    code = main(["backtest", str(tmp_path / "m.yaml"), "--data", str(tmp_path / "bars.csv"), "--start", "2021-01-25",
                 "--end", "2021-02-27", "--paths", "400", "--leverages", "20", "--refit-every", "16",
                 "--fit-window-days", "20", "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    f = pd.read_csv(out / "liquidation_forecasts.csv")
    p = f[f.case == "X_long_20x"].sort_values("origin")["predicted"].to_numpy()
    assert len(p) == 33
    # origins 0-15 use the fit on the calm window, 16-31 one with 7 high-vol days, 32 one with 20
    assert p[:16].mean() < p[16:32].mean() < p[32]
