"""``perpjax report`` and ``perpjax.report.load``: the risk committee's HTML report of a run, a cascade run,
a ``--compare-modes`` directory and a backtest; bad input; and the report opened in headless Chromium."""

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
    if list((run_dir / "paths").glob("*.parquet")):
        assert isinstance(r.paths, pd.DataFrame) and len(r.paths) == PATHS
        assert (np.diff(r.paths["path"].to_numpy()) > 0).all()
        np.testing.assert_allclose(r.paths["path_bad_debt"].mean(), r.summary["bad_debt_mean"], rtol=1e-6, atol=1e-6)
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
    text = _report(run_dir)
    _self_contained(text)
    assert _section_ids(text) == {"run", "tail", "book"}  # no cascade section without cascade metrics
    r = load(run_dir)
    for needle in ("config sha256", r.config_sha256, "perpjax version", "wall time", "liquidation mode",
                   "insurance fund", "premium_ema", "VaR 99.9 %", "ES 99 %", "P(any liquidation",
                   "P(insurance fund depleted)", "P(auto-deleveraging)", "liquidated notional p99",
                   "over-liquidated notional", "mark-lag artefact share", "Per maintenance tier",
                   "95 % Wilson", "± is one Monte Carlo standard error"):
        assert needle in text, needle
    # the tail table carries the summary's numbers with their standard errors
    s = r.summary
    assert f"{s['trader_loss_es_99']:,.0f} <span class='pm'>± {s['trader_loss_es_99_se']:,.0f}</span>" in text
    # the dot-and-whisker chart, and histograms (bad debt, trader loss, fund drawdown, liquidated notional)
    # when the per-path Parquet files are there
    assert len(re.findall(r"<img ", text)) == (5 if r.paths is not None else 1)
    for unit in r.accounts["unit"]:
        assert unit in text
    for tier in r.tiers["tier"]:
        assert tier in text
    assert "USD" in text and "probability" in text and "hours" in text


def test_report_of_a_cascade_run(cascade_dir, tmp_path):
    out = tmp_path / "sub" / "casc.html"
    text = _report(cascade_dir, "--out", str(out), "--title", "Crash drill")
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


@pytest.mark.skipif(_chromium() is None, reason="no chromium binary on PATH (apt-get install chromium); "
                                                "the browser check needs a real browser")
def test_report_in_headless_chromium(run_dir, cascade_dir, tmp_path):
    """Open each report in headless Chromium: the page's own script sets the title to "ok N" once every
    one of its N images has loaded (complete, naturalWidth > 0); no console message (errors, uncaught
    exceptions) may be logged; a screenshot is taken."""
    exe = _chromium()
    base = [exe, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}"]
    for d in (run_dir, cascade_dir, _backtest_dir(tmp_path / "bt")):
        html_path = d / "report.html"
        assert main(["report", str(d)]) == 0
        n_img = len(re.findall(r"<img ", html_path.read_text()))
        url = html_path.resolve().as_uri()
        dom = subprocess.run([*base, "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom",
                              url], capture_output=True, text=True, timeout=120)
        assert dom.returncode == 0, dom.stderr[-2000:]
        title = re.search(r"<title>([^<]*)</title>", dom.stdout)
        assert title and title.group(1) == f"ok {n_img}", (title and title.group(1), dom.stderr[-2000:])
        console = [ln for ln in dom.stderr.splitlines() if ":CONSOLE" in ln]
        assert not console, console
        shot = tmp_path / f"{d.name}.png"
        subprocess.run([*base, f"--screenshot={shot}", "--window-size=1280,3000", url], capture_output=True,
                       timeout=120, check=True)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_simulate_report_flag_writes_the_report(tmp_path, capsys):
    from perpjax.cli import main

    out = tmp_path / "run"
    assert main(["simulate", "--paths", "200", "--no-progress", "--out", str(out), "--report",
                 "--set", "time.horizon_seconds=3600"]) == 0
    html = (out / "report.html").read_text()
    assert "<html" in html.lower() and "http://" not in html and "https://" not in html
    assert f"wrote {out / 'report.html'}" in capsys.readouterr().out
