"""``perpjax report`` and ``perpjax.report.load``: the risk committee's HTML report of a run (with sample
paths), a cascade run, a ``--compare-modes`` directory, a backtest, a calibration, a sweep and a
sensitivities run; bad input; and the report opened in headless Chromium."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perpjax.cli import main
from perpjax.report import NotARunError, load, render

PATHS = 200


def _simulate(out: Path, *args: str) -> Path:
    rc = main(["simulate", "--paths", str(PATHS), "--no-progress", "--out", str(out), *args])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return _simulate(tmp_path_factory.mktemp("run") / "r", "--set", "liquidation.fairness=true",
                     "--set", "liquidation.adl=true", "--set", "time.horizon_seconds=21600")


@pytest.fixture(scope="module")
def cascade_dir(tmp_path_factory):
    return _simulate(tmp_path_factory.mktemp("casc") / "c", "--scenario", "crash_20pct_1h",
                     "--set", "time.horizon_seconds=14400")


def _report(d: Path, *extra: str) -> str:
    assert main(["report", str(d), *extra]) == 0
    out = Path(extra[extra.index("--out") + 1]) if "--out" in extra else d / "report.html"
    return out.read_text()


def _self_contained(text: str) -> None:
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"https?://", text), "an external URL in the report"
    assert "<link" not in text and "@import" not in text and "url(" not in text
    srcs = re.findall(r"""src=['"]([^'"]*)['"]""", text)
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    assert len(srcs) == len(re.findall(r"<img ", text))


def _section_ids(text: str) -> set:
    return set(re.findall(r"<section id='([a-z]+)'>", text))


# ------------------------------------------------------------------------------------------- loading

def test_load_run(run_dir):
    r = load(run_dir)
    assert r.kind == "run"
    assert set(r.summary) >= {"paths", "bad_debt_es_99", "p_any_liquidation"}
    assert r.summary_frame.loc["paths", "value"] == PATHS
    assert isinstance(r.accounts, pd.DataFrame) and "p_liquidation_lo95" in r.accounts
    assert isinstance(r.tiers, pd.DataFrame) and "tier" in r.tiers
    # per-path values from the Parquet files (when the run stored them), one row per path, in path order
    if list((run_dir / "paths").glob("*.parquet")):  # Result.paths's names (tests/test_runs.py: and values)
        assert isinstance(r.paths, pd.DataFrame) and len(r.paths) == PATHS
        assert r.paths.index.name == "path" and (np.diff(r.paths.index.to_numpy()) > 0).all()
        np.testing.assert_allclose(r.paths["bad_debt"].mean(), r.summary["bad_debt_mean"], rtol=1e-6, atol=1e-6)
    else:
        assert r.paths is None
    cfg = json.loads((run_dir / "manifest.json").read_text())["config"]
    assert r.config_sha256 == hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()
    run_json = run_dir / "paths" / "_run.json"
    if run_json.is_file():  # the checkpoint fingerprint is the config less seed and paths
        assert r.model_sha256 == json.loads(run_json.read_text())["config_sha256"]
    assert load(run_dir, paths=False).paths is None


def test_load_without_optional_files(run_dir, tmp_path):
    d = tmp_path / "bare"
    d.mkdir()
    for f in ("summary.json", "manifest.json"):
        shutil.copy(run_dir / f, d / f)
    r = load(d)
    assert r.kind == "run" and r.accounts is None and r.tiers is None and r.paths is None
    text = render(r)
    assert "no per-path Parquet files" in text
    assert {"run", "tail"} <= _section_ids(text) and "book" not in _section_ids(text)
    _self_contained(text)


def test_large_book_is_capped(run_dir, tmp_path):
    """A generated book of hundreds of units: the chart and table show the most likely to be liquidated."""
    from perpjax.report.html import MAX_UNITS

    d = tmp_path / "big"
    shutil.copytree(run_dir, d, ignore=shutil.ignore_patterns("paths", "report.html"))
    acc = pd.read_csv(d / "accounts.csv")
    acc = pd.concat([acc] * 30, ignore_index=True)
    acc["unit"] = [f"unit_{i:04d}" for i in range(len(acc))]
    acc.to_csv(d / "accounts.csv", index=False)
    text = render(load(d))
    assert f"{len(acc):,} margin units" in text
    top = acc.sort_values("p_liquidation", ascending=False, kind="stable")["unit"]
    assert top.iloc[0] in text and top.iloc[-1] not in text
    assert sum(f">{u}<" in text for u in acc["unit"]) == MAX_UNITS


# ------------------------------------------------------------------------------------------- reports

def test_report_of_a_run(run_dir):
    from perpjax.report.sections.sample_paths import pick_paths

    text = _report(run_dir)
    _self_contained(text)
    r = load(run_dir)
    # no cascade section without cascade metrics; sample paths when the per-path table is there
    assert _section_ids(text) == {"run", "tail", "book"} | ({"samplepaths"} if r.paths is not None else set())
    for needle in ("config sha256", r.config_sha256, "perpjax version", "wall time", "liquidation mode",
                   "insurance fund", "premium_ema", "VaR 99.9 %", "ES 99 %", "P(any liquidation",
                   "P(insurance fund depleted)", "P(auto-deleveraging)", "liquidated notional p99",
                   "over-liquidated notional", "mark-lag artefact share", "Per maintenance tier",
                   "95 % Wilson", "± is one Monte Carlo standard error"):
        assert needle in text, needle
    # the tail table carries the summary's numbers with their standard errors, or says why there is none
    s = r.summary
    assert f"{s['trader_loss_es_95']:,.0f} <span class='pm'>± {s['trader_loss_es_95_se']:,.0f}</span>" in text
    assert "<title>perpjax risk report</title>" in text
    # the histograms (bad debt, trader loss, liquidated notional; the fund drawdown when it is not all zeros),
    # the dot-and-whisker chart, and one figure per sample path when the per-path Parquet files are there
    picks = pick_paths(r.paths) if r.paths is not None else []
    hists = 3 + bool((r.paths["insurance_fund_min_change"] < 0).any()) if r.paths is not None else 0
    assert len(re.findall(r"<img ", text)) == 1 + hists + len(picks)
    for i, why in picks:  # each picked path drawn, and re-simulated to the stored row (no mismatch note)
        assert f"path {i:,} ({why})" in text
    assert "differs from the stored row" not in text
    if r.paths is not None and (r.paths["liquidation_events"] > 0).any():
        assert "Liquidations on this path" in text
    for unit in r.accounts["unit"]:  # an isolated unit may break after its colon
        assert unit.replace(":", ":<wbr>") in text
    for tier in r.tiers["tier"]:
        assert tier in text
    assert "USD" in text and "probability" in text and "hours" in text


def test_no_standard_error_from_too_few_tail_paths(run_dir):
    """200 paths: 2 lie beyond the 99 % VaR and none beyond the 99.9 % one. Their ES / VaR SEs are null in
    summary.json with the count beside them, and every table says "± n/a (k paths beyond)" (the report and
    the CLI's shared formatter), never "± 0.00"; the 95 % ones (10 paths beyond) keep their SEs."""
    from perpjax.metrics import MIN_TAIL_PATHS
    from perpjax.report.format import pm_suffix

    s = json.loads((run_dir / "summary.json").read_text())
    assert s["se_min_tail_paths"] == MIN_TAIL_PATHS == 10
    text = (run_dir / "report.html").read_text() if (run_dir / "report.html").exists() else _report(run_dir)
    for name in ("bad_debt", "trader_loss", "insurance_fund_drawdown"):
        for lv in ("95", "99", "99_9"):
            k = s[f"{name}_paths_beyond_{lv}"]
            assert isinstance(k, int) and k <= PATHS * {"95": 0.05, "99": 0.01, "99_9": 0.001}[lv]
            for kind in ("var", "es"):
                key = f"{name}_{kind}_{lv}"
                if k < MIN_TAIL_PATHS:
                    assert s[f"{key}_se"] is None, key
                    why = f"{k:,} path{'' if k == 1 else 's'} beyond"
                    assert pm_suffix(s, key, str) == f" ± n/a ({why})"
                    assert f"<span class='pm'>± n/a ({why})</span>" in text
                else:
                    assert s[f"{key}_se"] >= 0 and pm_suffix(s, key, str) == f" ± {s[f'{key}_se']}"
    assert s["trader_loss_paths_beyond_99_9"] == 0 and s["trader_loss_es_99_9_se"] is None
    assert s["trader_loss_paths_beyond_95"] >= MIN_TAIL_PATHS and s["trader_loss_es_95_se"] > 0
    # probabilities: P(any liquidation) = 1 on every path leaves no path without the event
    assert s["p_any_liquidation"] == 1.0 and s["p_any_liquidation_se"] is None
    assert pm_suffix(s, "p_any_liquidation", str) == f" ± n/a ({PATHS} of {PATHS} paths)"
    assert pm_suffix(s, "paths", str) == ""


def test_report_of_a_cascade_run(cascade_dir, tmp_path):
    out = tmp_path / "sub" / "casc.html"
    text = _report(cascade_dir, "--out", str(out), "--title", "Crash drill", "--sample-paths", "0")
    assert not (cascade_dir / "report.html").exists()
    _self_contained(text)
    assert _section_ids(text) == {"run", "tail", "book", "cascades"}
    for needle in ("<title>Crash drill</title>", "crash_20pct_1h", "Liquidation cascades", "amplification",
                   "rounds p99", "cascade episode sizes", "tiers starting cascades", "P(starts cascade)"):
        assert needle in text, needle


def _backtest_dir(d: Path) -> Path:
    from perpjax.backtest import report
    from perpjax.backtest.run import Forecasts

    rng = np.random.default_rng(0)
    liq, var = [], []
    for o in range(40):
        t = 1.6e9 + 86400 * o
        for side in ("long", "short"):
            for lev in (10, 50):
                p = 0.004 * lev
                liq.append({"origin": t, "case": f"BTC-{side}-{lev}x", "asset": "BTC", "side": side, "leverage": lev,
                            "predicted": p, "realised": bool(rng.uniform() < p)})
            for level in (0.95, 0.99):
                v, loss = (0.05 if level == 0.95 else 0.08), rng.normal(0, 0.04 if side == "long" else 0.02)
                var.append({"origin": t, "asset": "BTC", "side": side, "level": level, "var": v, "es": 1.3 * v,
                            "realised_loss": loss, "exceeded": bool(loss > v)})
    manifest = {"perpjax_version": "0.1.0", "seed": 0, "wall_seconds": 1.0,
                "config": {"assets": [{"name": "BTC", "price": 95000.0, "vol": 0.6, "depth_usd": 3e6}]},
                "backtest": {"paths": 1000, "start": "2021-01-01", "end": "2021-02-10", "horizon": 86400.0}}
    report.write(d, Forecasts(pd.DataFrame(liq), pd.DataFrame(var), 1.0, 0.5), manifest)
    return d


def test_report_of_a_backtest(tmp_path):
    d = _backtest_dir(tmp_path / "bt")
    r = load(d)
    assert r.kind == "backtest" and {"liquidation_cases", "var_series"} <= set(r.backtest)
    text = _report(d)
    _self_contained(text)
    assert _section_ids(text) == {"run", "backtest"}
    assert "reliability diagram" in text and "Basel traffic light" in text
    zones = set(re.findall(r"class='zone-([a-z]+)'", text))
    assert zones and zones <= {"green", "yellow", "red"}
    for case in r.backtest["liquidation_cases"]["case"]:
        assert case in text


def test_report_of_a_mode_comparison(run_dir, tmp_path):
    """A --compare-modes directory: compare.csv and one run folder per mode (built here from one run)."""
    d = tmp_path / "cmp"
    for m in ("full", "buffer"):
        shutil.copytree(run_dir, d / m, ignore=shutil.ignore_patterns("report.html"))
    keys = ["bad_debt_mean", "bad_debt_es_99", "p_any_liquidation", "slippage_mean"]
    s = load(run_dir, paths=False).summary
    table = pd.DataFrame({"full": [s[k] for k in keys], "full_se": [1.0] * 4, "buffer": [s[k] * 0.5 for k in keys],
                          "buffer_se": [1.0] * 4, "buffer_minus_full": [-s[k] * 0.5 for k in keys],
                          "buffer_minus_full_se": [0.5] * 4}, index=keys)
    table.to_csv(d / "compare.csv")
    r = load(d)
    assert r.kind == "compare" and list(r.modes) == ["full", "buffer"]
    text = _report(d)
    _self_contained(text)
    assert {"run", "compare", "tail", "book"} <= _section_ids(text)
    assert "Liquidation modes side by side" in text and "buffer − full" in text
    assert "mode comparison" in text


# ------------------------------------------------------------------ calibration, sweep, sensitivities

def _calibration_files(d: Path) -> dict:
    """A calibration directory in ``perpjax.calibrate.job``'s format (ladders from the default config, BTC's
    maintenance rates cut by 10 %; a short history; metrics.json with the constraint)."""
    from perpjax.calibrate.job import ladder_table
    from perpjax.config import build_model, load_config

    model, _, resolved = build_model(load_config())
    before = ladder_table(model.ladder, resolved["asset_names"])
    after = before.copy()
    btc = after["asset"] == "BTC"
    after.loc[btc, "mmr"] *= 0.9
    hist = pd.DataFrame({"iteration": range(5), "objective": [1.0, 0.8, 0.7, 0.65, 0.64], "grad_norm": 0.1,
                         **{f"mmr_BTC_{k + 1}": np.linspace(m, 0.9 * m, 5)
                            for k, m in enumerate(before.loc[btc, "mmr"])}})
    # the job's keys (calibrate.job), with values as wide as a real book's: the before / after table must fit
    keys = ["maintenance_margin_t0", "p_any_liquidation", "expected_liquidations", "bad_debt_mean", "bad_debt_es_99",
            "p_bad_debt", "insurance_fund_drawdown_es_99", "p_insurance_fund_depleted", "liquidated_notional_mean",
            "slippage_mean", "fees_mean", "trader_loss_mean"]
    vals = [12_345_678.9, 0.5, 3.25, 120.0, 101_868.8, 0.031, 92_983.0, 0.0, 18_765_432.1, 234_567.8, 20_015.1,
            -1_234_567.8]
    metrics = {"before": dict(zip(keys, vals, strict=True)),
               "after": {k: v * 0.9 for k, v in zip(keys, vals, strict=True)},
               "eval_paths": 256,
               "eval_seed": 1000010, "iterations": 5, "wall_seconds": 3.0,
               "constraint": {"exceed_budget_usd": 1e4, "limit": 0.05, "before": 0.08, "after": 0.04,
                              "met_after": True}}
    d.mkdir(parents=True, exist_ok=True)
    after.to_csv(d / "ladder.csv", index=False)
    before.to_csv(d / "ladder_before.csv", index=False)
    hist.to_csv(d / "history.csv", index=False)
    (d / "metrics.json").write_text(json.dumps(metrics))
    return {"ladder": after, "history": hist.to_dict("records"), "metrics": metrics}


def test_report_of_a_calibration(tmp_path):
    d = tmp_path / "cal"
    _calibration_files(d)  # no manifest.json: an older or API-written calibration directory
    r = load(d)
    assert r.kind == "calibrate" and {"ladder", "ladder_before", "history"} <= set(r.tables)
    text = _report(d)
    _self_contained(text)
    assert _section_ids(text) == {"run", "calibration"}
    for needle in ("Ladder calibration", "maintenance ladder before and after", "calibration history",
                   "constraint, after", "P(any liquidation)", "MMR before", "MMR after"):
        assert needle in text, needle
    assert ">BTC<" in text and ">ETH<" not in text  # only the tuned asset's ladder is drawn and tabulated
    assert len(re.findall(r"<img ", text)) == 2


def test_calibrate_report_flag_writes_manifest_and_report(tmp_path, monkeypatch, capsys):
    """``perpjax calibrate --report``: the job's files (here written by a stand-in for the optimiser), then
    manifest.json (kind calibrate, the resolved config) and report.html."""
    import perpjax.calibrate

    out = tmp_path / "cal"
    monkeypatch.setattr(perpjax.calibrate, "run_calibration", lambda cfg, out_dir, resume, **kw: _calibration_files(
        Path(out_dir)))
    assert main(["calibrate", "--out", str(out), "--report", "--set", "calibration.paths=64"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["kind"] == "calibrate" and m["config"]["calibration"]["paths"] == 64
    text = (out / "report.html").read_text()
    assert f"wrote {out / 'report.html'}" in capsys.readouterr().out
    assert "ladder calibration" in text and "Market" in text and ">64<" in text  # calibration paths in the header


def _sweep_dir(d: Path, *, drop: str | None = None) -> Path:
    """sweep.csv in the sweep contract: one row per (set, metric); two varied keys (2 x 3 sets)."""
    rows = []
    sets = [(f, v) for f in (0.005, 0.01) for v in (0.5, 0.62, 0.8)]
    for s, (fee, vol) in enumerate(sets):
        for metric, base, se in (("bad_debt_mean", 100.0, 5.0), ("p_any_liquidation", 0.3, 0.01)):
            value = base * (vol / 0.62) ** 2 * (1 + fee)
            rows.append({"set": s, "liquidation.fee_rate": fee, "assets.0.vol": vol, "metric": metric,
                         "value": value, "se": se, "diff_vs_base": value - base * (0.5 / 0.62) ** 2 * 1.005,
                         "diff_se": 0.0 if s == 0 else se / 3})
    t = pd.DataFrame(rows)
    d.mkdir(parents=True)
    (t.drop(columns=[drop]) if drop else t).to_csv(d / "sweep.csv", index=False)
    (d / "manifest.json").write_text(json.dumps({"kind": "sweep", "seed": 7, "perpjax_version": "0.1.0",
                                                 "config": {"paths": 1000}}))
    return d


def test_report_of_a_sweep(tmp_path):
    d = _sweep_dir(tmp_path / "sw")
    r = load(d)
    assert r.kind == "sweep" and len(r.tables["sweep"]) == 12
    text = _report(d)
    _self_contained(text)
    assert _section_ids(text) == {"run", "sweep"}
    assert "Parameter sweep" in text and "liquidation.fee_rate" in text and "assets.0.vol" in text
    assert len(re.findall(r"<img ", text)) == 2  # one plot per metric
    assert "± 1.96" in text and "Δ" in text and "<b>" in text  # a difference beyond 1.96 SE is bold


def _sensitivities_dir(d: Path) -> Path:
    """sensitivities.csv as ``perpjax sensitivities`` writes it, on 2,000 paths of a config that says 100,000:
    two metrics with charts; the fund's pathwise column zero by construction (no z); P(fund depleted) below
    both engines' resolution on every parameter (1e-12 against 0: no z, no chart)."""
    from perpjax.sensitivities.estimates import UNRESOLVED, ZERO_BY_CONSTRUCTION

    nan = np.nan
    rows = [("vol", "bad_debt_mean", "USD per unit of vol", 300.0, 20.0, 310.0, 25.0, "pathwise", ""),
            ("fee", "bad_debt_mean", "USD per unit of fee rate", -50.0, 10.0, -45.0, 12.0, "pathwise", ""),
            ("correlation", "bad_debt_mean", "USD per unit of correlation", nan, nan, 80.0, 30.0,
             "finite-difference", ""),
            ("fund", "bad_debt_mean", "USD per +1% insurance fund", 0.0, nan, 0.0, nan, ZERO_BY_CONSTRUCTION,
             "fund moves no relaxed output: its pathwise column is 0"),
            ("vol", "p_any_liquidation", "probability per unit of vol", 0.9, 0.05, 0.5, 0.05, "pathwise", ""),
            ("vol", "p_insurance_fund_depleted", "probability per unit of vol", -1.2e-12, 3e-13, 0.0, nan, "pathwise",
             UNRESOLVED),
            ("fund", "p_insurance_fund_depleted", "probability per +1% insurance fund", 4e-13, 1e-13, 0.0, nan,
             "pathwise", UNRESOLVED)]
    t = pd.DataFrame(rows, columns=["parameter", "metric", "unit", "gradient", "gradient_se", "fd", "fd_se",
                                    "method", "note"])
    t["z"] = np.where(t["note"] == "", (t["gradient"] - t["fd"]) / np.hypot(t["gradient_se"], t["fd_se"]), nan)
    t["agree"] = np.where(t["z"].notna(), t["z"].abs() <= 3, "")
    d.mkdir(parents=True)
    t[["parameter", "metric", "unit", "gradient", "gradient_se", "fd", "fd_se", "z", "agree", "method",
       "note"]].to_csv(d / "sensitivities.csv", index=False)
    (d / "manifest.json").write_text(json.dumps({"kind": "sensitivities", "seed": 7, "paths": 2000,
                                                 "config": {"paths": 100_000},
                                                 "bumps": {"vol": 0.01, "fee": 0.001, "correlation": 0.05,
                                                           "fund": 0.05}}))
    return d


def test_report_of_sensitivities(tmp_path):
    d = _sensitivities_dir(tmp_path / "sens")
    r = load(d)
    assert r.kind == "sensitivities"
    text = _report(d)
    _self_contained(text)
    assert _section_ids(text) == {"run", "sensitivities"}
    # the paths run (the manifest's), not the config's
    assert re.search(r"Monte Carlo paths</th><td>2,000<", text) and "100,000" not in text
    assert "On 2,000 Monte Carlo paths (seed 7)" in text
    assert len(re.findall(r"<img ", text)) == 2  # one tornado per metric; P(fund depleted): nothing resolved
    assert "No parameter moves p_insurance_fund_depleted" in text
    # |z| = 0.3 and 0.3 agree, 5.7 disagrees; the finite-difference-only row, the column zero by construction
    # and the rows below resolution have no z and no verdict
    assert text.count("class='zone-green'") == 2 and text.count("class='zone-red'") == 1
    assert text.count("'words'>zero by construction<") == 2  # its verdict and its method
    assert text.count("'words'>below resolution<") == 2
    assert "finite-difference" in text and "the bump the manifest states" in text


def test_tornado_rows_leave_out_what_resolves_nothing(tmp_path):
    """``charted``: a pathwise row with a z, a finite difference alone; not zero by construction, nor a row
    below resolution (their 1e-12 bars would be charted noise)."""
    from perpjax.report.sections.sensitivities import charted

    t = pd.read_csv(_sensitivities_dir(tmp_path / "s") / "sensitivities.csv")
    assert t.loc[charted(t), ["parameter", "metric"]].values.tolist() == [
        ["vol", "bad_debt_mean"], ["fee", "bad_debt_mean"], ["correlation", "bad_debt_mean"],
        ["vol", "p_any_liquidation"]]


def test_bad_sweep_or_sensitivities_tables_exit_2_and_write_nothing(tmp_path, capsys):
    d = _sweep_dir(tmp_path / "sw", drop="diff_se")
    assert main(["report", str(d)]) == 2
    err = capsys.readouterr().err
    assert "sweep.csv" in err and "diff_se" in err
    assert not (d / "report.html").exists()
    e = tmp_path / "sens"
    e.mkdir()
    (e / "manifest.json").write_text(json.dumps({"kind": "sensitivities"}))
    assert main(["report", str(e)]) == 2
    assert "without sensitivities.csv" in capsys.readouterr().err
    assert list(e.iterdir()) == [e / "manifest.json"]


def test_not_a_run_exits_2_and_writes_nothing(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "summary.json").write_text("{}")  # summary without manifest: still not a run
    out = tmp_path / "out" / "r.html"
    assert main(["report", str(empty), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(empty) in err and "not a perpjax run directory" in err
    assert not out.exists() and not (empty / "report.html").exists()
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert str(tmp_path / "missing") in capsys.readouterr().err
    with pytest.raises(NotARunError):
        load(empty)
    assert list(empty.iterdir()) == [empty / "summary.json"]


# ----------------------------------------------------------------------------------------- browser

def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chromium-headless-shell", "chrome"):
        if path := shutil.which(name):
            return path
    return None


def _fake_trace(assets: list, steps: int = 60):
    """A ``PathTrace`` stand-in: a random walk per asset and, in the first asset, fills of both sides, known
    and at the mark (every legend entry the figure can have)."""
    from types import SimpleNamespace

    rng = np.random.default_rng(1)
    price = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, (steps + 1, len(assets))), axis=0))
    seconds = np.arange(steps + 1) * 60.0
    ev = pd.DataFrame({"asset": assets[0], "seconds": [600.0, 1200.0, 1800.0, 2400.0],
                       "side": ["long", "short", "long", "short"], "fill_price": [99.0, 101.0, np.nan, np.nan],
                       "mark": [99.5, 100.5, 99.0, 101.0]})
    return SimpleNamespace(seconds=seconds, asset_names=list(assets), index=price, mark=price * 1.001, events=ev)


@pytest.mark.parametrize("n_assets", [1, 6])
def test_sample_path_title_clears_its_legend(n_assets):
    """The sample-path figure's title sits above the panels and its legend below them: the two never overlap,
    nor does either cover a panel, with one asset (a legend wider than the panel) or six (two rows)."""
    from perpjax.report import figures

    names = ["BTC", "ETH", "SOL", "DOGE", "XRP", "ADA"][:n_assets]
    fig = figures.sample_path_figure(_fake_trace(names), names, "path 12,345: worst bad debt, worst trader loss, "
                                                                 "median trader loss")
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    title, legend = fig._suptitle.get_window_extent(r), fig.legends[0].get_window_extent(r)
    assert len(fig.legends[0].get_texts()) == 6  # index, mark, two known fills, two fills at the mark
    assert not title.overlaps(legend)
    for ax in fig.axes:
        if ax.get_visible():
            box = ax.get_tightbbox(r)
            assert not box.overlaps(legend) and not box.overlaps(title), ax.get_title()
    import matplotlib.pyplot as plt

    plt.close(fig)


# Appended to a copy of a report: after load, measures every table (and figure) against its container and
# writes the result as JSON into <pre id='layout-check'>, which --dump-dom shows.
LAYOUT_JS = """
window.addEventListener('load', function () {
  var over = [];
  document.querySelectorAll('table, figure img').forEach(function (el) {
    var box = el.parentElement, r = el.getBoundingClientRect(), b = box.getBoundingClientRect();
    if (el.offsetWidth > box.clientWidth + 1 || r.right > b.right + 1) {
      var cap = el.caption ? el.caption.textContent : (el.alt || el.textContent || '');
      over.push(el.tagName + ' ' + cap.slice(0, 60) + ': ' + el.offsetWidth + ' px in ' + box.clientWidth);
    }
  });
  var pre = document.createElement('pre');
  pre.id = 'layout-check';
  pre.textContent = JSON.stringify({width: window.innerWidth, page: document.documentElement.scrollWidth,
                                    tables: document.querySelectorAll('table').length, overflow: over});
  document.body.appendChild(pre);
});
"""
WIDTHS = (1000, 1400)


def _png_size(path: Path) -> tuple:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


@pytest.mark.skipif(_chromium() is None, reason="no chromium binary on PATH (Debian: apt-get install chromium); "
                                                "the layout check needs a real browser")
def test_report_in_headless_chromium(run_dir, cascade_dir, tmp_path):
    """Open each report in headless Chromium at 1,000 and 1,400 px wide (a run with its sample paths, a cascade
    run, a backtest, a calibration, a sweep, sensitivities). From the DOM: the title is the report's own (the
    page's image check writes to <html data-images>, never to the title), every one of its N images loaded
    ("ok N": complete, naturalWidth > 0), no console message (errors, uncaught exceptions), no table or figure
    wider than its container and no page wider than the window. A screenshot at each width is a PNG of that
    width."""
    exe = _chromium()
    base = [exe, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}"]
    cal = tmp_path / "cal"
    _calibration_files(cal)
    dirs = [run_dir, cascade_dir, _backtest_dir(tmp_path / "bt"), cal, _sweep_dir(tmp_path / "sw"),
            _sensitivities_dir(tmp_path / "sens")]
    for d in dirs:
        html_path = d / "report.html"
        # the cascade run without sample paths: one re-simulation (the run's) keeps the test short
        assert main(["report", str(d), "--sample-paths", "0" if d == cascade_dir else "4"]) == 0
        text = html_path.read_text()
        n_img = len(re.findall(r"<img ", text))
        checked = d / "report_layout.html"
        checked.write_text(text.replace("</body>", f"<script>{LAYOUT_JS}</script></body>"))
        for w in WIDTHS:
            dom = subprocess.run([*base, "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
                                  f"--window-size={w},2000", "--dump-dom", checked.as_uri()],
                                 capture_output=True, text=True, timeout=120)
            assert dom.returncode == 0, dom.stderr[-2000:]
            where = f"{d.name} at {w} px"
            title = re.search(r"<title>([^<]*)</title>", dom.stdout)
            assert title and title.group(1) == "perpjax risk report", (where, title and title.group(1))
            images = re.search(r"<html[^>]* data-images=\"([^\"]*)\"", dom.stdout)
            assert images and images.group(1) == f"ok {n_img}", (where, images and images.group(1),
                                                                 dom.stderr[-2000:])
            console = [ln for ln in dom.stderr.splitlines() if ":CONSOLE" in ln]
            assert not console, (where, console)
            layout = json.loads(re.search(r"<pre id=\"layout-check\">([^<]*)</pre>", dom.stdout).group(1))
            assert layout["width"] == w and layout["page"] <= w and layout["tables"] > 0, (where, layout)
            assert layout["overflow"] == [], (where, layout["overflow"])
            shot = tmp_path / f"{d.name}_{w}.png"
            subprocess.run([*base, f"--screenshot={shot}", f"--window-size={w},3000", html_path.as_uri()],
                           capture_output=True, timeout=120, check=True)
            assert _png_size(shot) == (w, 3000) and shot.stat().st_size > 20_000, where


def test_simulate_report_flag_writes_the_report(tmp_path, capsys):
    from perpjax.cli import main

    out = tmp_path / "run"
    assert main(["simulate", "--paths", "200", "--no-progress", "--out", str(out), "--report",
                 "--set", "time.horizon_seconds=3600"]) == 0
    html = (out / "report.html").read_text()
    assert "<html" in html.lower() and "http://" not in html and "https://" not in html
    assert f"wrote {out / 'report.html'}" in capsys.readouterr().out
