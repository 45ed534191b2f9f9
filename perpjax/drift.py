"""Drift-style partial liquidation: the size that covers a margin shortage, exactly.

Two forms:

* ``base_to_cover_margin_shortage``: Drift v2's own function, ported integer for integer
  (drift-labs/protocol-v2, ``programs/drift/src/math/liquidation.rs``,
  ``calculate_base_asset_amount_to_cover_margin_shortage``; called by ``controller/liquidation.rs``
  ``liquidate_perp`` with ``margin_ratio = maintenance ratio + liquidation_margin_buffer_ratio``)::

      base = shortage / (P q (mr - lf) - P if)

  P the oracle price, q the quote (USDC) oracle price, mr the margin ratio with buffer, lf the
  liquidator fee, ``if`` the insurance-fund fee. Closing ``base`` at the oracle frees ``base P mr``
  of requirement and costs ``base P (lf + if)``: the shortage is covered exactly when the ratio is
  flat and the fill is at the oracle. ``liquidation_size`` is the same in real numbers.

* ``min_close_fraction``: perpjax's ``buffer`` liquidation mode in general (a tiered ladder,
  fills that walk a power-law book, a fee on filled notional): the smallest pro-rata fraction f
  of a unit's positions with ``health(f) = equity_after(f) - fee(f) - MM(rest) - buffer notional(rest)
  >= 0``. ``health`` is concave in f (the book's cost ``f Q slip(f Q)`` grows like ``f^(1+e)``; MM is
  convex in notional, notional is linear in f), so Newton's method from f = 0 with the derivative
  (any supergradient, at a tier's kink) never overshoots the smallest root and converges to it to the
  dtype's precision: not a bisection tolerance. With no slippage and one tier it is Drift's closed
  form in one step (tested).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import jax
import jax.numpy as jnp

# Drift v2 precisions (programs/drift/src/math/constants.rs).
PRICE_PRECISION = 10**6
QUOTE_PRECISION = 10**6
BASE_PRECISION = 10**9
MARGIN_PRECISION = 10**4
LIQUIDATION_FEE_PRECISION = 10**6
LIQUIDATION_FEE_TO_MARGIN_PRECISION_RATIO = LIQUIDATION_FEE_PRECISION // MARGIN_PRECISION  # 100
PRICE_TIMES_AMM_TO_QUOTE_PRECISION_RATIO = PRICE_PRECISION * BASE_PRECISION // QUOTE_PRECISION  # 1e9
U64_MAX = 2**64 - 1


def base_to_cover_margin_shortage(margin_shortage: int, margin_ratio: int, liquidation_fee: int,
                                  if_liquidation_fee: int, oracle_price: int,
                                  quote_oracle_price: int = PRICE_PRECISION) -> int:
    """Drift v2's ``calculate_base_asset_amount_to_cover_margin_shortage``, integer for integer.

    Args (Drift's fixed-point integers): margin_shortage (QUOTE_PRECISION, 1e6 = $1), margin_ratio
    (MARGIN_PRECISION, 1e4 = 100 %), liquidation_fee and if_liquidation_fee (LIQUIDATION_FEE_PRECISION,
    1e6 = 100 %), oracle_price and quote_oracle_price (PRICE_PRECISION, 1e6 = $1).

    Returns the base amount (BASE_PRECISION, 1e9 = 1 coin), rounded down as Drift's ``safe_div``;
    ``U64_MAX`` where Drift returns it (oracle price 0, or the fee at or above the margin ratio).
    """
    for k, v in (("margin_shortage", margin_shortage), ("margin_ratio", margin_ratio),
                 ("liquidation_fee", liquidation_fee), ("if_liquidation_fee", if_liquidation_fee),
                 ("oracle_price", oracle_price), ("quote_oracle_price", quote_oracle_price)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{k}: must be a non-negative integer in Drift's precision (got {v!r})")
    mr = margin_ratio * LIQUIDATION_FEE_TO_MARGIN_PRECISION_RATIO
    if oracle_price == 0 or mr <= liquidation_fee:
        return U64_MAX
    den = (oracle_price * quote_oracle_price // PRICE_PRECISION * (mr - liquidation_fee) // LIQUIDATION_FEE_PRECISION
           - oracle_price * if_liquidation_fee // LIQUIDATION_FEE_PRECISION)
    if den <= 0:
        raise ValueError("if_liquidation_fee: the fees consume the whole margin ratio (Drift's safe_sub would fail)")
    base = margin_shortage * PRICE_TIMES_AMM_TO_QUOTE_PRECISION_RATIO // den
    if base > U64_MAX:
        raise ValueError("margin_shortage: the base amount overflows u64 (Drift's cast would fail)")
    return base


def to_fixed(name: str, value, precision: int) -> int:
    """A decimal as Drift's fixed-point integer (``value x precision``); raises ValueError naming ``name`` when
    the value has more digits than the precision holds (Drift could not represent it)."""
    try:
        d = Decimal(str(value)) * precision
    except InvalidOperation:
        raise ValueError(f"{name}: must be a number (got {value!r})") from None
    if not d.is_finite() or d != d.to_integral_value():
        raise ValueError(f"{name}: {value} is not a multiple of 1/{precision} (Drift's precision for it)")
    return int(d)


def liquidation_size(margin_shortage: float, margin_ratio: float, liquidation_fee: float, if_fee: float,
                     oracle_price: float, quote_price: float = 1.0) -> float:
    """Drift's size in real numbers: ``shortage / (P q (mr - lf) - P if)`` (base units); ``inf`` where Drift
    returns u64::MAX (fees at or above the ratio)."""
    den = oracle_price * quote_price * (margin_ratio - liquidation_fee) - oracle_price * if_fee
    if oracle_price <= 0 or margin_ratio <= liquidation_fee or den <= 0:
        return float("inf")
    return margin_shortage / den


def health_after_cut(f_unit, *, collateral, size, entry, mid, mark, fee_rate, buffer, slippage, maintenance,
                     unit, unit_sum):
    """Health of each unit after closing the fraction ``f_unit`` (units,) of every position at the book's fill.

    ``equity_after - fee - MM(rest) - buffer x notional(rest)`` at mark, as perpjax's ``buffer`` mode states it
    (``liquidation.Liquidation``): fill = mid (1 - sign(q) slip(|q| mid)), fee = fee_rate x filled notional.
    ``slippage(notional)`` and ``maintenance(notional)`` act on (positions,) arrays; ``unit`` spreads
    (units,) to (positions,), ``unit_sum`` sums (positions,) to (units,).
    """
    q = size * unit(f_unit)
    fill = mid * (1.0 - jnp.sign(q) * slippage(jnp.abs(q) * mid))
    rest = size - q
    eq = (collateral + unit_sum(q * (fill - entry)) + unit_sum(rest * (mark - entry))
          - fee_rate * unit_sum(jnp.abs(q) * fill))
    n_rest = jnp.abs(rest) * mark
    return eq - unit_sum(maintenance(n_rest) + buffer * n_rest)


def min_close_fraction(health, n_units: int, dtype=jnp.float64, *, max_steps: int = 64, nudges: int = 10):
    """Smallest f in [0, 1] per unit with ``health(f) >= 0``, by Newton's method from f = 0.

    ``health`` maps (units,) fractions to (units,) healths, each unit's depending on its own fraction
    only, and concave in it (``health_after_cut`` is, for any fee rate < 1, slippage ``a + b q^e`` and
    a convex ladder). Each step is ``f - health(f) / health'(f)`` with the derivative by ``jax.jvp``
    (at a tier's kink jax takes one side's slope: a supergradient, so the step still cannot pass the
    root). Iterates rise monotonically to the root; the loop stops when no unit moves (``max_steps``
    bounds it), then up to ``nudges`` steps of 1, 2, 4, ... ulps make ``health(f) >= 0`` hold in the
    dtype's rounding (a handful of ulps: the root itself is exact to the dtype), as evaluated by the
    same program (jitted and eager evaluations of ``health`` may differ in the last bits).
    Returns 0 for a unit already healthy and 1 where no fraction restores health (the engine then
    closes in full). The result carries no gradient (``while_loop``s on stopped values, so reverse mode
    passes through): for gradients use the implicit function theorem, ``df/dp = -(dh/dp) / (dh/df)``,
    ``dh/df`` from ``jax.jvp`` at the result.

    The engine's ``buffer`` mode (``Liquidation.min_fraction``, ``min_cut.min_cut``) reaches the same root
    without the while loops (they made the scan's compile slow): a bisection brackets it to 2^-14, then a
    fixed three Newton steps and a shorter rounding up (the first of +0 .. 64 ulps with health >= 0, else the
    bracket's healthy end; ``min_cut.exact_cut``): equal to 1e-14 in float64 (tested); in float32 a cut whose
    health rounds below zero for 64 ulps keeps the bracket end (2^-14 above the root).
    """
    one = jnp.ones((n_units,), dtype)

    def newton(f):
        h, d = jax.lax.stop_gradient(jax.jvp(health, (f,), (one,)))  # the iterates carry no gradient
        step = jnp.where((h < 0) & (d > 0), -h / jnp.where(d > 0, d, 1.0), 0.0)
        hopeless = (h < 0) & ~(d > 0)  # concave and not rising: no root to the right
        return jnp.where(hopeless, 1.0, jnp.minimum(f + step, 1.0))

    def cond(c):
        k, f, moved = c
        return (k < max_steps) & moved

    def body(c):
        k, f, _ = c
        f_new = newton(f)
        return k + 1, f_new, jnp.any(f_new > f)

    _, f, _ = jax.lax.while_loop(cond, body, (0, jnp.zeros((n_units,), dtype), True))
    # The last Newton iterate sits a rounding error below the root: step up by 1, 2, 4, ... ulps until the
    # computed health is >= 0 (the health's own rounding, not the root's position, sets how many).
    def short(f):
        return (jax.lax.stop_gradient(health(f)) < 0) & (f < 1)

    def nudge(c):
        k, f = c
        ulp = jnp.nextafter(f, 2 * one) - f
        return k + 1, jnp.where(short(f), jnp.minimum(f + 2.0**k * ulp, 1.0), f)

    _, f = jax.lax.while_loop(lambda c: (c[0] < nudges) & jnp.any(short(c[1])), nudge, (0, f))
    return f
