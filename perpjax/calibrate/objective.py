"""What a risk team asks of a ladder, as terms of the relaxed engine's outcome, and the objective.

Terms are means over paths, normalised by the book's notional at t = 0: bad debt, liquidation
cost forced on traders, the number of units liquidated, margin locked up, the fund's expected
shortfall, and the fairness terms (notional and cost beyond the minimal close). The probability
that the fund's loss exceeds a budget ``X`` is smoothed as ``mean sigmoid((L - X) / (tau_L X))``
and enters as a hinge penalty above the tolerated probability.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from ..config import schema
from ..engine import RiskModel, positions
from ..margin import Ladder
from .relaxed import SoftOutcome, soft_outcome
from .space import LadderSpace

# config section ``calibration.objective``: defaults from the schema (``schema.Objective``)
OBJECTIVE_DEFAULTS = schema.defaults(schema.Objective)


class Terms(NamedTuple):
    """Objective terms (scalars), each a mean over paths."""

    bad_debt: jax.Array  # expected bad debt / book notional
    trader_cost: jax.Array  # expected slippage + fee at liquidations / book notional
    liquidations: jax.Array  # expected number of units liquidated
    capital: jax.Array  # maintenance margin required at t = 0 / book notional
    exceed: jax.Array  # smoothed P(fund loss > budget)
    fund_es: jax.Array  # expected shortfall of the fund's loss over paths at fund_es_level / book notional
    over_liquidation: jax.Array  # expected notional liquidated beyond the minimum that restores MM / book
    excess_cost: jax.Array  # expected liquidation cost beyond the minimum close's / book notional


def initial_maintenance(model: RiskModel, ladder: Ladder):
    """(maintenance margin the book's positions require at t = 0 under ``ladder``, book notional), USD."""
    P = positions(model)
    n0 = jnp.abs(P.size) * model.prices.s0[P.asset]
    return jnp.sum(ladder.maintenance_and_rate(n0, P.asset)[0]), jnp.sum(n0)


def objective_terms(model: RiskModel, ladder: Ladder, out: SoftOutcome, obj: dict) -> Terms:
    mm0, notional = initial_maintenance(model, ladder)
    book = jnp.maximum(notional, 1.0)
    loss = jnp.sum(out.bad_debt - out.fee, axis=-1)  # the fund's loss on each path
    exceed = jnp.zeros(())
    if obj.get("exceed_budget") is not None:
        x = obj["exceed_budget"]
        exceed = jnp.mean(jax.nn.sigmoid((loss - x) / (obj["exceed_temperature"] * x)))
    # ES as the mean of the worst (1 - level) share of paths (Acerbi-Tasche); differentiable a.e.
    k = max(1, int(round((1.0 - obj["fund_es_level"]) * loss.shape[0])))
    es = jnp.mean(jax.lax.top_k(loss, k)[0])
    return Terms(bad_debt=jnp.mean(jnp.sum(out.bad_debt, -1)) / book,
                 trader_cost=jnp.mean(jnp.sum(out.slippage + out.fee, -1)) / book,
                 liquidations=jnp.mean(jnp.sum(out.p_liq, -1)), capital=mm0 / book, exceed=exceed,
                 fund_es=es / book, over_liquidation=jnp.mean(jnp.sum(out.over_notional, -1)) / book,
                 excess_cost=jnp.mean(jnp.sum(out.excess_cost, -1)) / book)


def objective(terms: Terms, obj: dict):
    j = obj["bad_debt"] * terms.bad_debt + obj["trader_cost"] * terms.trader_cost + \
        obj["liquidations"] * terms.liquidations + obj["capital"] * terms.capital + \
        obj["fund_es"] * terms.fund_es + obj["over_liquidation"] * terms.over_liquidation + \
        obj["excess_cost"] * terms.excess_cost
    if obj.get("exceed_budget") is not None and obj["exceed_weight"]:
        eps = obj["exceed_probability"]
        j = j + obj["exceed_weight"] * jnp.maximum(terms.exceed - eps, 0.0) / eps
    return j


def prepared(model: RiskModel, obj: dict) -> RiskModel:
    """The model as the relaxed engine runs it: minimal cuts (``buffer`` mode, fairness) carry the
    implicit-function gradient of their exact root, and the fairness terms switch fairness on."""
    fair = bool(obj["over_liquidation"] or obj["excess_cost"]) or model.liquidation.fairness
    liq = dataclasses.replace(model.liquidation, fairness=fair, implicit_grad=True)
    return eqx.tree_at(lambda m: m.liquidation, model, liq)


def make_loss(model: RiskModel, space: LadderSpace, obj: dict, temperature: float, paths: int, block_steps: int):
    """loss(theta, key, start) -> (objective, Terms), differentiable in theta."""
    model = prepared(model, obj)

    def loss(theta, key, start):
        m = space.apply(model, theta if isinstance(theta, dict) else {"mmr": theta})
        out = soft_outcome(m, m.ladder, key, start, paths, temperature, block_steps=block_steps)
        terms = objective_terms(m, m.ladder, out, obj)
        return objective(terms, obj), terms

    return loss
