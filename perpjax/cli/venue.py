"""Exact venue calculators, no Monte Carlo.

``perpjax liq-price`` (Binance / Hyperliquid / dYdX v4 liquidation price; a preset, a bracket file or one
published bracket), ``perpjax margin`` (MM(N), its bracket and cum), ``perpjax funding-rate``,
``perpjax fillable-price`` and ``perpjax funding-index`` (dYdX v4, as the chain computes them) and
``perpjax liq-size`` (Drift v2's base amount to cover a margin shortage). Bad input: one line on stderr
naming the field (or the file, row and field), exit 2.
"""

from __future__ import annotations

import sys

_BRACKETS_HELP = ("a bracket table: Binance's GET /fapi/v1/leverageBracket response (JSON) or a CSV with its fields "
                  "bracket,initialLeverage,notionalCap,notionalFloor,maintMarginRatio[,cum]; cum is computed by "
                  "the recursion and, where given, checked")


def register(sub) -> None:
    lp = sub.add_parser("liq-price", help="exact liquidation and bankruptcy price of one position (no Monte Carlo)",
                        description="Liquidation price of one position by the venue's formula, with the bracket that "
                                    "contains the notional at the liquidation price. The ladder comes from a preset "
                                    "(--venue, --symbol), a bracket file (--brackets) or one bracket as published "
                                    "(--mmr, --cum; Binance's formula).")
    lp.add_argument("--venue", default=None,
                    help="binance_usdm, hyperliquid or dydx_v4 (default binance_usdm with --brackets or --mmr)")
    lp.add_argument("--symbol", default=None,
                    help="e.g. BTCUSDT (binance_usdm), BTC (hyperliquid), BTC-USD (dydx_v4); picks one symbol of a "
                         "multi-symbol bracket file")
    src = lp.add_mutually_exclusive_group()
    src.add_argument("--brackets", metavar="FILE", default=None, help=_BRACKETS_HELP)
    src.add_argument("--mmr", type=float, default=None, help="maintenance margin rate of the bracket at the "
                                                             "liquidation price, as published (with --cum)")
    lp.add_argument("--cum", type=float, default=None, help="that bracket's maintenance amount (Binance 'cum'; "
                                                            "default 0, with --mmr)")
    lp.add_argument("--side", required=True, choices=["long", "short"])
    lp.add_argument("--size", type=float, required=True, help="position size in base units (> 0)")
    lp.add_argument("--entry", type=float, required=True, help="entry price (USD)")
    lp.add_argument("--wallet", type=float, required=True,
                    help="wallet balance (cross) or isolated margin (USD); dYdX: equity")
    lp.add_argument("--other-mm", type=float, default=0.0, help="maintenance margin of the account's other positions")
    lp.add_argument("--other-upnl", type=float, default=0.0, help="unrealised PnL of the account's other positions")
    lp.set_defaults(func=liq_price)

    mg = sub.add_parser("margin", help="maintenance margin MM(N) of a notional, its bracket and cum (no Monte Carlo)",
                        description="MM(N) = N x MMR_k - cum_k with the bracket k that contains N.")
    mg.add_argument("--venue", default=None, help="binance_usdm, hyperliquid or dydx_v4 (a preset)")
    mg.add_argument("--symbol", default=None, help="the preset's symbol, or one symbol of a bracket file")
    mg.add_argument("--brackets", metavar="FILE", default=None, help=_BRACKETS_HELP)
    mg.add_argument("--notional", type=float, required=True, nargs="+", help="position notional(s), USD")
    mg.set_defaults(func=margin)

    fr = sub.add_parser("funding-rate", help="funding rate of one interval from premium samples (no Monte Carlo)")
    fr.add_argument("--venue", required=True, help="binance_usdm or hyperliquid")
    fr.add_argument("premiums", nargs="+", type=float, help="premium index samples in time order (fractions)")
    fr.set_defaults(func=funding_rate)

    fp = sub.add_parser("fillable-price", help="dYdX v4 liquidation fillable price (exact, as the chain)",
                        description="dYdX v4 GetFillablePrice: (PNNV - ABR x SMMR x PMMR) / PS, "
                                    "ABR = clamp(BA x (1 - TNC / TMMR), 0, 1).")
    fp.add_argument("--venue", default="dydx_v4", choices=["dydx_v4"])
    fp.add_argument("--symbol", default=None, help="a preset symbol (BTC-USD, ETH-USD) for its maintenance fraction")
    fp.add_argument("--mmf", default=None, help="maintenance margin fraction of the position's liquidity tier")
    fp.add_argument("--side", required=True, choices=["long", "short"])
    fp.add_argument("--size", required=True, help="position size in coins (> 0)")
    fp.add_argument("--oracle", required=True, help="oracle price (USD)")
    fp.add_argument("--quote-balance", required=True, help="the subaccount's USDC balance (may be negative)")
    fp.add_argument("--other-nc", default="0", help="net notional of the subaccount's other positions (USD)")
    fp.add_argument("--other-mmr", default="0", help="maintenance requirement of its other positions (USD)")
    fp.add_argument("--bankruptcy-adjustment", default=None, help="BA (fraction; preset: genesis value)")
    fp.add_argument("--spread-to-mmr", default=None, help="SMMR (fraction; preset: genesis value)")
    fp.set_defaults(func=fillable_price)

    fi = sub.add_parser("funding-index", help="dYdX v4 funding-index delta (the chain's integers)",
                        description="dYdX v4 GetFundingIndexDelta: trunc(trunc(seconds x rate_ppm x price x "
                                    "10^(exponent + atomic_resolution + 6)) / 28800).")
    fi.add_argument("--rate-ppm", type=int, required=True, help="8-hour funding rate in ppm (e.g. 100 = 0.01%%)")
    fi.add_argument("--seconds", type=int, required=True, help="seconds since the last funding tick")
    fi.add_argument("--price", type=int, required=True, help="market price value (integer, with --price-exponent)")
    fi.add_argument("--price-exponent", type=int, required=True, help="market price exponent")
    fi.add_argument("--atomic-resolution", type=int, required=True, help="the perpetual's atomic resolution")
    fi.set_defaults(func=funding_index)

    ls = sub.add_parser("liq-size", help="Drift v2 base amount to cover a margin shortage (exact, as the program)",
                        description="Drift v2 calculate_base_asset_amount_to_cover_margin_shortage: "
                                    "shortage / (P q (mr - lf) - P if), in Drift's fixed-point integers.")
    ls.add_argument("--venue", default="drift", choices=["drift"])
    ls.add_argument("--shortage", required=True, help="margin shortage (USD, 1e-6 precision)")
    ls.add_argument("--margin-ratio", required=True,
                    help="maintenance margin ratio plus the liquidation buffer (fraction, 1e-4 precision)")
    ls.add_argument("--liquidator-fee", default="0", help="liquidator fee (fraction, 1e-6 precision)")
    ls.add_argument("--if-fee", default="0", help="insurance-fund liquidation fee (fraction, 1e-6 precision)")
    ls.add_argument("--oracle", required=True, help="oracle price (USD, 1e-6 precision)")
    ls.add_argument("--quote-price", default="1", help="quote (USDC) oracle price (USD, 1e-6 precision)")
    ls.set_defaults(func=liq_size)


def _fail(e) -> int:
    print(f"perpjax: input error: {e}", file=sys.stderr)
    return 2


def _ladder(a, venues):
    """Brackets from --brackets FILE or from the preset (--venue, --symbol)."""
    if a.brackets is not None:
        return venues.read_brackets(a.brackets, a.symbol)
    if a.venue is None or a.symbol is None:
        raise ValueError("brackets: give --brackets FILE, or --venue and --symbol for a preset")
    return venues.brackets(a.venue, a.symbol)


def liq_price(a) -> int:
    from .. import venues

    try:
        if a.cum is not None and a.mmr is None:
            raise ValueError("cum: --cum needs --mmr (or use --brackets FILE)")
        venue = a.venue or ("binance_usdm" if a.brackets is not None or a.mmr is not None else None)
        if venue is None:
            raise ValueError("venue: give --venue (binance_usdm, hyperliquid or dydx_v4), --brackets FILE or --mmr")
        if (a.brackets is not None or a.mmr is not None) and venue != "binance_usdm":
            raise ValueError(f"venue: --brackets and --mmr use Binance's formula (venue binance_usdm, got {venue})")
        br = None
        if a.mmr is not None:
            if not 0 <= a.mmr < 1:
                raise ValueError(f"mmr: must lie in [0, 1) (got {a.mmr})")
            cum = 0.0 if a.cum is None else a.cum
            lp = venues.binance_liquidation_price_in_bracket(a.wallet, a.size, a.entry, a.side, a.mmr, cum,
                                                             a.other_mm, a.other_upnl)
            lp = max(lp, 0.0)
        else:
            a.venue = venue
            br = _ladder(a, venues)
            if venue == "binance_usdm":
                lp = venues.binance_liquidation_price(a.wallet, a.size, a.entry, a.side, br, a.other_mm, a.other_upnl)
            elif venue == "hyperliquid":
                lp = venues.hyperliquid_liquidation_price(a.wallet + a.other_upnl - a.other_mm, a.size, a.entry,
                                                          a.side, br)
            else:
                signed = a.size if a.side == "long" else -a.size
                lp = venues.dydx_liquidation_price(a.wallet, signed, a.entry, float(br.mmr[0]), a.other_mm)
        bk = venues.bankruptcy_price(a.wallet + a.other_upnl - a.other_mm, a.size, a.entry, a.side)
    except (ValueError, OSError) as e:
        return _fail(e)
    source = (f"brackets {a.brackets}" if a.brackets else f"MMR {a.mmr:.4%} cum {a.cum or 0:,.2f}" if a.mmr is not None
              else f"symbol {a.symbol}")
    print(f"venue {venue}  {source}  {a.side} {a.size:g} @ {a.entry:,.2f}  wallet {a.wallet:,.2f}")
    print(f"  liquidation price   {lp:,.2f}" if lp > 0 else "  liquidation price   -- (cannot be liquidated)")
    if br is not None and lp > 0:
        k = br.tier(a.size * lp)
        print(f"  bracket at LP       {k + 1} (floor {br.floors[k]:,.0f}, MMR {br.mmr[k]:.4%}, cum {br.cum[k]:,.2f})")
    print(f"  bankruptcy price    {bk:,.2f}" if bk > 0 else "  bankruptcy price    -- (none)")
    return 0


def margin(a) -> int:
    from .. import venues

    try:
        br = _ladder(a, venues)
        rows = [(n, venues.margin_at(br, n)) for n in a.notional]
    except (ValueError, OSError) as e:
        return _fail(e)
    print(f"{a.brackets or f'{a.venue} {a.symbol}'}: MM(N) = N x MMR_k - cum_k")
    print(f"  {'notional':>18} {'bracket':>7} {'floor':>16} {'MMR':>9} {'cum':>16} {'MM(N)':>16} {'max lev':>7}")
    for n, m in rows:
        print(f"  {n:>18,.2f} {m['bracket']:>7d} {m['floor']:>16,.2f} {m['mmr']:>9.4%} {m['cum']:>16,.2f} "
              f"{m['maintenance']:>16,.2f} {m['max_leverage']:>7g}")
    return 0


def funding_rate(a) -> int:
    from .. import venues

    try:
        r = venues.funding_rate(a.premiums, a.venue)
    except ValueError as e:
        return _fail(e)
    print(f"{a.venue} funding rate {r:.10f} ({r:.6%}) from {len(a.premiums)} premium samples")
    return 0


def fillable_price(a) -> int:
    from .. import venues

    try:
        p = venues.load_preset(a.venue)
        if (a.mmf is None) == (a.symbol is None):
            raise ValueError("mmf: give --mmf, or --symbol for the preset's maintenance fraction (not both)")
        mmf = a.mmf if a.mmf is not None else float(venues.brackets(a.venue, a.symbol).mmr[0])
        size = venues.as_fraction("size", a.size)
        if size <= 0:
            raise ValueError(f"size: must be > 0 (got {a.size}); the side goes in --side")
        ba = p["liquidation"]["bankruptcy_adjustment"] if a.bankruptcy_adjustment is None else a.bankruptcy_adjustment
        sm = p["liquidation"]["spread_to_maintenance_margin_ratio"] if a.spread_to_mmr is None else a.spread_to_mmr
        fp = venues.dydx_fillable_price(a.oracle, size if a.side == "long" else -size, a.quote_balance, mmf,
                                        other_nc=a.other_nc, other_mmr=a.other_mmr, bankruptcy_adjustment=ba,
                                        spread_to_mmr=sm)
    except ValueError as e:
        return _fail(e)
    print(f"dydx_v4 fillable price {float(fp):,.2f}  (exact {fp.numerator}/{fp.denominator}; {a.side} {a.size} "
          f"@ oracle {a.oracle}, MMF {mmf}, BA {ba}, SMMR {sm})")
    return 0


def funding_index(a) -> int:
    from .. import venues

    try:
        d = venues.dydx_funding_index_delta(a.rate_ppm, a.seconds, a.price, a.price_exponent, a.atomic_resolution)
    except ValueError as e:
        return _fail(e)
    from fractions import Fraction

    usd = Fraction(d) * Fraction(10) ** (-12 - a.atomic_resolution)
    print(f"dydx_v4 funding index delta {d} (ppm quote quantums per base quantum) = {float(usd):,.6f} USD per coin")
    return 0


def liq_size(a) -> int:
    from .. import drift

    try:
        args = (drift.to_fixed("shortage", a.shortage, drift.QUOTE_PRECISION),
                drift.to_fixed("margin-ratio", a.margin_ratio, drift.MARGIN_PRECISION),
                drift.to_fixed("liquidator-fee", a.liquidator_fee, drift.LIQUIDATION_FEE_PRECISION),
                drift.to_fixed("if-fee", a.if_fee, drift.LIQUIDATION_FEE_PRECISION),
                drift.to_fixed("oracle", a.oracle, drift.PRICE_PRECISION),
                drift.to_fixed("quote-price", a.quote_price, drift.PRICE_PRECISION))
        base = drift.base_to_cover_margin_shortage(*args)
    except ValueError as e:
        return _fail(e)
    if base == drift.U64_MAX:
        print("drift base to cover the shortage: all of it (the fee is at or above the margin ratio; "
              "Drift returns u64::MAX)")
        return 0
    print(f"drift base to cover the shortage {base / drift.BASE_PRECISION:.9f} ({base} at BASE_PRECISION 1e9); "
          f"notional at oracle {base * args[4] / (drift.BASE_PRECISION * drift.PRICE_PRECISION):,.2f}")
    return 0

