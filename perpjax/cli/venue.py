"""Exact venue calculators, no Monte Carlo: ``perpjax liq-price`` and ``perpjax funding-rate``."""

from __future__ import annotations

import sys


def register(sub) -> None:
    lp = sub.add_parser("liq-price", help="exact liquidation and bankruptcy price of one position (no Monte Carlo)")
    lp.add_argument("--venue", required=True, help="binance_usdm, hyperliquid or dydx_v4")
    lp.add_argument("--symbol", required=True, help="e.g. BTCUSDT (binance_usdm), BTC (hyperliquid), BTC-USD (dydx_v4)")
    lp.add_argument("--side", required=True, choices=["long", "short"])
    lp.add_argument("--size", type=float, required=True, help="position size in base units (> 0)")
    lp.add_argument("--entry", type=float, required=True, help="entry price (USD)")
    lp.add_argument("--wallet", type=float, required=True,
                    help="wallet balance (cross) or isolated margin (USD); dYdX: equity")
    lp.add_argument("--other-mm", type=float, default=0.0, help="maintenance margin of the account's other positions")
    lp.add_argument("--other-upnl", type=float, default=0.0, help="unrealised PnL of the account's other positions")
    fr = sub.add_parser("funding-rate", help="funding rate of one interval from premium samples (no Monte Carlo)")
    fr.add_argument("--venue", required=True, help="binance_usdm or hyperliquid")
    fr.add_argument("premiums", nargs="+", type=float, help="premium index samples in time order (fractions)")
    lp.set_defaults(func=liq_price)
    fr.set_defaults(func=funding_rate)


def liq_price(a) -> int:
    from .. import venues

    try:
        br = venues.brackets(a.venue, a.symbol)
        if a.venue == "binance_usdm":
            lp = venues.binance_liquidation_price(a.wallet, a.size, a.entry, a.side, br, a.other_mm, a.other_upnl)
        elif a.venue == "hyperliquid":
            lp = venues.hyperliquid_liquidation_price(a.wallet + a.other_upnl - a.other_mm, a.size, a.entry, a.side, br)
        else:
            signed = a.size if a.side == "long" else -a.size
            lp = venues.dydx_liquidation_price(a.wallet, signed, a.entry, float(br.mmr[0]), a.other_mm)
        bk = venues.bankruptcy_price(a.wallet + a.other_upnl - a.other_mm, a.size, a.entry, a.side)
    except ValueError as e:
        print(f"perpjax: input error: {e}", file=sys.stderr)
        return 2
    k = br.tier(a.size * lp) if lp > 0 else None
    print(f"venue {a.venue}  symbol {a.symbol}  {a.side} {a.size:g} @ {a.entry:,.2f}  wallet {a.wallet:,.2f}")
    print(f"  liquidation price   {lp:,.2f}" if lp > 0 else "  liquidation price   -- (cannot be liquidated)")
    if k is not None:
        print(f"  bracket at LP       {k + 1} (floor {br.floors[k]:,.0f}, MMR {br.mmr[k]:.4%}, cum {br.cum[k]:,.2f})")
    print(f"  bankruptcy price    {bk:,.2f}" if bk > 0 else "  bankruptcy price    -- (none)")
    return 0


def funding_rate(a) -> int:
    from .. import venues

    try:
        r = venues.funding_rate(a.premiums, a.venue)
    except ValueError as e:
        print(f"perpjax: input error: {e}", file=sys.stderr)
        return 2
    print(f"{a.venue} funding rate {r:.10f} ({r:.6%}) from {len(a.premiums)} premium samples")
    return 0
