"""The venues' own published examples and unit tests, through the CLI as a user types them.

Sources:
* Binance FAQ "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts" (2020-08-14), the worked
  cross/isolated example (WB 1,535,443.01), with every input as reproduced in freqtrade's
  tests/exchange/test_binance.py::test_liquidation_price_binance; bracket files in the format of
  Binance's GET /fapi/v1/leverageBracket (developers.binance.com, "Notional and Leverage Brackets").
* dYdX v4 (dydxprotocol/v4-chain, commit 84d4664b): protocol/x/clob/keeper/liquidations_test.go
  TestGetFillablePrice; protocol/x/perpetuals/funding/funding_test.go TestGetFundingIndexDelta.
* Drift v2 (drift-labs/protocol-v2, commit 0ae3e3b1): programs/drift/src/math/liquidation/tests.rs,
  mod calculate_base_asset_amount_to_cover_margin_shortage.
"""

import json
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from perpjax import drift, venues
from perpjax.cli import main

WB = "1535443.01"
# side, size, entry, mmr, cum, other_mm, other_upnl, LP published (Binance FAQ example)
BINANCE_FAQ = [
    ("3683.979", "1456.84", "0.10", "135365", "71200.81144", "-56354.57", "1,153.26"),  # ETHUSDT cross
    ("109.488", "32481.98", "0.025", "16300", "356512.508", "-448192.89", "26,316.89"),  # BTCUSDT cross
    ("3683.979", "1456.84", "0.10", "135365", "0", "0", "1,114.78"),  # ETHUSDT isolated
    ("109.488", "32481.98", "0.025", "16300", "0", "0", "18,778.73"),  # BTCUSDT isolated
]

# BTCUSDT brackets of the example's time (bracket 4 holds both the entry and the LP notional).
BTC_2021_ROWS = [
    {"bracket": 1, "initialLeverage": 125, "notionalCap": 50000, "notionalFloor": 0, "maintMarginRatio": 0.004,
     "cum": 0.0},
    {"bracket": 2, "initialLeverage": 100, "notionalCap": 250000, "notionalFloor": 50000, "maintMarginRatio": 0.005,
     "cum": 50.0},
    {"bracket": 3, "initialLeverage": 50, "notionalCap": 1000000, "notionalFloor": 250000, "maintMarginRatio": 0.01,
     "cum": 1300.0},
    {"bracket": 4, "initialLeverage": 20, "notionalCap": 10000000, "notionalFloor": 1000000,
     "maintMarginRatio": 0.025, "cum": 16300.0},
    {"bracket": 5, "initialLeverage": 10, "notionalCap": 20000000, "notionalFloor": 10000000,
     "maintMarginRatio": 0.05, "cum": 266300.0},
]
FIELDS = ("bracket", "initialLeverage", "notionalCap", "notionalFloor", "maintMarginRatio", "cum")


def write_csv(path, rows, fields=FIELDS):
    path.write_text("\n".join([",".join(fields)] + [",".join(str(r.get(f, "")) for f in fields) for r in rows]) + "\n")
    return str(path)


def run(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("size, entry, mmr, cum, tmm, upnl, expected", BINANCE_FAQ)
def test_binance_faq_liquidation_price_as_typed(capsys, size, entry, mmr, cum, tmm, upnl, expected):
    rc, out, _ = run(capsys, "liq-price", "--side", "long", "--size", size, "--entry", entry, "--wallet", WB,
                     "--mmr", mmr, "--cum", cum, "--other-mm", tmm, "--other-upnl", upnl)
    assert rc == 0 and f"liquidation price   {expected}\n" in out


@pytest.mark.parametrize("fmt", ["csv", "json", "json-object", "json-bare"])
def test_binance_faq_example_from_a_bracket_file(capsys, tmp_path, fmt):
    if fmt == "csv":
        f = write_csv(tmp_path / "btc.csv", BTC_2021_ROWS)
    else:
        body = {"json": [{"symbol": "BTCUSDT", "brackets": BTC_2021_ROWS}],
                "json-object": {"symbol": "BTCUSDT", "notionalCoef": 1.5, "brackets": BTC_2021_ROWS},
                "json-bare": BTC_2021_ROWS}[fmt]
        (tmp_path / "btc.json").write_text(json.dumps(body))
        f = str(tmp_path / "btc.json")
    for tmm, upnl, expected in (("356512.508", "-448192.89", "26,316.89"), ("0", "0", "18,778.73")):
        rc, out, _ = run(capsys, "liq-price", "--brackets", f, "--side", "long", "--size", "109.488", "--entry",
                         "32481.98", "--wallet", WB, "--other-mm", tmm, "--other-upnl", upnl)
        assert rc == 0 and f"liquidation price   {expected}\n" in out
        assert "bracket at LP       4 (floor 1,000,000, MMR 2.5000%, cum 16,300.00)" in out


def test_cum_is_optional_and_computed(capsys, tmp_path):
    rows = [{k: v for k, v in r.items() if k != "cum"} for r in BTC_2021_ROWS]
    f = write_csv(tmp_path / "nocum.csv", rows, FIELDS[:-1])
    rc, out, _ = run(capsys, "margin", "--brackets", f, "--notional", "3556489.40")
    assert rc == 0 and "16,300.00" in out and "72,612.24" in out  # 3,556,489.40 x 2.5 % - 16,300


def test_current_snapshot_as_the_api_returns_it(capsys, tmp_path):
    """The preset's snapshot written as a GET /fapi/v1/leverageBracket response (two symbols): the same
    liquidation price as the preset; without --symbol the file is ambiguous (exit 2, names the symbols)."""
    p = venues.load_preset("binance_usdm")
    resp = []
    for sym in ("BTCUSDT", "ETHUSDT"):
        rows = p["symbols"][sym]
        caps = [r["floor"] for r in rows[1:]] + [p["max_notional"][sym]]
        resp.append({"symbol": sym, "brackets": [
            {"bracket": k + 1, "initialLeverage": r["max_leverage"], "notionalCap": cap, "notionalFloor": r["floor"],
             "maintMarginRatio": r["mmr"], "cum": r["cum"]}
            for k, (r, cap) in enumerate(zip(rows, caps, strict=True))]})
    f = tmp_path / "leverageBracket.json"
    f.write_text(json.dumps(resp))
    args = ["--side", "short", "--size", "40", "--entry", "95000", "--wallet", "150000"]
    rc, from_file, _ = run(capsys, "liq-price", "--brackets", str(f), "--symbol", "BTCUSDT", *args)
    assert rc == 0
    rc, from_preset, _ = run(capsys, "liq-price", "--venue", "binance_usdm", "--symbol", "BTCUSDT", *args)
    assert rc == 0 and from_file.splitlines()[1:] == from_preset.splitlines()[1:]
    rc, _, err = run(capsys, "liq-price", "--brackets", str(f), *args)
    assert rc == 2 and "holds 2 symbols (BTCUSDT, ETHUSDT); pick one with --symbol" in err


def _edit(rows, k, **kw):
    out = [dict(r) for r in rows]
    out[k].update(kw)
    return out


@pytest.mark.parametrize("rows, message", [
    (_edit(BTC_2021_ROWS, 2, notionalFloor=300000),
     "row 3 (line 4): notionalFloor 300,000 does not meet the notionalCap 250,000 of row 2 (line 3) (a gap"),
    (_edit(BTC_2021_ROWS, 2, notionalFloor=200000),
     "row 3 (line 4): notionalFloor 200,000 does not meet the notionalCap 250,000 of row 2 (line 3) (an overlap"),
    (_edit(BTC_2021_ROWS, 3, maintMarginRatio=0.008),
     "row 4 (line 5): maintMarginRatio 0.008 is below the 0.01 of row 3 (line 4) (rates must be non-decreasing)"),
    (_edit(BTC_2021_ROWS, 2, cum=1250),
     "row 3 (line 4): cum 1,250 disagrees with the recursion 1,300.00 = cum 50.00 + 250,000 x (0.01 - 0.005)"),
    (_edit(BTC_2021_ROWS, 1, maintMarginRatio="half"),
     "row 2 (line 3): maintMarginRatio must be a number (got 'half')"),
    (_edit(BTC_2021_ROWS, 0, notionalFloor=10), "row 1 (line 2): notionalFloor must be 0 in the first bracket"),
    (_edit(BTC_2021_ROWS, 4, initialLeverage=25),
     "row 5 (line 6): maintMarginRatio 0.05 must be below the initial margin rate 1/initialLeverage = 0.04"),
    (_edit(BTC_2021_ROWS, 1, notionalCap=""), "row 2 (line 3): notionalCap is missing"),
])
def test_bad_bracket_file_names_the_row_and_field(capsys, tmp_path, rows, message):
    f = write_csv(tmp_path / "bad.csv", rows)
    lp = ["liq-price", "--brackets", f, "--side", "long", "--size", "1", "--entry", "30000", "--wallet", "1000"]
    for argv in (lp, ["margin", "--brackets", f, "--notional", "1000"]):
        rc, _, err = run(capsys, *argv)
        assert rc == 2 and err.startswith(f"perpjax: input error: bad.csv: {message}")
    # JSON rows are named by their position in the list (no line numbers).
    (tmp_path / "bad.json").write_text(json.dumps([{"symbol": "X", "brackets": rows}]))
    rc, _, err = run(capsys, "margin", "--brackets", str(tmp_path / "bad.json"), "--notional", "1000")
    assert rc == 2 and "bad.json: row " in err


def test_bracket_file_errors(capsys, tmp_path):
    rc, _, err = run(capsys, "margin", "--brackets", str(tmp_path / "none.csv"), "--notional", "1")
    assert rc == 2 and "brackets: " in err and "No such file or directory" in err
    (tmp_path / "cols.csv").write_text("floor,mmr\n0,0.01\n")
    rc, _, err = run(capsys, "margin", "--brackets", str(tmp_path / "cols.csv"), "--notional", "1")
    assert rc == 2 and "missing column(s) notionalFloor, notionalCap, maintMarginRatio, initialLeverage" in err
    (tmp_path / "b.json").write_text("[{\"symbol\": \"BTCUSDT\", \"brackets\": []}")
    rc, _, err = run(capsys, "margin", "--brackets", str(tmp_path / "b.json"), "--notional", "1")
    assert rc == 2 and "not valid JSON" in err
    rc, _, err = run(capsys, "liq-price", "--cum", "5", "--side", "long", "--size", "1", "--entry", "1",
                     "--wallet", "1")
    assert rc == 2 and "cum: --cum needs --mmr" in err


def test_margin_binance_published_maintenance_amounts(capsys):
    """Binance's BTCUSDT table: cum 50 at 50k (0.5 %), 1,300 at 250k (1 %); MM(100k) = 450, MM(1M) = 8,700."""
    rc, out, _ = run(capsys, "margin", "--venue", "binance_usdm", "--symbol", "BTCUSDT", "--notional", "100000",
                     "1000000", "49999.99")
    assert rc == 0
    lines = out.splitlines()[2:]
    assert lines[0].split() == ["100,000.00", "2", "50,000.00", "0.5000%", "50.00", "450.00", "100"]
    assert lines[1].split() == ["1,000,000.00", "3", "250,000.00", "1.0000%", "1,300.00", "8,700.00", "50"]
    assert lines[2].split()[:2] == ["49,999.99", "1"]
    rc, _, err = run(capsys, "margin", "--venue", "binance_usdm", "--symbol", "BTCUSDT", "--notional", "-1")
    assert rc == 2 and "notional: must be a finite number >= 0" in err


# dYdX v4 TestGetFillablePrice: BTC 10 % maintenance, oracle $50,000; (side, quote balance, BA, SMMR, price).
DYDX_FILLABLE = [
    ("long", "-4501", "1", "0.1", "49,999.00", Fraction(49_999)),
    ("long", "-4501", "2", "0.1", "49,998.00", Fraction(49_998)),
    ("long", "-4501", "1", "0.2", "49,998.00", Fraction(49_998)),
    ("short", "5499", "1", "0.1", "50,001.00", Fraction(50_001)),
    ("short", "5499", "2", "0.1", "50,002.00", Fraction(50_002)),
    ("short", "5499", "1", "0.2", "50,002.00", Fraction(50_002)),
    ("long", "-5000", "1", "0.1", "49,500.00", Fraction(49_500)),  # at the bankruptcy price
    ("short", "5000", "1", "0.1", "50,500.00", Fraction(50_500)),
    ("long", "-5500", "1", "0.1", "49,500.00", Fraction(49_500)),  # below it: ABR clamps to 1
    ("short", "4500", "1", "0.1", "50,500.00", Fraction(50_500)),
    ("long", "-4501", "4294.967295", "0.1", "49,500.00", Fraction(49_500)),  # BA = max uint32 ppm
    ("long", "-4501", "1", "0.000001", "50,000.00", Fraction(4_999_999_999, 100_000)),  # SMMR 1 ppm
    ("long", "-4501", "1", "1", "49,990.00", Fraction(49_990)),
]


@pytest.mark.parametrize("side, balance, ba, smmr, shown, exact", DYDX_FILLABLE)
def test_dydx_fillable_price_unit_tests(capsys, side, balance, ba, smmr, shown, exact):
    rc, out, _ = run(capsys, "fillable-price", "--mmf", "0.1", "--side", side, "--size", "0.1", "--oracle", "50000",
                     "--quote-balance", balance, "--bankruptcy-adjustment", ba, "--spread-to-mmr", smmr)
    assert rc == 0 and out.startswith(f"dydx_v4 fillable price {shown}  (exact {exact.numerator}/{exact.denominator};")
    s = Fraction(1, 10) if side == "long" else Fraction(-1, 10)
    assert venues.dydx_fillable_price(50000, s, balance, "0.1", bankruptcy_adjustment=ba, spread_to_mmr=smmr) == exact


def test_dydx_fillable_price_two_positions(capsys):
    """0.004 BTC long ($200 at $50,000) and 0.1 ETH long ($300 at $3,000), balance -$490, both 10 %:
    TNC 10, TMMR 50, ABR 0.8; ETH fills at 372/125 quote quantums per base quantum = $2,976."""
    rc, out, _ = run(capsys, "fillable-price", "--mmf", "0.1", "--side", "long", "--size", "0.1", "--oracle", "3000",
                     "--quote-balance", "-490", "--other-nc", "200", "--other-mmr", "20", "--spread-to-mmr", "0.1")
    assert rc == 0 and "fillable price 2,976.00  (exact 2976/1;" in out
    # The preset's genesis config (SMMR 150 %) and the preset's MMF (large_cap 1.2 %) need no flags.
    rc, out, _ = run(capsys, "fillable-price", "--symbol", "BTC-USD", "--side", "long", "--size", "1", "--oracle",
                     "50000", "--quote-balance", "-49500")
    assert rc == 0 and "MMF 0.012, BA 1.0, SMMR 1.5" in out
    rc, _, err = run(capsys, "fillable-price", "--side", "long", "--size", "1", "--oracle", "1", "--quote-balance", "0")
    assert rc == 2 and "mmf: give --mmf, or --symbol" in err
    rc, _, err = run(capsys, "fillable-price", "--mmf", "x", "--side", "long", "--size", "1", "--oracle", "1",
                     "--quote-balance", "0")
    assert rc == 2 and "mmf: must be a number" in err


# TestGetFundingIndexDelta: (atomic resolution, price, exponent, rate ppm, seconds, expected).
DYDX_FUNDING = [
    (-12, 1_000, 0, 1_001_999, 8 * 3600, 1_001),
    (-12, 1_000, 0, -1_001_999, 8 * 3600, -1_001),
    (-4, 1_000, 2, -1_001_999, 8 * 3600 // 2, -5_009_995_000_000),
    (0, 1_000, -6, -1_001_999, 8 * 3600 // 8, -125_249_875),
]


@pytest.mark.parametrize("ar, price, expo, rate, secs, expected", DYDX_FUNDING)
def test_dydx_funding_index_delta_unit_tests(capsys, ar, price, expo, rate, secs, expected):
    rc, out, _ = run(capsys, "funding-index", "--rate-ppm", str(rate), "--seconds", str(secs), "--price", str(price),
                     "--price-exponent", str(expo), "--atomic-resolution", str(ar))
    assert rc == 0 and out.startswith(f"dydx_v4 funding index delta {expected} ")
    assert venues.dydx_funding_index_delta(rate, secs, price, expo, ar) == expected


# Drift v2 tests.rs: $10 shortage, 10x (margin ratio 0.1), oracle $100; (lf, if, quote price, base 1e9).
DRIFT = [
    ("0", "0", "1", 1_000_000_000),
    ("0", "0", "0.99", 1_010_101_010),
    ("0", "0", "1.01", 990_099_009),
    ("0.01", "0", "1", 1_111_111_111),
    ("0.01", "0.01", "1", 1_250_000_000),
]


@pytest.mark.parametrize("lf, iff, quote, expected", DRIFT)
def test_drift_base_to_cover_margin_shortage_unit_tests(capsys, lf, iff, quote, expected):
    rc, out, _ = run(capsys, "liq-size", "--shortage", "10", "--margin-ratio", "0.1", "--liquidator-fee", lf,
                     "--if-fee", iff, "--oracle", "100", "--quote-price", quote)
    assert rc == 0 and f"({expected} at BASE_PRECISION 1e9)" in out
    assert drift.base_to_cover_margin_shortage(10 * 10**6, 1000, int(float(lf) * 1e6), int(float(iff) * 1e6),
                                               100 * 10**6, round(float(quote) * 1e6)) == expected


def test_drift_edge_cases(capsys):
    assert drift.base_to_cover_margin_shortage(10**7, 100, 10_000, 0, 100 * 10**6) == drift.U64_MAX  # lf >= mr
    assert drift.liquidation_size(10, 0.1, 0.01, 0.01, 100) == pytest.approx(1.25, rel=1e-15)
    rc, out, _ = run(capsys, "liq-size", "--shortage", "10", "--margin-ratio", "0.01", "--liquidator-fee", "0.01",
                     "--oracle", "100")
    assert rc == 0 and "u64::MAX" in out
    rc, _, err = run(capsys, "liq-size", "--shortage", "10", "--margin-ratio", "0.12345", "--oracle", "100")
    assert rc == 2 and "margin-ratio: 0.12345 is not a multiple of 1/10000" in err


# --- the exact minimal cut of the ``buffer`` mode -------------------------------------------------------------


def _unit_health(collateral, size, entry, mid, mark, *, fee_rate, buffer, ladder, asset, slippage):
    seg = jnp.asarray(np.arange(len(collateral)))

    def health(f):
        return drift.health_after_cut(
            f, collateral=jnp.asarray(collateral), size=jnp.asarray(size), entry=jnp.asarray(entry),
            mid=jnp.asarray(mid), mark=jnp.asarray(mark), fee_rate=fee_rate, buffer=buffer, slippage=slippage,
            maintenance=lambda n: ladder.maintenance_and_rate(n, asset)[0], unit=lambda x: x[seg],
            unit_sum=lambda x: x)
    return health


def test_min_close_fraction_is_drifts_closed_form_without_slippage():
    """One tier, fills at mark, fee 2 % (Drift's lf 1 % + if 1 %): Drift's $10 shortage at 10 % gives 1.25 base."""
    from perpjax.margin import Ladder

    lad = Ladder.build([([0.0], [0.1], [0.2])], dtype=jnp.float64)
    # 10 coins at $100: MM 100; equity 90 -> shortage 10.
    h = _unit_health(np.array([90.0]), np.array([10.0]), np.array([100.0]), np.array([100.0]), np.array([100.0]),
                     fee_rate=0.02, buffer=0.0, ladder=lad, asset=jnp.array([0]), slippage=lambda n: 0.0 * n)
    f = drift.min_close_fraction(h, 1)
    assert float(f[0]) * 10 == pytest.approx(1.25, rel=1e-15, abs=0)
    assert float(h(f)[0]) >= 0 > float(h(jnp.nextafter(f, -1.0))[0]) - 1e-12


def test_min_close_fraction_exact_with_a_square_root_book_and_tiers():
    """Square-root book (health = c0 + c1 f - c2 f^1.5 in one tier: a cubic in sqrt(f), solved by numpy's
    eigenvalue roots) and a cut across a tier floor (scipy brentq to the last ulp): the same root to the
    cent of closed notional, with health >= 0 at it."""
    from scipy.optimize import brentq

    from perpjax.margin import Ladder

    lad = Ladder.build([([0.0, 5e4], [0.01, 0.02], [0.02, 0.04])], dtype=jnp.float64)
    d, d0, spread = 1e6, 0.005, 2e-4
    slip = lambda n: 0.5 * spread + d0 * jnp.sqrt(jnp.maximum(n / d, 1e-30)) / 1.5  # noqa: E731
    coll = np.array([1500.0, 1500.0, 3000.0, 3000.0, 3090.0])
    size = np.array([10.0, -10.0, 10.0, -10.0, 10.0])
    mark = np.full(5, 9000.0)
    mid = mark - size
    h = _unit_health(coll, size, mark, mid, mark, fee_rate=0.01, buffer=0.02, ladder=lad, asset=jnp.zeros(5, int),
                     slippage=slip)
    f = np.asarray(drift.min_close_fraction(h, 5))
    assert np.all(np.asarray(h(jnp.asarray(f))) >= 0)
    for i in range(5):
        ref = brentq(lambda x, i=i: float(h(jnp.asarray(np.where(np.arange(5) == i, x, 0.0)))[i]), 0, 1, xtol=1e-300)
        assert abs(f[i] - ref) * abs(size[i]) * mark[i] < 1e-6  # far below a cent of notional
    # Units 2-4 stay in tier 2 (rest > 50k): closed form. health(f) = c0 + c1 f - c2 f^1.5 with
    # c0 = coll - MM(N) - b N, c1 = N (mmr + b) + s (mid - mark) - fee Q - Q spread/2 (1 - fee sigma),
    # c2 = Q^1.5 d0 / (1.5 sqrt(D)) (1 - fee sigma); N = |s| mark, Q = |s| mid, sigma = sign(s).
    for i in (2, 3, 4):
        n, q, sg = abs(size[i]) * mark[i], abs(size[i]) * mid[i], np.sign(size[i])
        c0 = coll[i] - (n * 0.02 - 500.0) - 0.02 * n
        c1 = n * 0.04 + size[i] * (mid[i] - mark[i]) - 0.01 * q - q * spread / 2 * (1 - 0.01 * sg)
        c2 = q**1.5 * d0 / (1.5 * np.sqrt(d)) * (1 - 0.01 * sg)
        u = [r.real for r in np.roots([-c2, c1, 0.0, c0]) if abs(r.imag) < 1e-12 and 0 < r.real <= 1]
        assert abs(f[i] - min(u) ** 2) * n < 1e-6


def test_min_close_fraction_is_the_engines_cut():
    """The engine's ``buffer`` mode cut is the calculator's exact root (to a few ulps, rounded up to a healthy
    float); with ``newton_steps=0`` it is the bisection's 2^-14 bracket end above the root."""
    import dataclasses

    from perpjax.liquidation import DepthModel, Liquidation
    from perpjax.margin import Ladder

    lad = Ladder.build([([0.0, 5e4, 2.5e5], [0.005, 0.01, 0.02], [0.01, 0.02, 0.04]),
                        ([0.0, 1e5], [0.01, 0.015], [0.02, 0.03])], dtype=jnp.float64)
    depth = DepthModel(jnp.asarray([2e6, 5e5]), jnp.asarray([2e-4, 4e-4]))
    liq = Liquidation(depth=depth, fee_rate=jnp.asarray(0.005), buffer=jnp.asarray(0.02), mode="buffer")
    # Two units: a cross account (BTC long, ETH short) and an isolated ETH long.
    unit, asset = jnp.array([0, 0, 1]), jnp.array([0, 1, 1])
    size, entry = jnp.array([3.0, -40.0, 60.0]), jnp.array([95_000.0, 3_300.0, 3_600.0])
    mark, mid = jnp.array([90_000.0, 3_450.0, 3_350.0]), jnp.array([89_950.0, 3_452.0, 3_349.0])
    coll = jnp.array([30_000.0, 20_000.0])
    unit_sum = lambda x: jax.ops.segment_sum(x, unit, 2)  # noqa: E731
    spread = lambda x: x[unit]  # noqa: E731
    hi = liq.min_fraction(coll, size, entry, mid, mark, asset, spread, unit_sum, lad, None, buffer=liq.buffer)

    def health(f):
        return drift.health_after_cut(f, collateral=coll, size=size, entry=entry, mid=mid, mark=mark,
                                      fee_rate=liq.fee_rate, buffer=liq.buffer,
                                      slippage=lambda n: depth.slippage(n, asset), unit=spread, unit_sum=unit_sum,
                                      maintenance=lambda n: lad.maintenance_and_rate(n, asset)[0])

    assert np.all(np.asarray(health(jnp.zeros(2))) < 0)
    f = drift.min_close_fraction(health, 2)
    assert np.all(np.asarray(health(f)) >= 0)
    cut = np.asarray(hi)
    assert np.all(np.asarray(health(jnp.asarray(cut))) >= 0)
    np.testing.assert_allclose(cut, np.asarray(f), rtol=1e-14)
    old = dataclasses.replace(liq, newton_steps=0).min_fraction(coll, size, entry, mid, mark, asset, spread, unit_sum,
                                                                 lad, None, buffer=liq.buffer)
    assert np.all(np.asarray(f) <= np.asarray(old)) and np.all(np.asarray(f) > np.asarray(old) - 2.0**-14)
    assert np.all(np.asarray(old) - cut > 1e-9)  # the bisection's rounding up, gone
    fj = jax.jit(lambda: drift.min_close_fraction(health, 2))()  # jitted: the same root to the last ulps
    np.testing.assert_allclose(np.asarray(fj), np.asarray(f), rtol=1e-14)


def test_min_close_fraction_bounds():
    """Healthy already: 0. No fraction restores health (bankrupt at the fill): 1."""
    from perpjax.margin import Ladder

    lad = Ladder.build([([0.0], [0.1], [0.2])], dtype=jnp.float64)
    kw = dict(fee_rate=0.02, buffer=0.0, ladder=lad, asset=jnp.array([0, 0]), slippage=lambda n: 0.0 * n)
    h = _unit_health(np.array([200.0, 1.0]), np.array([10.0, 10.0]), np.full(2, 100.0), np.full(2, 100.0),
                     np.full(2, 100.0), **kw)
    assert np.asarray(drift.min_close_fraction(h, 2)).tolist() == [0.0, 1.0]


def test_min_close_fraction_under_jit_vmap_and_grad():
    """The solve carries no gradient, so a loss through it differentiates (the engine's implicit-gradient
    path), and it maps over paths."""
    def solve(fee):
        h = lambda f: 90.0 - fee * f * 1000 - (1 - f) * 100.0 - 0.5 * f**1.5  # noqa: E731
        f = drift.min_close_fraction(h, 1)
        return jnp.sum(h(f)), f

    fees = jnp.array([0.01, 0.02])
    g = jax.jit(jax.vmap(jax.grad(lambda x: solve(x)[0])))(fees)
    f = jax.vmap(lambda x: solve(x)[1])(fees)[:, 0]
    np.testing.assert_allclose(np.asarray(g), -1000 * np.asarray(f), rtol=1e-12)  # dh/dfee at fixed f


def test_config_ladder_from_a_bracket_file(tmp_path):
    from perpjax.config import ConfigError, build_model, load_config

    f = tmp_path / "lb.json"
    f.write_text(json.dumps([{"symbol": "BTCUSDT", "brackets": BTC_2021_ROWS}]))
    _, _, resolved = build_model(load_config(None, [f"ladders.BTC={f}:BTCUSDT"]))
    assert resolved["ladders"]["BTC"][3] == {"floor": 1e6, "mmr": 0.025, "imr": 0.05}
    bad = write_csv(tmp_path / "gap.csv", _edit(BTC_2021_ROWS, 2, notionalFloor=300000))
    with pytest.raises(ConfigError, match=r"ladders.BTC: gap.csv: row 3 \(line 4\): notionalFloor 300,000"):
        build_model(load_config(None, [f"ladders.BTC={bad}"]))


def test_buffer_cut_is_the_smallest_root_when_health_dips_again():
    """A thin book: health rises from below zero, peaks, and falls again (the fill's cost grows like f^1.5), so
    closing everything is bankrupt while a small cut restores health. Closed form: 10 coins at $100, MM 10 %,
    no fee, slip(n) = 0.2 sqrt(n / $1000), collateral 98: h(f) = -2 + 100 f - 200 f^1.5, a cubic in sqrt(f)
    with two roots in (0, 1). A bisection of [0, 1] that trusts one sign change sees h(0.5) < 0 and closes in
    full into bad debt (what the engine did before); the cut must be the smallest root, rounded up by at most
    a few ulps (the engine's Newton polish of the bisection's bracket)."""
    from perpjax.liquidation import DepthModel, Liquidation
    from perpjax.margin import Ladder

    lad = Ladder.build([([0.0], [0.1], [0.2])], dtype=jnp.float64)
    depth = DepthModel(jnp.asarray([1000.0 / 3600.0]), jnp.asarray([0.0]))  # 0.005 sqrt(n/D) / 1.5 = 0.2 sqrt(n/1000)
    liq = Liquidation(depth=depth, fee_rate=jnp.asarray(0.0), mode="buffer")
    p = jnp.array([100.0])
    args = (jnp.array([98.0]), jnp.array([10.0]), p, p, p, jnp.array([0]), lambda x: x, lambda x: x, lad, None)
    cut = float(liq.min_fraction(*args, buffer=liq.buffer)[0])
    u = sorted(r.real for r in np.roots([-200.0, 100.0, 0.0, -2.0]) if abs(r.imag) < 1e-12 and 0 < r.real < 1)
    assert len(u) == 2  # two roots in (0, 1): health is positive only between them
    f1 = u[0] ** 2
    h = lambda f: -2 + 100 * f - 200 * f**1.5  # noqa: E731
    assert h(0.5) < 0 and h(1.0) < 0 <= h(cut)
    assert f1 <= cut <= f1 * (1 + 1e-14), (cut, f1)
