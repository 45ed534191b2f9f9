"""A user's own book and venue: ``--book FILE`` (CSV or JSON) on every command that runs a config and
``book.accounts_file`` in a config (the same reader, the same book), one rule for relative paths (relative to the
file that names them), bracket files that never extend silently (for listed, file and generated books), asset
and account names in ``--set``, and the same shared flags everywhere. Only one test simulates (a tiny run)."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perpjax.cli import main, parser
from perpjax.config import ConfigError, build_model, load_config

CONFIGS = Path(__file__).parents[1] / "configs"
TINY = ["--set", "time.horizon_seconds=3600", "--set", "chunk_size=200"]
# A Binance leverage-bracket response for BTCUSDT whose last bracket is capped at 12M (the default book holds
# a 200 BTC whale: 19M at the start price 95,000).
CAPPED = [{"symbol": "BTCUSDT", "brackets": [
    {"bracket": 1, "initialLeverage": 125, "notionalCap": 50000, "notionalFloor": 0, "maintMarginRatio": 0.004},
    {"bracket": 2, "initialLeverage": 100, "notionalCap": 250000, "notionalFloor": 50000, "maintMarginRatio": 0.005},
    {"bracket": 3, "initialLeverage": 50, "notionalCap": 1000000, "notionalFloor": 250000, "maintMarginRatio": 0.01},
    {"bracket": 4, "initialLeverage": 20, "notionalCap": 12000000, "notionalFloor": 1000000,
     "maintMarginRatio": 0.025}]}]


def _book_files(folder: Path) -> tuple[Path, Path]:
    csv, js = folder / "book.csv", folder / "book.json"
    shutil.copy(CONFIGS / "book_example.csv", csv)
    shutil.copy(CONFIGS / "book_example.json", js)
    return csv, js


def test_example_books_csv_and_json_are_the_same_book():
    """The shipped examples (documented in docs/own-book.md) build, and the CSV and the JSON give one book."""
    a_model, a_labels, _ = build_model(load_config(None, book=CONFIGS / "book_example.csv"))
    b_model, b_labels, b_res = build_model(load_config(None, book=CONFIGS / "book_example.json"))
    assert a_labels == b_labels and a_labels.unit == ("fund_a", "desk_b", "retail_c:BTC", "retail_c:ETH")
    for field in ("collateral", "size", "entry"):
        np.testing.assert_array_equal(getattr(a_model.book, field), getattr(b_model.book, field))
    # the config's book replaced: --book is book.accounts_file, the other accounts dropped
    assert b_res["book"]["accounts_file"] == str(CONFIGS / "book_example.json") and b_res["book"]["accounts"] == []
    assert b_res["book"]["csv"] is None and b_res["book"]["generate"] is None
    assert len(load_config(None)["book"]["accounts"]) == 11  # ... not changed at its source


def test_the_example_config_runs_from_any_directory(tmp_path, monkeypatch):
    """configs/own_book.yaml names its book and its bracket file relative to itself."""
    from perpjax.config import resolve

    monkeypatch.chdir(tmp_path)
    _, labels, c = build_model(load_config(CONFIGS / "own_book.yaml"))
    assert labels.unit == ("fund_a", "desk_b", "retail_c:BTC", "retail_c:ETH")
    assert c["ladders"]["BTC"] == resolve(load_config(None, ["ladders.BTC=binance_usdm:BTCUSDT"]))["ladders"]["BTC"]


def test_simulate_runs_a_csv_book_relative_to_the_working_directory(tmp_path, monkeypatch, capsys):
    _book_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    code = main(["simulate", "--book", "book.csv", "--paths", "200", "--out", "out", "--no-progress", *TINY])
    assert code == 0, capsys.readouterr().err
    acc = pd.read_csv(tmp_path / "out" / "accounts.csv")
    assert list(acc.unit) == ["fund_a", "desk_b", "retail_c:BTC", "retail_c:ETH"]
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["book_file"] == "book.csv" and m["config"]["book"]["accounts_file"] == str(tmp_path / "book.csv")
    assert str(tmp_path / "book.csv") in m["data_files"]  # the book file is hashed in the manifest


def test_bad_book_files_name_the_file_and_the_item(tmp_path):
    _, js = _book_files(tmp_path)
    book = json.loads(js.read_text())
    book["accounts"][1]["positions"][0]["asset"] = "XRP"
    js.write_text(json.dumps(book))
    with pytest.raises(ConfigError, match=r"--book: .*book.json: accounts\[1\].positions\[0\].asset: unknown asset "
                                          r"'XRP' \(assets: BTC, ETH, SOL, DOGE\)"):
        load_config(None, book=js)
    book["accounts"][1]["positions"][0].update(asset="SOL", size="lots")
    js.write_text(json.dumps(book))
    with pytest.raises(ConfigError, match=r"book.json: accounts\[1\].positions\[0\].size: must be a number"):
        load_config(None, book=js)
    del book["accounts"][0]["collateral"]
    book["accounts"][1]["positions"][0]["size"] = 1
    js.write_text(json.dumps(book["accounts"]))  # a bare list of accounts is a book too
    with pytest.raises(ConfigError, match=r"book.json: accounts\[0\].collateral: required for a cross account"):
        load_config(None, book=js)
    js.write_text("{not json")
    with pytest.raises(ConfigError, match="book.json: not valid JSON"):
        load_config(None, book=js)
    with pytest.raises(ConfigError, match=r"--book: .*book.txt: expected a .csv or .json book"):
        load_config(None, book=tmp_path / "book.txt")
    with pytest.raises(ConfigError, match=r"--book: .*nope.csv: file not found"):
        load_config(None, book=tmp_path / "nope.csv")  # read as --book is given: before anything else runs
    two = tmp_path / "two.csv"  # one cross account, two collaterals: refused, not the first one silently kept
    two.write_text("account,asset,size,entry,collateral\nf,BTC,1,95000,20000\nf,ETH,2,3500,\nf,SOL,9,180,25000\n")
    with pytest.raises(ConfigError, match=r"two.csv: row 4, column collateral: account 'f' has collateral 20000 on "
                                          r"an earlier row, 25000 here"):
        build_model(load_config(None, book=two))


CONFIG_COMMANDS = [  # every command that runs a config, with what makes it otherwise valid
    ["simulate"], ["sweep", "--grid", "assets.BTC.vol=0.5,0.7"], ["sensitivities"], ["calibrate"],
    ["fit", "--out", "x.yaml"]]


@pytest.mark.parametrize("cmd", CONFIG_COMMANDS, ids=[c[0] for c in CONFIG_COMMANDS])
def test_every_config_command_reads_book_and_set_before_any_compute(cmd, tmp_path, monkeypatch, capsys):
    """The shared flags on each command: a book with an unknown asset, or a --set with an unknown asset name,
    is one line naming the file / field, exit 2, nothing written."""
    _, js = _book_files(tmp_path)
    js.write_text(js.read_text().replace('"SOL"', '"XRP"'))
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.iterdir())
    quiet = [] if cmd[0] == "fit" else ["--no-progress"]  # fit shows no progress
    assert main([*cmd, "--book", "book.json", *quiet]) == 2
    err = capsys.readouterr().err
    assert "book.json: accounts[1].positions[0].asset: unknown asset 'XRP'" in err and len(err.splitlines()) == 1, err
    assert main([*cmd, "--set", "assets.XRP.vol=0.7"]) == 2
    err = capsys.readouterr().err
    assert "assets.XRP: unknown name 'XRP' (known: BTC, ETH, SOL, DOGE)" in err and "Traceback" not in err, err
    assert set(tmp_path.iterdir()) == before


def test_same_flags_and_defaults_on_every_command():
    p = parser()
    for cmd in ("simulate", "sweep", "sensitivities", "calibrate"):
        a = p.parse_args([cmd, "--book", "b.csv", "--set", "seed=1", "--set", "paths=9", "--no-progress"])
        assert a.config is None and a.book == "b.csv" and a.overrides == ["seed=1", "paths=9"] and a.no_progress
    a = p.parse_args(["backtest", "--start", "2021-01-02", "--end", "2021-01-03", "--set", "seed=1", "--no-progress"])
    assert a.config is None and a.overrides == ["seed=1"] and a.no_progress  # its book is not used: no --book
    a = p.parse_args(["fit", "--base", "b.yaml", "--book", "b.json", "--set", "seed=1"])
    assert a.base == "b.yaml" and a.book == "b.json" and a.overrides == ["seed=1"]


def test_sweep_defaults_to_the_packaged_config_and_takes_asset_names():
    from perpjax.cli import sweep

    base, sets = sweep.prepare(parser().parse_args(["sweep", "--grid", "assets.ETH.vol=0.5,0.7", "--set",
                                                    "assets.BTC.vol=0.3"]))
    assert base["assets"][0]["vol"] == 0.3 and len(sets) == 2
    assert [s.resolved["assets"][1]["vol"] for s in sets] == [0.5, 0.7]


def test_set_selects_list_items_by_name():
    cfg = load_config(None, ["assets.BTC.vol=0.7", "book.accounts.basis_hedged.collateral=500000",
                             "book.accounts.basis_hedged.positions.ETH.size=-1000", "ladders.BTC.0.mmr=0.003"])
    assert cfg["assets"][0]["vol"] == 0.7 and cfg["assets"][1]["vol"] == 0.84
    acc = cfg["book"]["accounts"][2]
    assert acc["collateral"] == 5e5 and acc["positions"][1] == {"asset": "ETH", "size": -1000, "entry": 3510}
    with pytest.raises(ConfigError, match=r"book.accounts.nobody: unknown id 'nobody' \(known: btc_whale_10x, "):
        load_config(None, ["book.accounts.nobody.collateral=1"])
    with pytest.raises(ConfigError, match=r"correlation.BTC: expected a list index 0 to 3 \(the items have no names"):
        load_config(None, ["correlation.BTC.0=1"])
    with pytest.raises(ConfigError, match=r"assets.4: no such list index \(the list has 4 item\(s\): 0 to 3\)"):
        load_config(None, ["assets.4.vol=1"])
    with pytest.raises(ConfigError, match=r"book.accounts.0.positions.X: 2 items with asset 'X' \(at \[0, 1\]\)"):
        load_config(None, ["book.accounts=[{id: a, positions: [{asset: X}, {asset: X}]}]",
                           "book.accounts.0.positions.X.size=1"])


def _config_dir(tmp_path: Path) -> Path:
    """tmp/cfg/sub/base.yaml names book.csv and a bracket file (beside it); tmp/cfg/child.yaml extends it;
    tmp/elsewhere is a working directory away from both."""
    sub = tmp_path / "cfg" / "sub"
    sub.mkdir(parents=True)
    _book_files(sub)
    (sub / "lb.json").write_text(json.dumps(CAPPED))
    (sub / "base.yaml").write_text("extends: default\nbook: {accounts: [], csv: book.csv}\n"
                                   "ladders: {BTC: lb.json:BTCUSDT}\n")
    (tmp_path / "cfg" / "child.yaml").write_text("extends: sub/base.yaml\nseed: 3\n")
    (tmp_path / "elsewhere").mkdir()
    return sub


def test_relative_paths_are_relative_to_the_file_that_names_them(tmp_path, monkeypatch):
    sub = _config_dir(tmp_path)
    monkeypatch.chdir(tmp_path / "elsewhere")  # neither the config's folder nor the book's
    model, labels, c = build_model(load_config("../cfg/child.yaml"))
    assert c["book"]["csv"] == str(sub / "book.csv") and labels.unit[0] == "fund_a" and c["seed"] == 3
    assert c["ladders"]["BTC"][-1] == {"floor": 1e6, "mmr": 0.025, "imr": 0.05}  # lb.json beside base.yaml
    # values from the command line are relative to the working directory
    shutil.copy(sub / "book.json", "mine.json")
    shutil.copy(sub / "book.csv", "mine.csv")
    c = load_config("../cfg/child.yaml", ["book.csv=mine.csv"])
    assert c["book"]["csv"] == str(tmp_path / "elsewhere" / "mine.csv")
    c = load_config("../cfg/child.yaml", book="mine.csv")
    assert c["book"]["accounts_file"] == str(tmp_path / "elsewhere" / "mine.csv") and "csv" not in c["book"]
    c = load_config("../cfg/child.yaml", ["book.csv=null", "book.accounts_file=mine.json"])
    assert c["book"]["accounts_file"] == str(tmp_path / "elsewhere" / "mine.json")
    assert build_model(c)[1].unit[0] == "fund_a"
    # a relative path that does not exist there is named as the absolute path looked at
    (tmp_path / "cfg" / "bad.yaml").write_text("extends: default\nbook: {csv: missing.csv}\n")
    with pytest.raises(ConfigError, match=re.escape(f"book.csv: {tmp_path / 'cfg' / 'missing.csv'}: file not found")):
        build_model(load_config("../cfg/bad.yaml"))


def test_filter_rebase_repoints_every_relative_path():
    from perpjax.config import files

    raw = {"extends": "../base.yaml", "book": {"csv": "book.csv", "accounts_file": "b.json"},
           "innovations": {"residuals": "/abs/r.npz"},
           "events": {"replay": {"csv": "data/bars.csv"}},
           "ladders": {"BTC": "lb.json:BTCUSDT", "ETH": "binance_usdm:ETHUSDT", "SOL": {"source": "sol.csv"},
                       "DOGE": [{"floor": 0, "mmr": 0.01, "imr": 0.02}]}}
    out = files.rebase(raw, "/w/a", "/w/b/c")
    assert out["extends"] == "../../base.yaml" and out["book"]["csv"] == "../../a/book.csv"
    assert out["book"]["accounts_file"] == "../../a/b.json"
    assert out["innovations"]["residuals"] == "/abs/r.npz" and out["events"]["replay"]["csv"] == "../../a/data/bars.csv"
    assert out["ladders"]["BTC"] == "../../a/lb.json:BTCUSDT" and out["ladders"]["ETH"] == "binance_usdm:ETHUSDT"
    assert out["ladders"]["SOL"] == {"source": "../../a/sol.csv"} and out["ladders"]["DOGE"] == raw["ladders"]["DOGE"]
    assert raw["book"]["csv"] == "book.csv"  # a copy
    assert files.rebase({"extends": "default"}, "/w/a", "/w/b") == {"extends": "default"}


def test_a_bracket_file_never_extends_its_last_bracket_silently(tmp_path, monkeypatch, capsys):
    sub = _config_dir(tmp_path)
    monkeypatch.chdir(sub)
    (sub / "whale.yaml").write_text("extends: default\nladders: {BTC: lb.json:BTCUSDT}\n")
    with pytest.raises(ConfigError, match=r"ladders.BTC: account 'btc_whale_10x' holds BTC notional 19,000,000 USD "
                                          r"\(size 200 at the start price 95,000\), above the last bracket's cap "
                                          r"12,000,000 of .*lb.json:BTCUSDT"):
        build_model(load_config("whale.yaml"))
    assert main(["margin", "--brackets", "lb.json", "--notional", "19e6"]) == 2  # the calculator agrees
    assert "exceeds the last bracket's cap 12,000,000" in capsys.readouterr().err
    code = main(["simulate", "whale.yaml", "--paths", "10", "--out", "o", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "extend_last_bracket: true" in err and len(err.splitlines()) == 1 and not Path("o").exists()
    # the explicit option margins it at the last bracket's rates
    extend = "ladders.BTC={source: lb.json:BTCUSDT, extend_last_bracket: true}"
    _, _, c = build_model(load_config("whale.yaml", [extend]))
    assert c["ladders"]["BTC"][-1] == {"floor": 1e6, "mmr": 0.025, "imr": 0.05}
    with pytest.raises(ConfigError, match=r"ladders.BTC.extend: unknown key \(allowed: extend_last_bracket, source"):
        build_model(load_config("whale.yaml", ["ladders.BTC={source: lb.json, extend: true}"]))
    # a book file is checked too (the CSV account named), and a preset's published cap is the same rule
    (sub / "big.csv").write_text("account,asset,size,entry,collateral\nbig_fund,BTC,150,95000,3e6\n")
    with pytest.raises(ConfigError, match="account 'big_fund' holds BTC notional 14,250,000 USD"):
        build_model(load_config("whale.yaml", book="big.csv"))
    with pytest.raises(ConfigError, match=r"above the last bracket's cap 500,000,000 of binance_usdm:BTCUSDT"):
        build_model(load_config(None, ["ladders.BTC=binance_usdm:BTCUSDT", "book.accounts.0.positions.0.size=6000",
                                       "book.accounts.0.collateral=1e9"]))


def test_a_generated_book_is_checked_against_the_caps_too(tmp_path, monkeypatch, capsys):
    """book.generate draws notionals when the model is built: they meet the same cap rule as a listed book,
    refused before any compute unless extend_last_bracket: true."""
    sub = _config_dir(tmp_path)
    monkeypatch.chdir(sub)
    gen = "book={accounts: [], generate: {n_accounts: 12, seed: 3, notional_median: 2.0e7, notional_sigma: 0.1}}"
    (sub / "gen.yaml").write_text("extends: default\nladders: {BTC: lb.json:BTCUSDT}\n")
    with pytest.raises(ConfigError) as e:
        build_model(load_config("gen.yaml", [gen]))
    m = re.match(r"ladders.BTC: account '(gen\d+)' \(drawn by book.generate\) holds BTC notional ([\d,]+) USD "
                 r"\(size (\S+) at the start price 95,000\), above the last bracket's cap 12,000,000 of "
                 r".*lb.json:BTCUSDT: .*extend_last_bracket: true.*book.generate.notional_median", str(e.value))
    assert m, str(e.value)
    code = main(["simulate", "gen.yaml", "--set", gen, "--paths", "10", "--out", "o", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "drawn by book.generate" in err and len(err.splitlines()) == 1 and not Path("o").exists()
    # extended: it builds, and the unit the message named holds the size and notional it stated
    extend = "ladders.BTC={source: lb.json:BTCUSDT, extend_last_bracket: true}"
    model, labels, _ = build_model(load_config("gen.yaml", [gen, extend]))
    size = float(model.book.size[labels.account.index(m.group(1)), 0])
    assert f"{size:g}" == m.group(3) and f"{abs(size) * 95000:,.0f}" == m.group(2)
    assert abs(size) * 95000 > 12e6
    # the same generated book under the cap builds with the capped ladder (the check refuses only what is over)
    small = gen.replace("2.0e7", "1.0e5")
    _, labels, _ = build_model(load_config("gen.yaml", [small]))
    assert len(labels.unit) == 12


def test_a_config_names_a_csv_or_json_book_file_like_book(tmp_path, monkeypatch):
    """book.accounts_file in a config: CSV or JSON, relative to the config file, the same book and the same
    resolved config as --book FILE (which is book.accounts_file with the config's other accounts dropped)."""
    sub = _config_dir(tmp_path)
    for fmt in ("csv", "json"):
        (sub / f"file_{fmt}.yaml").write_text(f"extends: default\nbook: {{accounts: [], accounts_file: book.{fmt}}}\n")
    monkeypatch.chdir(tmp_path / "elsewhere")
    from perpjax.config import resolve

    for fmt in ("csv", "json"):
        cfg = load_config(f"../cfg/sub/file_{fmt}.yaml")
        assert cfg["book"]["accounts_file"] == str(sub / f"book.{fmt}")
        model, labels, c = build_model(cfg)
        assert labels.unit == ("fund_a", "desk_b", "retail_c:BTC", "retail_c:ETH")
        flag = load_config(None, book=sub / f"book.{fmt}")
        assert resolve(flag)["book"] == c["book"]
        f_model, f_labels, _ = build_model(flag)
        assert f_labels == labels
        for field in ("collateral", "size", "entry"):
            np.testing.assert_array_equal(getattr(f_model.book, field), getattr(model.book, field))
    # the same reader: the same fault, named by where the file was named
    bad = json.loads((sub / "book.json").read_text())
    bad["accounts"][1]["positions"][0]["asset"] = "XRP"
    (sub / "book.json").write_text(json.dumps(bad))
    tail = r"book.json: accounts\[1\].positions\[0\].asset: unknown asset 'XRP' \(assets: BTC, ETH, SOL, DOGE\)"
    with pytest.raises(ConfigError, match=f"^book.accounts_file: {re.escape(str(sub))}/{tail}"):
        build_model(load_config("../cfg/sub/file_json.yaml"))
    with pytest.raises(ConfigError, match=f"^--book: {re.escape(str(sub))}/{tail}"):
        load_config(None, book=sub / "book.json")
    (sub / "book.txt").write_text("")
    with pytest.raises(ConfigError, match=r"^book.accounts_file: .*book.txt: expected a .csv or .json book"):
        build_model(load_config("../cfg/sub/file_csv.yaml", ["book.accounts_file=../cfg/sub/book.txt"]))
    # book.csv is the CSV-only alias: one of the two, and not a JSON
    with pytest.raises(ConfigError, match=r"book.csv, accounts_file: one book file \(book.csv is the alias"):
        build_model(load_config("../cfg/sub/file_csv.yaml", ["book.csv=../cfg/sub/book.csv"]))
    with pytest.raises(ConfigError, match=r"book.csv: a JSON book is named by book.accounts_file"):
        build_model(load_config(None, ["book.csv=x.json"]))
    # a JSON book file in a config meets the ladders' caps like any other
    (sub / "big.json").write_text(json.dumps([{"id": "big_fund", "collateral": 3e6,
                                               "positions": [{"asset": "BTC", "size": 150, "entry": 95000}]}]))
    with pytest.raises(ConfigError, match="ladders.BTC: account 'big_fund' holds BTC notional 14,250,000 USD"):
        build_model(load_config("../cfg/sub/base.yaml", ["book.csv=null", "book.accounts_file=../cfg/sub/big.json"]))


def test_no_progress_silences_sensitivities_and_calibrate(tmp_path, monkeypatch, capsys):
    """--no-progress drops the stage lines of sensitivities and the per-iteration lines of calibrate (the jobs
    replaced by stand-ins that report progress and stop: the flag's wiring, without the compute)."""
    import perpjax.calibrate
    import perpjax.sensitivities

    def stage_then_stop(setup, progress):
        progress("hard engine: a stage line")
        raise ConfigError("stopped after the stage line")

    def iterations_then_stop(cfg, *, out_dir, resume, log):
        if log is not None:
            log("iteration 1: a line")
        raise ConfigError("stopped after the first iteration")

    monkeypatch.setattr(perpjax.sensitivities, "run_sensitivities", stage_then_stop)
    monkeypatch.setattr(perpjax.calibrate, "run_calibration", iterations_then_stop)
    sens = ["sensitivities", "--wrt", "fund", "--out", str(tmp_path / "s")]
    assert main(sens) == 2 and "a stage line" in capsys.readouterr().err
    assert main([*sens, "--no-progress"]) == 2
    assert capsys.readouterr().err == "perpjax: stopped after the stage line\n"
    cal = ["calibrate", "--out", str(tmp_path / "c")]
    assert main(cal) == 2 and "iteration 1" in capsys.readouterr().out
    assert main([*cal, "--no-progress"]) == 2 and "iteration" not in capsys.readouterr().out
