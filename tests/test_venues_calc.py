"""Exact venue calculators against published worked examples and exchange-reported values."""

import numpy as np
import pytest

from perpjax import venues
from perpjax.cli import main
from perpjax.venues import Brackets

# Binance FAQ "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts" example
# (wallet 1,535,443.01; BTC mark 31,967.27, ETH mark 1,335.18), as reproduced with every input
# consistent in freqtrade's tests/exchange/test_binance.py::test_liquidation_price_binance.
WB = 1_535_443.01
BINANCE_CASES = [
    # side, size, entry, mmr, cum, other_mm, other_upnl, expected LP
    ("long", 3683.979, 1456.84, 0.10, 135_365.0, 71_200.81144, -56_354.57, 1153.26),  # ETH cross
    ("long", 109.488, 32481.98, 0.025, 16_300.0, 356_512.508, -448_192.89, 26316.89),  # BTC cross
    ("long", 3683.979, 1456.84, 0.10, 135_365.0, 0.0, 0.0, 1114.78),  # ETH isolated
    ("long", 109.488, 32481.98, 0.025, 16_300.0, 0.0, 0.0, 18778.73),  # BTC isolated
]


@pytest.mark.parametrize("side, size, entry, mmr, cum, tmm, upnl, expected", BINANCE_CASES)
def test_binance_liquidation_price_worked_example_to_the_cent(side, size, entry, mmr, cum, tmm, upnl, expected):
    lp = venues.binance_liquidation_price_in_bracket(WB, size, entry, side, mmr, cum, tmm, upnl)
    assert round(lp, 2) == expected


def test_binance_chooses_the_bracket_at_the_liquidation_price():
    # The BTCUSDT table of the example's time (floors 0/50k/250k/1M/10M, cum 0/50/1,300/16,300/266,300):
    # the notional at entry (3.56M) and at the liquidation price both sit in the 2.5 % bracket.
    old = Brackets(np.array([0, 5e4, 2.5e5, 1e6, 1e7]), np.array([0.004, 0.005, 0.01, 0.025, 0.05]),
                   np.array([125, 100, 50, 20, 10.0]), np.array([0, 50, 1300, 16300, 266300.0]))
    assert round(venues.binance_liquidation_price(WB, 109.488, 32481.98, "long", old, 356_512.508, -448_192.89),
                 2) == 26316.89
    assert round(venues.binance_liquidation_price(WB, 109.488, 32481.98, "long", old), 2) == 18778.73
    # A position that crosses into a lower bracket at its liquidation price uses that bracket:
    # 100 BTC long at 32,000 with 2.5M margin: entry notional 3.2M (2.5 %), LP ~ 7.1k -> notional 0.71M (1 %).
    lp = venues.binance_liquidation_price(2.5e6, 100, 32_000, "long", old)
    assert old.tier(100 * lp) == 2
    at_entry_bracket = venues.binance_liquidation_price_in_bracket(2.5e6, 100, 32_000, "long", 0.025, 16_300)
    assert abs(lp - at_entry_bracket) > 1.0
    # ... and at that price equity equals maintenance margin exactly.
    assert 2.5e6 + 100 * (lp - 32_000) == pytest.approx(old.maintenance(100 * lp), abs=1e-6)


# Hyperliquid: exchange-reported liquidation prices of live isolated positions (freqtrade,
# tests/exchange/test_hyperliquid.py); maintenance rate = 1 / (2 x max leverage at the time).
HL_CASES = [
    ("short", 2642.8, 0.019, 25.091876, 50, 3924.18322043),  # ETH
    ("short", 67400.0, 0.00031, 20.887308, 50, 133443.97317151),  # BTC
    ("long", 66930.0, 0.0015, 20.043862, 50, 54108.51043771),  # BTC
    ("long", 173.06, 0.6, 20.735658, 20, 142.05186667),  # SOL
]


@pytest.mark.parametrize("side, entry, size, margin, max_lev, expected", HL_CASES)
def test_hyperliquid_liquidation_price_matches_exchange(side, entry, size, margin, max_lev, expected):
    br = Brackets(np.array([0.0]), np.array([0.5 / max_lev]), np.array([float(max_lev)]), np.array([0.0]))
    # The reported collateral is rounded to 1e-6 USDC: the price agrees to well under a cent.
    assert venues.hyperliquid_liquidation_price(margin, size, entry, side, br) == pytest.approx(expected, abs=2e-3)


def test_dydx_liquidation_price_docs_examples():
    assert round(venues.dydx_liquidation_price(1000.0, -3.0, 3000.0, 0.05), 2) == 3174.60  # isolated
    assert round(venues.dydx_liquidation_price(1000.0, -1.5, 3000.0, 0.05, other_mm=175.0), 2) == 3380.95  # cross


def test_bankruptcy_price_zeroes_equity():
    for side, s in (("long", 1), ("short", -1)):
        bk = venues.bankruptcy_price(1_000.0, 2.0, 50_000.0, side)
        assert 1_000.0 + s * 2.0 * (bk - 50_000.0) == pytest.approx(0.0, abs=1e-9)


def test_hyperliquid_hourly_funding_vector():
    # Settled coin-hour (third-party check of 494 hours): premium -0.0005591732 -> rate -0.0000073966.
    assert round(venues.funding_rate([-0.0005591732], "hyperliquid"), 10) == -0.0000073966
    assert venues.funding_rate([0.5], "hyperliquid") == 0.04  # 4 %/hour cap


def test_binance_funding_is_interest_inside_the_band_and_weights_linearly():
    # Binance FAQ: with the premium between -0.04 % and 0.06 %, the rate is the 0.01 % interest.
    for p in (-0.0004, 0.0, 0.0006):
        assert venues.funding_rate([p] * 10, "binance_usdm") == pytest.approx(0.0001, abs=1e-15)
    # Linear time weights 1..n (clamp 0 exposes the averaged premium): a late spike counts n times an early one.
    early = venues.funding_rate([0.002] + [0.0] * 9, "binance_usdm", clamp=0.0)
    late = venues.funding_rate([0.0] * 9 + [0.002], "binance_usdm", clamp=0.0)
    assert late == pytest.approx(10 * early)
    assert venues.funding_rate([0.05] * 3, "binance_usdm") == 0.003  # cap


@pytest.mark.parametrize("venue, symbol", [("binance_usdm", "BTCUSDT"), ("binance_usdm", "ETHUSDT"),
                                           ("hyperliquid", "BTC"), ("hyperliquid", "ETH"), ("dydx_v4", "BTC-USD")])
def test_presets_are_consistent_ladders(venue, symbol):
    from perpjax.margin import validate_tiers

    br = venues.brackets(venue, symbol)  # raises if the published cum disagrees with the recursion
    validate_tiers(f"{venue}.{symbol}", br.floors, br.mmr, br.imr)
    # Binance's published maintenance amounts: 50 at 50k, 1,300 at 250k for BTCUSDT.
    if symbol == "BTCUSDT":
        assert br.maintenance(100_000) == pytest.approx(450.0) and br.maintenance(1e6) == pytest.approx(8_700.0)


def test_preset_errors_name_the_field():
    with pytest.raises(ValueError, match="venue: unknown venue 'okx'"):
        venues.brackets("okx", "BTC")
    with pytest.raises(ValueError, match="symbol: 'DOGEUSDT' not in the binance_usdm preset"):
        venues.brackets("binance_usdm", "DOGEUSDT")
    with pytest.raises(ValueError, match="side: must be 'long' or 'short'"):
        venues.bankruptcy_price(1.0, 1.0, 1.0, "flat")


def test_cli_liq_price_and_errors(capsys):
    assert main(["liq-price", "--venue", "binance_usdm", "--symbol", "BTCUSDT", "--side", "short", "--size", "2",
                 "--entry", "95000", "--wallet", "10000"]) == 0
    out = capsys.readouterr().out
    lp = venues.binance_liquidation_price(10_000, 2, 95_000, "short", venues.brackets("binance_usdm", "BTCUSDT"))
    assert f"{lp:,.2f}" in out and "bankruptcy price    100,000.00" in out
    assert main(["liq-price", "--venue", "okx", "--symbol", "BTC", "--side", "long", "--size", "1",
                 "--entry", "1", "--wallet", "1"]) == 2
    assert "venue: unknown venue" in capsys.readouterr().err
    assert main(["funding-rate", "--venue", "hyperliquid", "--", "-0.0005591732"]) == 0
    assert "-0.0000073966" in capsys.readouterr().out


def test_config_ladder_from_preset():
    from perpjax.config import build_model, load_config

    model, _, resolved = build_model(load_config(None, ["ladders.BTC=binance_usdm:BTCUSDT"]))
    assert resolved["ladders"]["BTC"][1] == {"floor": 50000.0, "mmr": 0.005, "imr": 0.01}
    assert model.ladder.n_tiers[0] == 10


def test_ladder_must_cover_the_position():
    br = venues.brackets("binance_usdm", "BTCUSDT")
    with pytest.raises(ValueError, match="exceeds the last bracket's cap 500,000,000"):
        venues.binance_liquidation_price(1e9, 6_000, 95_000, "long", br)


def test_forced_execution_cost_is_superlinear_in_size():
    """Doubling the forced order more than doubles its cost (square-root and other power-law depths)."""
    import jax.numpy as jnp

    from perpjax.liquidation import DepthModel

    for e in (0.3, 0.5, 1.0):
        d = DepthModel(jnp.asarray([1e6], jnp.float64), jnp.asarray([2e-4], jnp.float64), 0.005, e)
        q = np.array([1e4, 1e5, 1e6, 1e7])
        cost = q * np.asarray(d.slippage(jnp.asarray(q[:, None]))[:, 0])
        cost2 = 2 * q * np.asarray(d.slippage(jnp.asarray(2 * q[:, None]))[:, 0])
        assert np.all(cost2 > 2 * cost)


def test_brackets_are_checked_by_the_margin_rules():
    """A bracket table is checked on construction by ``margin.validate_tiers`` (IMR = 1 / max leverage) and
    ``margin.validate_continuity`` (published cum against the recursion), errors naming the table."""
    f, lev = np.array([0.0, 5e4]), np.array([125.0, 100.0])
    Brackets(f, np.array([0.004, 0.005]), lev, np.array([0.0, 50.0]), name="x.BTC")  # consistent
    with pytest.raises(ValueError, match=r"x\.BTC: published cum \[0.0, 60.0\] disagrees with the recursion"):
        Brackets(f, np.array([0.004, 0.005]), lev, np.array([0.0, 60.0]), name="x.BTC")
    with pytest.raises(ValueError, match=r"x\.BTC\.mmr: maintenance rates must be non-decreasing"):
        Brackets(f, np.array([0.005, 0.004]), lev, np.array([0.0, -50.0]), name="x.BTC")
    with pytest.raises(ValueError, match=r"x\.BTC\.floor: floors must be strictly increasing"):
        Brackets(np.array([0.0, 0.0]), np.array([0.004, 0.005]), lev, np.array([0.0, 0.0]), name="x.BTC")
    with pytest.raises(ValueError, match="brackets: tier 0 has mmr 0.01 >= imr 0.008"):
        Brackets(np.array([0.0]), np.array([0.01]), np.array([125.0]), np.array([0.0]))
