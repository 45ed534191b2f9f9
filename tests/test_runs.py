"""Runs that scale and never mislead: locked out dirs, per-chunk Parquet results, resume after SIGKILL,
a message (never a traceback) for every fault, solvent books at t = 0, labelled outputs."""

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perpjax.cli import main
from perpjax.metrics import MIN_TAIL_PATHS

SHORT = ["--set", "time.horizon_seconds=3600", "--set", "chunk_size=100"]
OVER = ["time.horizon_seconds=3600", "chunk_size=100"]
TIMING = {"path_steps_per_second"}


def _cli(tmp_path, *extra, paths=300):
    return ["simulate", "--paths", str(paths), "--out", str(tmp_path), "--no-progress", *SHORT, *extra]


def _summary(d):
    s = json.loads((Path(d) / "summary.json").read_text())
    return {k: v for k, v in s.items() if k not in TIMING}


# ---- per-chunk results, identical to in memory

def test_stored_run_equals_in_memory_run(tmp_path):
    import perpjax
    from perpjax.engine.driver import path_shapes

    from .test_store_stats import assert_summaries_agree

    mem = perpjax.run(None, overrides=OVER, paths=450, seed=4)
    st = perpjax.run(None, overrides=OVER, paths=450, seed=4, out=tmp_path)
    assert st.paths is None and mem.paths is not None
    drop = lambda s: {k: v for k, v in s.items() if k not in TIMING}  # noqa: E731
    assert_summaries_agree(drop(st.summary), drop(mem.summary))  # quantiles exact, sums to rounding
    pd.testing.assert_frame_equal(st.accounts, mem.accounts)
    for k in path_shapes(4):
        np.testing.assert_array_equal(getattr(st.outcome, k), getattr(mem.outcome, k), err_msg=k)
    files = sorted((tmp_path / "paths").glob("chunk-*.parquet"))
    assert [f.name for f in files] == [f"chunk-{i:06d}.parquet" for i in range(5)]  # 450 paths / 100
    table = pd.read_parquet(tmp_path / "paths")
    assert len(table) == 450 and table["path"].tolist() == list(range(450))
    np.testing.assert_array_equal(table["path_bad_debt"].to_numpy(), mem.outcome.path_bad_debt)
    np.testing.assert_array_equal(table["path_log_return__BTC"].to_numpy(), mem.outcome.path_log_return[:, 0])
    assert_summaries_agree(_summary(tmp_path), drop(mem.summary))


CASCADE = "cascade={impact: sqrt, permanent_fraction: 0.5, window_seconds: 300}"


@pytest.mark.parametrize("extra", [[], [CASCADE]], ids=["plain", "cascade"])
def test_loaded_paths_are_the_results_paths(tmp_path, extra):
    """One set of per-path names and values: ``perpjax.load(OUT).paths`` of a CLI run (read back from its chunk
    files) is ``perpjax.run(...).paths`` of the same run in memory: the same columns in the same order, the same
    index (the path), the values to float64 rounding. Names are Result's (``bad_debt``, ``log_return_BTC``, no
    ``path_*``); drawdowns are fractions of the peak, and present only with a cascade section."""
    import perpjax

    over = ["time.horizon_seconds=1800", "chunk_size=32", *extra]
    mem = perpjax.run(None, overrides=over, paths=64, seed=5)
    assert main(["simulate", "--paths", "64", "--seed", "5", "--out", str(tmp_path), "--no-progress",
                 *[a for o in over for a in ("--set", o)]]) == 0
    got = perpjax.load(tmp_path).paths
    pd.testing.assert_frame_equal(got, mem.paths, check_exact=False, rtol=1e-12, atol=0)
    assert got.index.name == "path" and got.index.tolist() == list(range(64))
    assert {"bad_debt", "trader_loss", "log_return_BTC"} <= set(got) and not any(c.startswith("path") for c in got)
    np.testing.assert_array_equal(got["log_return_ETH"].to_numpy(), mem.outcome.path_log_return[:, 1])
    drawdowns = [c for c in got if "drawdown" in c]
    if not extra:
        assert drawdowns == []  # no cascade section: no columns of zeros
        return
    assert "drawdown_BTC" in drawdowns and "drawdown_no_feedback_DOGE" in drawdowns
    log_dd = mem.outcome.path_drawdown[:, 0]
    assert log_dd.max() > 0  # the comparison has something to compare
    np.testing.assert_allclose(got["drawdown_BTC"].to_numpy(), 1 - np.exp(-log_dd), rtol=1e-12)


def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path):
    """A real process killed by SIGKILL after a few chunks; --resume gives the uninterrupted result bit for
    bit. While it runs, a second run into the same out dir is refused."""
    out = tmp_path / "run"
    args = ["--paths", "6000", "--seed", "5", "--out", str(out), "--no-progress",
            "--set", "chunk_size=300"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from perpjax.cli import main; "
                             "sys.exit(main(sys.argv[1:]))", "simulate", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    chunks = out / "paths"
    deadline = time.time() + 240
    refused = None
    while time.time() < deadline and proc.poll() is None:
        n = len(list(chunks.glob("chunk-*.parquet"))) if chunks.exists() else 0
        if n >= 1 and refused is None:  # the lock is held: a concurrent run into the same dir is refused
            from perpjax.store import OutDir, OutDirError

            held = re.escape(f"{out} is in use by another perpjax run (pid {proc.pid})")
            with pytest.raises(OutDirError, match=held):
                OutDir(out).acquire()
            refused = 2
        if n >= 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    assert refused == 2
    kept = len(list(chunks.glob("chunk-*.parquet")))
    assert 2 <= kept < 20, kept
    assert not (out / "summary.json").exists()
    assert main(["simulate", *args, "--resume"]) == 0
    full = tmp_path / "full"
    assert main(["simulate", *[a if a != str(out) else str(full) for a in args]]) == 0
    assert _summary(out) == _summary(full)
    pd.testing.assert_frame_equal(pd.read_csv(out / "accounts.csv"), pd.read_csv(full / "accounts.csv"))
    pd.testing.assert_frame_equal(pd.read_parquet(out / "paths"), pd.read_parquet(full / "paths"))


@pytest.mark.parametrize("change, needle", [
    (["--paths", "400"], "paths (300 saved, 400 now)"),
    (["--seed", "9"], "seed (7 saved, 9 now)"),
    (["--set", "liquidation.fee_rate=0.02"], "config (the resolved config's hash differs)"),
])
def test_resume_refusal_says_what_differs(tmp_path, capsys, change, needle):
    assert main(_cli(tmp_path)) == 0
    args = _cli(tmp_path)
    if change[0] == "--paths":
        args[2] = change[1]
    else:
        args += change
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    assert needle in err and "belongs to another run" in err and "Traceback" not in err, err


def test_corrupted_checkpoint_is_named(tmp_path, capsys):
    assert main(_cli(tmp_path)) == 0
    bad = tmp_path / "paths" / "chunk-000001.parquet"
    bad.write_bytes(b"not parquet at all")
    assert main([*_cli(tmp_path), "--resume"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "corrupted" in err and "Traceback" not in err, err
    (tmp_path / "paths" / "_run.json").write_text("{not json")
    assert main([*_cli(tmp_path), "--resume"]) == 2
    assert "_run.json is unreadable" in capsys.readouterr().err
    assert main(_cli(tmp_path)) == 0  # without --resume: starts over


# ---- out dirs

def test_out_dir_locked_by_another_run_is_refused(tmp_path, capsys):
    from perpjax.store import OutDir

    with OutDir(tmp_path):
        assert main(_cli(tmp_path, paths=64)) == 2
        err = capsys.readouterr().err
        assert f"{tmp_path} is in use by another perpjax run (pid {os.getpid()})" in err, err
    assert main(_cli(tmp_path, paths=64)) == 0  # released


def test_out_dir_and_run_dir_errors_are_the_leaf_modules_classes():
    """One class each, defined in perpjax/errors.py and re-exported where callers found them: what the store
    raises is what the CLI catches as a ConfigError (exit 2), and report.NotARunError is a ValueError."""
    import importlib

    from perpjax import errors, report, store

    load = importlib.import_module("perpjax.report.load")  # the module (perpjax.report.load is the function)
    assert store.OutDirError is errors.OutDirError and issubclass(errors.OutDirError, errors.ConfigError)
    assert report.NotARunError is load.NotARunError is errors.NotARunError
    assert issubclass(errors.NotARunError, ValueError) and not issubclass(errors.NotARunError, errors.ConfigError)


def test_out_that_is_a_file_or_under_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(_cli(f, paths=64)) == 2
    assert f"--out: {f} exists and is not a directory" in capsys.readouterr().err
    assert main(_cli(f / "sub", paths=64)) == 2
    err = capsys.readouterr().err
    assert f"--out: cannot create {f / 'sub'}" in err and "Traceback" not in err, err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_out_dir(tmp_path, capsys):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        assert main(_cli(d, paths=64)) == 2
        assert f"--out: {d} is not writable" in capsys.readouterr().err
    finally:
        d.chmod(0o755)


def test_output_files_respect_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        assert main(_cli(tmp_path, paths=64)) == 0
    finally:
        os.umask(old)
    for name in ("summary.json", "accounts.csv", "tiers.csv", "manifest.json", "paths/chunk-000000.parquet"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640, name


def test_a_new_run_removes_old_results(tmp_path):
    assert main(_cli(tmp_path, paths=200)) == 0
    (tmp_path / "paths" / "chunk-000007.parquet").write_bytes(b"stale")
    assert main(_cli(tmp_path, paths=100)) == 0
    assert sorted(p.name for p in (tmp_path / "paths").glob("chunk-*")) == ["chunk-000000.parquet"]


# ---- every fault a message

def test_paths_cap_names_the_reason(tmp_path, capsys):
    assert main(["simulate", "--paths", str(2**53 + 1), "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "paths: at most 2**53 = 9,007,199,254,740,992" in err and "float64" in err, err


def test_a_run_that_cannot_fit_on_disk_is_refused_before_compute(tmp_path, capsys):
    # 1e12 paths (64-bit path indices allow them) need ~1e14 bytes of per-path rows: refused up front
    assert main(["simulate", "--paths", str(10**12), "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "1,000,000,000,000 paths need about" in err and "GB free" in err, err
    assert not (tmp_path / "paths").exists() and not (tmp_path / "summary.json").exists()


def test_negative_collateral_names_the_account(tmp_path, capsys):
    assert main(_cli(tmp_path, "--set", "book.accounts.1.collateral=-5")) == 2
    err = capsys.readouterr().err
    assert "book.accounts[1].collateral: must be >= 0 (got -5) (account 'eth_short_20x')" in err, err


def test_negative_isolated_margin_names_the_account(tmp_path, capsys):
    from perpjax.config import load_config

    accounts = load_config(None)["book"]["accounts"]
    i = next(i for i, a in enumerate(accounts) if a.get("mode") == "isolated")
    assert main(_cli(tmp_path, "--set", f"book.accounts.{i}.positions.0.margin=-1")) == 2
    err = capsys.readouterr().err
    assert f"book.accounts[{i}].positions[0].margin: must be >= 0 (got -1, account '{accounts[i]['id']}'" in err, err


def _book_csv(tmp_path, text):
    p = tmp_path / "book.csv"
    p.write_text(text)
    return ["--set", "book.accounts=[]", "--set", f"book.csv={p}"], p


@pytest.mark.parametrize("text, needle", [
    ("account,mode,asset,size,entry,collateral\na,cross,BTC,1,95000,20000\nb,cross,ETH,abc,3500,9000\n",
     "row 3, column size: must be a number (got 'abc')"),
    ("account,mode,asset,size,collateral\na,cross,BTC,1,20000\n", "missing column(s) entry"),
    ("account,mode,asset,size,entry,collateral\na,cross,BTC,1,95000,-3\n",
     "row 2, column collateral: must be >= 0 (got -3, account 'a')"),
    ("account,mode,asset,size,entry,collateral\na,cross,XRP,1,1,100\n", "row 2, column asset: unknown asset 'XRP'"),
    ("account,mode,asset,size,entry,margin\na,isolated,BTC,1,95000,\n", "row 2, column margin: required value"),
    ("", "empty file"),
])
def test_book_csv_faults_name_file_row_and_column(tmp_path, capsys, text, needle):
    sets, p = _book_csv(tmp_path, text)
    assert main(_cli(tmp_path / "out", *sets)) == 2
    err = capsys.readouterr().err
    assert str(p) in err and needle in err and "Traceback" not in err, err


def test_book_csv_runs_and_is_hashed_in_the_manifest(tmp_path):
    from perpjax.io import sha256_file

    sets, p = _book_csv(tmp_path, "account,mode,asset,size,entry,collateral,margin\n"
                                  "a,cross,BTC,1,95000,20000,\na,cross,ETH,-5,3500,20000,\n"
                                  "b,isolated,SOL,100,180,,2000\n")
    assert main(_cli(tmp_path / "out", *sets, paths=64)) == 0
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["data_files"] == {str(p.resolve()): sha256_file(p)}
    for k in ("git_commit", "utc_time", "command", "scenario", "versions", "device"):
        assert k in m
    assert m["utc_time"].endswith("+00:00") and m["versions"]["pyarrow"]


def test_internal_error_is_one_line_exit_1(tmp_path, capsys, monkeypatch):
    import perpjax.api

    def boom(*a, **k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(perpjax.api, "run", boom)
    monkeypatch.delenv("PERPJAX_DEBUG", raising=False)
    assert main(_cli(tmp_path, paths=64)) == 1
    err = capsys.readouterr().err
    assert "perpjax: internal error: RuntimeError: kaboom (please report" in err and "Traceback" not in err
    monkeypatch.setenv("PERPJAX_DEBUG", "1")
    with pytest.raises(RuntimeError, match="kaboom"):
        main(_cli(tmp_path, paths=64))


# ---- solvent books

def test_book_below_maintenance_is_refused_naming_the_unit(tmp_path, capsys):
    bad = ["--set", "book.accounts.0.collateral=100"]  # btc_whale_10x: 10x on 100 USD
    assert main(_cli(tmp_path, *bad)) == 2
    err = capsys.readouterr().err
    assert "btc_whale_10x (insolvent, equity" in err or "btc_whale_10x (equity" in err, err
    assert "maintenance margin" in err and "book.start_below_maintenance=true" in err
    assert not any(tmp_path.iterdir())
    assert main(_cli(tmp_path, *bad, "--set", "book.start_below_maintenance=true", paths=64)) == 0
    err = capsys.readouterr().err
    assert "warning: book.start_below_maintenance" in err and "btc_whale_10x" in err


def test_solvency_uses_the_engines_margin():
    from perpjax.config import build_model, load_config
    from perpjax.solvency import below_maintenance, initial_margin_table

    model, labels, _ = build_model(load_config(None))
    units, eq, mm, open_ = initial_margin_table(model, labels)
    assert (eq >= mm)[open_].all() and below_maintenance(model, labels) == []
    from perpjax.engine import initial_equity

    np.testing.assert_array_equal(eq, np.asarray(initial_equity(model), np.float64))


# ---- output that cannot be misread

def test_printed_table_and_tiers_are_labelled(tmp_path, capsys):
    assert main(_cli(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "± = one Monte Carlo standard error" in out
    assert "USD" in out and "probability" in out and "hours" in out
    assert "-0.00" not in out and "-0.0000" not in out
    tiers = pd.read_csv(tmp_path / "tiers.csv")
    assert "expected_bad_debt_sum_over_units" in tiers and "p_liquidation_mean_per_unit" in tiers
    acc = pd.read_csv(tmp_path / "accounts.csv")
    by_sum = acc.groupby("tier")["expected_loss"].sum()
    np.testing.assert_allclose(tiers.set_index("tier")["expected_loss_sum_over_units"], by_sum)


def test_an_se_on_too_few_tail_paths_is_n_a_with_the_count(tmp_path, capsys):
    """300 paths leave fewer than ``MIN_TAIL_PATHS`` losses beyond the 99.9 % VaR: the printed ES 99.9 % has
    "± n/a (k paths beyond)", the count summary.json gives, and no SE anywhere prints as an exact zero."""
    assert main(_cli(tmp_path)) == 0
    out = capsys.readouterr().out
    s = json.loads((tmp_path / "summary.json").read_text())
    k = s["bad_debt_paths_beyond_99_9"]
    assert k < MIN_TAIL_PATHS and s["bad_debt_es_99_9_se"] is None
    (line,) = [ln for ln in out.splitlines() if "bad debt ES 99.9%" in ln]
    assert f"± n/a ({k} path{'' if k == 1 else 's'} beyond)" in line
    assert not re.search(r"± 0\.0+(?![\d])", out)  # "± 0.00" / "± 0.0000": an SE of 0 says nothing
    assert f"fewer than {MIN_TAIL_PATHS} paths" in out  # the footnote says what n/a means
    shown = [ln for ln in out.splitlines() if "±" in ln and not ln.lstrip().startswith("(")]
    assert shown and all("± n/a (" in ln or re.search(r"± \d", ln) for ln in shown)  # every ±: an SE or why not


def test_fmt_never_prints_negative_zero():
    from perpjax.cli.simulate import fmt

    assert fmt(-0.0, "USD") == "0.00" and fmt(-1e-9, "USD") == "0.00" and fmt(-0.00001, "probability") == "0.0000"
    assert fmt(-1234.5, "USD") == "-1,234.50" and fmt(float("nan")) == "n/a" and fmt(3) == "3"


def test_compare_modes_with_standard_errors_and_paired_differences(tmp_path, capsys):
    args = ["simulate", "--paths", "300", "--out", str(tmp_path), "--no-progress", *SHORT,
            "--compare-modes", "full,fraction"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "full→fraction" in out and "±" in out
    table = pd.read_csv(tmp_path / "compare.csv", index_col=0)
    for c in ("full", "full_se", "fraction", "fraction_se", "fraction_minus_full", "fraction_minus_full_se"):
        assert c in table.columns
    # Same random paths: the first liquidation happens on the same paths whatever the path taken, so the
    # paired difference is exactly zero; its SE would rest on the 0 paths that differ: not estimated.
    assert table.loc["p_any_liquidation", "fraction_minus_full"] == 0.0
    assert np.isnan(table.loc["p_any_liquidation", "fraction_minus_full_se"])
    (line,) = [ln for ln in out.splitlines() if ln.startswith("p_any_liquidation")]
    assert f"0 ± n/a (fewer than {MIN_TAIL_PATHS} paths differ)" in line
    assert not re.search(r"± 0(\.0+)?(?![\d.])", out)
    for m in ("full", "fraction"):
        assert (tmp_path / m / "summary.json").exists() and (tmp_path / m / "paths" / "_run.json").exists()
    assert main([*args, "--resume"]) == 0  # each mode resumes from its own chunks


def test_compare_modes_and_sweep_give_the_same_standard_errors(tmp_path, capsys):
    """--compare-modes full,fraction and a sweep over liquidation.mode = full, fraction (fairness on in both,
    as compare-modes sets it) on the same paths: every metric both tabulate has the same value, SE and
    paired-difference SE, n/a (NaN) in the same places: one rule for SEs on too few paths."""
    over = [*SHORT, "--set", "liquidation.fairness=true", "--paths", "300", "--seed", "5", "--no-progress"]
    assert main(["simulate", "--out", str(tmp_path / "cmp"), "--compare-modes", "full,fraction", *over]) == 0
    assert main(["sweep", "--out", str(tmp_path / "sw"), "--grid", "liquidation.mode=full,fraction", *over]) == 0
    capsys.readouterr()
    cmp = pd.read_csv(tmp_path / "cmp" / "compare.csv", index_col=0)
    sw = pd.read_csv(tmp_path / "sw" / "sweep.csv").set_index(["set", "metric"])
    shared = [k for k in cmp.index if (0, k) in sw.index]
    assert len(shared) >= 10
    for k in shared:
        for col, want in (("full", sw.loc[(0, k), "value"]), ("full_se", sw.loc[(0, k), "se"]),
                          ("fraction", sw.loc[(1, k), "value"]), ("fraction_se", sw.loc[(1, k), "se"]),
                          ("fraction_minus_full_se", sw.loc[(1, k), "diff_se"])):
            np.testing.assert_allclose(cmp.loc[k, col], want, rtol=1e-9, atol=0, equal_nan=True, err_msg=f"{k} {col}")
    se = cmp.loc[shared, ["full_se", "fraction_minus_full_se"]].to_numpy(float)
    assert np.isnan(se).any() and np.isfinite(se).any()  # both kinds of SE are compared
