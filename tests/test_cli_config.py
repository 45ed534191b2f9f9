"""Bad input fails early with a message naming the field; the CLI writes its outputs."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
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
    assert "P(any liquidation)" in capsys.readouterr().out


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
    from perpjax.replay import default_data_path

    if path.stem.startswith("replay_") and not default_data_path().exists():
        pytest.skip(f"historical replay needs the shared data ({default_data_path()} is absent)")
    model, labels, resolved = build_model(load_config(path))
    assert model.n_units == len(labels.unit) >= 1
    assert resolved["description"], "every shipped scenario says what it is"


def test_scenarios_are_listed_and_applied_over_a_config(tmp_path, capsys):
    import json

    assert main(["scenarios"]) == 0
    listed = capsys.readouterr().out
    for p in SCENARIOS:
        assert p.stem in listed
    code = main(["simulate", "--scenario", "crash_20pct_1h", "--paths", "64", "--out", str(tmp_path),
                 "--no-progress", "--set", "time.horizon_seconds=14400"])
    assert code == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["cascade_amplification"] >= 1.0 and s["cascade_rounds_mean"] >= 1
    assert sum(b["episodes"] for b in s["cascade_size_distribution"]) >= 64  # every path liquidates someone
    acc = pd.read_csv(tmp_path / "accounts.csv")
    assert "p_starts_cascade" in acc and acc["p_starts_cascade"].max() > 0
    assert main(["simulate", "--scenario", "no_such_thing", "--paths", "8", "--out", str(tmp_path)]) == 2
    assert "no such scenario" in capsys.readouterr().err


def test_replay_scenario_follows_the_real_path(tmp_path):
    """Without feedback, every path's BTC log return over a replay is the data's close / open."""
    from perpjax import run
    from perpjax.replay import default_data_path

    if not default_data_path().exists():
        pytest.skip(f"historical replay needs the shared data ({default_data_path()} is absent)")
    data = pd.read_csv(default_data_path())
    t0 = int(pd.Timestamp("2022-11-08", tz="UTC").timestamp())
    btc = data[(data.symbol == "BTCUSDT") & (data.timestamp >= t0) & (data.timestamp < t0 + 48 * 3600)]
    res = run(str(SCENARIOS[0].parent / "replay_2022_11_08.yaml"), paths=16,
              overrides=["cascade.impact=none", "dtype=float64"])
    expected = np.log(btc.close.iloc[-1] / btc.open.iloc[0])
    np.testing.assert_allclose(res.outcome.path_log_return[:, 0], expected, rtol=1e-9)
    assert res.summary["bad_debt_mean"] > 0  # the FTX week leaves bad debt on the default book


def test_compare_modes_side_by_side(tmp_path, capsys):
    code = main(["simulate", "--paths", "64", "--out", str(tmp_path), "--no-progress", *SHORT,
                 "--compare-modes", "full,fraction", "--set", "liquidation.adl=true"])
    assert code == 0
    out = capsys.readouterr().out
    assert "full" in out and "fraction" in out and "liquidation_events_mean" in out
    import pandas as pd

    table = pd.read_csv(tmp_path / "compare.csv", index_col=0)
    assert list(table.columns)[:4] == ["full", "full_se", "fraction", "fraction_se"]
    assert (tmp_path / "fraction" / "summary.json").exists()
    # Same random paths: the first liquidation happens on the same paths whatever the path taken.
    assert table.loc["p_any_liquidation", "full"] == table.loc["p_any_liquidation", "fraction"]
    assert main(["simulate", "--paths", "8", "--out", str(tmp_path), "--no-progress", *SHORT,
                 "--compare-modes", "full,twap"]) == 2


def test_killed_run_resumes_to_the_same_result(tmp_path):
    """Each finished chunk is stored; a run killed mid-way resumes to the exact result."""
    import numpy as np

    from perpjax.api import run

    over = ["time.horizon_seconds=3600", "chunk_size=100", "paths=500"]
    full = run(None, overrides=over)

    class Killed(Exception):
        pass

    def kill_after_two(done, total):
        if done >= 200:
            raise Killed

    with pytest.raises(Killed):
        run(None, overrides=over, out=tmp_path, progress=kill_after_two)
    assert len(list((tmp_path / "paths").glob("chunk-*.parquet"))) == 2
    seen = []
    resumed = run(None, overrides=over, out=tmp_path, resume=True, progress=lambda d, t: seen.append(d))
    assert seen[0] == 200  # picked up after the two saved chunks
    for k in ("path_bad_debt", "path_trader_loss", "path_liq_notional", "liq_count", "loss_sum"):
        np.testing.assert_array_equal(getattr(resumed.outcome, k), getattr(full.outcome, k))
    with pytest.raises(ValueError, match="checkpoint: .* belongs to another run: paths"):
        run(None, overrides=[*over[:2], "paths=600"], out=tmp_path, resume=True)


def test_cli_resume_flag(tmp_path, capsys):
    args = ["simulate", "--paths", "64", "--out", str(tmp_path), "--no-progress", *SHORT]
    assert main(args) == 0 and (tmp_path / "paths" / "chunk-000000.parquet").exists()
    assert main([*args, "--resume"]) == 0


def test_fit_command_writes_a_config_that_runs(tmp_path, capsys):
    from perpjax.config import build_model, load_config
    from perpjax.replay import default_data_path

    if not default_data_path().exists():
        pytest.skip(f"fitting needs the shared data ({default_data_path()} is absent)")
    out = tmp_path / "fitted.yaml"
    assert main(["fit", "--start", "2022-01-01", "--end", "2023-01-01", "--out", str(out)]) == 0
    assert "BTCUSDT" in capsys.readouterr().out
    model, _, resolved = build_model(load_config(out))
    assert model.garch is not None and model.regimes is not None
    assert 0.3 < resolved["assets"][0]["vol"] < 1.0 and resolved["innovations"]["kind"] == "student_t"
    assert main(["fit", "--symbols", "BTCUSDT,NOPEUSDT", "--names", "BTC,ETH", "--out", str(out)]) == 2
    assert "NOPEUSDT" in capsys.readouterr().err


def test_an_override_changes_one_yaml_alias_only(tmp_path):
    from perpjax.config import apply_overrides, load_config

    f = tmp_path / "c.yaml"
    f.write_text("base: &lad [{floor: 0, mmr: 0.01}]\nladders: {BTC: *lad, ETH: *lad}\n")
    cfg = load_config(f)
    assert cfg["ladders"]["BTC"] is cfg["ladders"]["ETH"]  # the alias is one object
    out = apply_overrides(cfg, ["ladders.BTC.0.mmr=0.02"])
    assert out["ladders"]["BTC"][0]["mmr"] == 0.02
    assert out["ladders"]["ETH"][0]["mmr"] == 0.01 and out["base"][0]["mmr"] == 0.01
    assert cfg["ladders"]["BTC"][0]["mmr"] == 0.01  # the input is not changed
