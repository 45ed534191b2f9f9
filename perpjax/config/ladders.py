"""Ladders given by their source (a venue preset or a bracket file) and the rule that the book fits under the
source's last bracket.

A ladder in the config is a list of tiers, or a source: ``"venue:SYMBOL"`` (a packaged preset),
``"FILE.json[:SYMBOL]"`` / ``"FILE.csv[:SYMBOL]"`` (a bracket table as Binance's leverage-bracket API gives
it, ``venues.read_brackets``), or the mapping ``{source: ..., extend_last_bracket: false}``. A source whose
last bracket has a cap (the file's last ``notionalCap``, the preset's ``max_notional``) covers notionals up
to that cap only: a position above it is refused, naming the account, the asset, the notional and the cap,
as ``perpjax margin`` refuses that notional, unless ``extend_last_bracket: true`` margins it at the last
bracket's rates. One rule (``check_caps``) for every account of the book: listed in the config, read from a
book file or ``--book`` (checked in ``load.resolve``), or drawn by ``book.generate`` (``check_generated``,
when the model is built, before any compute).
"""

from __future__ import annotations

import math

import numpy as np

from ..venues import ladder_brackets
from .fields import Bool, Section, Str, validate
from .schema import ConfigError

EXTEND = "extend_last_bracket"


class LadderSource(Section):
    """``ladders.NAME: {source, extend_last_bracket}``."""

    source: Str
    extend_last_bracket: Bool = False


def expand(ladders: dict) -> tuple[dict, dict]:
    """(ladders with every source expanded to its tiers, {asset: (cap, source)} of the sources whose last
    bracket is capped and not extended); a bad source is a ``ConfigError`` naming ``ladders.NAME``."""
    out, caps = {}, {}
    for name, v in ladders.items():
        if isinstance(v, dict):
            s = validate(LadderSource, v, f"ladders.{name}")
            source, extend = s.source, s.extend_last_bracket
        elif isinstance(v, str):
            source, extend = v, False
        else:
            out[name] = v
            continue
        try:
            br = ladder_brackets(source)
        except ValueError as e:
            raise ConfigError(f"ladders.{name}: {e}") from None
        out[name] = br.as_config_tiers()
        if not extend and math.isfinite(br.max_notional):
            caps[name] = (float(br.max_notional), source)
    return out, caps


def check_caps(c: dict, caps: dict, accounts, *, generated: bool = False) -> None:
    """Every position of ``accounts`` (``{"id", "positions": [{"asset", "size"}, ...]}``) within its ladder's
    cap at the asset's start price (``assets[].price``, where the first margin check marks it); ``c`` a resolved
    config, ``caps`` from ``expand``. Raises a ``ConfigError`` naming the ladder, the account, the notional and
    the cap (``generated``: the accounts were drawn by ``book.generate``, and the message says so). Not checked:
    notionals that price moves carry above the cap during a run (the engine's last tier has no cap)."""
    if not caps:
        return
    price = {a["name"]: float(a["price"]) for a in c["assets"]}
    for acc in accounts:
        for pos in acc["positions"]:
            name = pos["asset"]
            if name not in caps:
                continue
            cap, source = caps[name]
            notional = abs(float(pos["size"])) * price[name]
            if notional > cap:
                who = f"account {acc['id']!r}" + (" (drawn by book.generate)" if generated else "")
                other = (", or draw smaller notionals (book.generate.notional_median, notional_sigma)"
                         if generated else "")
                raise ConfigError(
                    f"ladders.{name}: {who} holds {name} notional {notional:,.0f} USD (size "
                    f"{float(pos['size']):g} at the start price {price[name]:,.10g}), above the last bracket's cap "
                    f"{cap:,.0f} of {source}: the ladder does not cover it (as `perpjax margin` refuses it); "
                    f"write ladders.{name}: {{source: {source}, {EXTEND}: true}} to margin it at the last "
                    f"bracket's rates{other}")


def check_generated(c: dict, caps: dict, book, labels) -> None:
    """``check_caps`` on a generated book (``margin.generate_book``'s ``Book`` and ``BookLabels``): each margin
    unit, by its account id, with its nonzero positions."""
    if not caps:
        return
    names = [a["name"] for a in c["assets"]]
    size = np.asarray(book.size, np.float64)
    accounts = [{"id": labels.account[u], "positions": [{"asset": names[k], "size": float(size[u, k])}
                                                         for k in np.flatnonzero(size[u])]}
                for u in range(size.shape[0])]
    check_caps(c, caps, accounts, generated=True)
