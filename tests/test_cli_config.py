"""Bad input fails early with a message naming the field; the CLI writes its outputs."""

import json
from pathlib import Path

import pytest

from perpjax.cli import main

SHORT = ["--set", "time.horizon_seconds=3600", "--set", "chunk_size=500"]


@pytest.mark.parametrize("override, needle", [
    ("mark.windw=3", "mark.windw: unknown key"),
    ("bogus=1", "bogus: unknown key"),
    ("assets.0.vol=-0.2", "assets[0].vol: must be >= 0"),
    ("assets.1.price=.nan", "assets[1].price: must be a finite number"),
    ("assets.0.price=abc", "assets[0].price: must be a number"),
    ("correlation.0.1=0.99", "correlation: must be symmetric"),
    ("correlation=[[1,0.9,0.9,-0.9],[0.9,1,0.9,-0.9],[0.9,0.9,1,0.9],[-0.9,-0.9,0.9,1]]",
     "correlation: must be positive semi-definite"),
    ("ladders.BTC.1.floor=0", "floors must be strictly increasing"),
    ("ladders.ETH.0.imr=0.004", "ladders: ETH: tier 0 has mmr 0.005 >= imr 0.004"),
    ("ladders.ETH.0.mmr=0.02", "ladders: ETH.mmr: maintenance rates must be non-decreasing"),
    ("ladders.SOL.1.mmr=0.005", "maintenance rates must be non-decreasing"),
    ("innovations.nu=1.5", "nu: Student-t degrees of freedom must be > 2"),
    ("funding.interval_seconds=100", "funding.interval_seconds: must be a positive multiple of the step"),
    ("liquidation.check_every_seconds=90", "liquidation.check_every_seconds: must be a positive multiple"),
    ("book.accounts.0.positions.0.asset=XRP", "unknown asset 'XRP'"),
    ("dtype=float16", "dtype: must be 'float32' or 'float64'"),
])
def test_bad_config_exits_2_with_named_field(override, needle, capsys, tmp_path):
    code = main(["simulate", "--paths", "10", "--out", str(tmp_path), "--no-progress", "--set", override])
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err, err
    assert "Traceback" not in err
    assert not any(tmp_path.iterdir())  # nothing computed, nothing written


def test_bridge_needs_a_mark_with_a_brownian_part(capsys, tmp_path):
    code = main(["simulate", "--paths", "10", "--out", str(tmp_path), "--no-progress",
                 "--set", "liquidation.bridge=true", "--set", "mark.kind=ema"])
    assert code == 2 and "liquidation.bridge: the bridge needs a mark with a Brownian part" in capsys.readouterr().err


def test_simulate_writes_summary_accounts_manifest(tmp_path, capsys):
    code = main(["simulate", "--paths", "1000", "--seed", "3", "--out", str(tmp_path), "--no-progress", *SHORT])
    assert code == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    for k in ("paths", "steps", "seed", "p_any_liquidation", "bad_debt_mean", "bad_debt_var_99", "bad_debt_es_99",
              "liquidated_notional_p99", "trader_loss_es_99_9_se"):
        assert k in s
    assert s["paths"] == 1000 and s["steps"] == 60 and s["seed"] == 3
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["seed"] == 3 and m["config"]["time"]["horizon_seconds"] == 3600 and "jax_version" in m
    lines = (tmp_path / "accounts.csv").read_text().strip().splitlines()
    assert lines[0].startswith("unit,account,mode") and len(lines) == 1 + 12
    assert "p_any_liquidation" in capsys.readouterr().out


def test_python_api_is_deterministic_by_seed():
    import perpjax

    sets = ["time.horizon_seconds=1800", "chunk_size=300"]
    a = perpjax.run(None, overrides=sets, paths=300, seed=1)
    b = perpjax.run(None, overrides=sets, paths=300, seed=1)
    c = perpjax.run(None, overrides=sets, paths=300, seed=2)
    assert a.summary["trader_loss_mean"] == b.summary["trader_loss_mean"]
    assert a.summary["trader_loss_mean"] != c.summary["trader_loss_mean"]
    assert list(a.accounts.columns)[:3] == ["unit", "account", "mode"]


def test_scenario_extends_default_and_merges(tmp_path):
    from perpjax.config import load_config

    base = load_config(None)
    p = tmp_path / "s.yaml"
    p.write_text("extends: default\noracle: {update_every_seconds: 300}\nfunding: {interval_seconds: 3600}\n")
    cfg = load_config(p)
    assert cfg["oracle"] == {"update_every_seconds": 300}
    assert cfg["funding"]["interval_seconds"] == 3600
    assert cfg["funding"]["cap"] == base["funding"]["cap"]  # merged key by key
    assert cfg["book"] == base["book"]
    q = tmp_path / "loop.yaml"
    q.write_text("extends: loop.yaml\n")
    with pytest.raises(ValueError, match="extends: configs extend each other in a cycle"):
        load_config(q)


SCENARIOS = sorted((Path(__file__).parents[1] / "configs" / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_shipped_scenarios_resolve(path):
    from perpjax.config import build_model, load_config

    model, labels, resolved = build_model(load_config(path))
    assert model.n_units == len(labels.unit) >= 1


def test_compare_modes_side_by_side(tmp_path, capsys):
    code = main(["simulate", "--paths", "64", "--out", str(tmp_path), "--no-progress", *SHORT,
                 "--compare-modes", "full,fraction", "--set", "liquidation.adl=true"])
    assert code == 0
    out = capsys.readouterr().out
    assert "full" in out and "fraction" in out and "liquidation_events_mean" in out
    import pandas as pd

    table = pd.read_csv(tmp_path / "compare.csv", index_col=0)
    assert list(table.columns) == ["full", "fraction"]
    assert (tmp_path / "fraction" / "summary.json").exists()
    # Same random paths: the first liquidation happens on the same paths whatever the path taken.
    assert table.loc["p_any_liquidation", "full"] == table.loc["p_any_liquidation", "fraction"]
    assert main(["simulate", "--paths", "8", "--out", str(tmp_path), "--no-progress", *SHORT,
                 "--compare-modes", "full,twap"]) == 2


def test_killed_run_resumes_to_the_same_result(tmp_path):
    """Progress is checkpointed after every chunk; a run killed mid-way resumes to the exact result."""
    import numpy as np

    from perpjax.api import run

    over = ["time.horizon_seconds=3600", "chunk_size=100", "paths=500"]
    full = run(None, overrides=over)
    ckpt = tmp_path / "checkpoint.npz"

    class Killed(Exception):
        pass

    def kill_after_two(done, total):
        if done >= 200:
            raise Killed

    with pytest.raises(Killed):
        run(None, overrides=over, checkpoint=ckpt, progress=kill_after_two)
    assert ckpt.exists()
    seen = []
    resumed = run(None, overrides=over, checkpoint=ckpt, progress=lambda d, t: seen.append(d))
    assert seen[0] == 200  # picked up after the two saved chunks
    for k in ("path_bad_debt", "path_trader_loss", "path_liq_notional", "liq_count", "loss_sum"):
        np.testing.assert_array_equal(getattr(resumed.outcome, k), getattr(full.outcome, k))
    with pytest.raises(ValueError, match="checkpoint: .* belongs to another run"):
        run(None, overrides=[*over[:2], "paths=600"], checkpoint=ckpt)


def test_cli_resume_flag(tmp_path, capsys):
    args = ["simulate", "--paths", "64", "--out", str(tmp_path), "--no-progress", *SHORT]
    assert main(args) == 0 and not (tmp_path / "checkpoint.npz").exists()
    assert main([*args, "--resume"]) == 0
