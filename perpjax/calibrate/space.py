"""What a calibration may change, and how parameters map to ladders a venue could publish.

**Parameterisation**: per asset, ``MMR_0 = lo_0 + softplus(theta_0)``,
``MMR_k = MMR_{k-1} + softplus(theta_k)`` (non-decreasing by construction), clipped to the
per-tier bounds ``[lo, hi]``; ``IMR = MMR x`` the base ladder's IMR/MMR ratio (> 1, so
MMR < IMR always); floors stay fixed and the continuity amounts are recomputed by the
recursion. Every iterate is a ladder a venue could publish (``check_ladder``, at every iteration,
with the margin module's rules: ``perpjax.margin``).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..config import schema
from ..engine import RiskModel
from ..margin import Ladder, bound_breaks, floor_breaks, imr_cap_breaks, order_breaks, rate_breaks, validate_rate_range

# what ``calibration.tune`` may name (from the schema, ``schema.KNOBS``)
KNOBS = schema.KNOBS


class LadderSpace(eqx.Module):
    """What a calibration may change, and how parameters map to valid values.

    Parameters are a dict: ``mmr`` (always), and, when tuned, ``floors`` (tier floors as
    positive increments, ``floor_k = floor_{k-1} + exp(phi_k)``), ``fee_rate``
    (``max_fee_rate * sigmoid(phi)``) and ``mark_window`` (``window_seconds = exp(phi)``).
    """

    floors: jax.Array  # (assets, tiers)
    lo: jax.Array  # (assets, tiers) lowest MMR per tier
    hi: jax.Array  # (assets, tiers) highest MMR per tier
    imr_ratio: jax.Array  # (assets, tiers) IMR / MMR, > 1
    tuned: jax.Array  # (assets, tiers) 1 for real tiers of tuned assets, else 0
    base_mmr: jax.Array  # (assets, tiers) rates of the assets not tuned
    max_fee_rate: float = eqx.field(static=True, default=0.05)
    n_tiers: tuple = eqx.field(static=True, default=())
    knobs: tuple = eqx.field(static=True, default=("mmr",))

    @classmethod
    def from_model(cls, model: RiskModel, tuned_assets, lo: float, hi: float, knobs=("mmr",),
                   max_fee_rate: float = 0.05):
        for k in knobs:
            if k not in KNOBS:
                raise ValueError(f"calibration.tune: unknown parameter {k!r} (allowed: {', '.join(KNOBS)})")
        if "mmr" not in knobs:
            raise ValueError("calibration.tune: must include mmr")
        if "buffer" in knobs and model.liquidation.mode != "buffer":
            raise ValueError("calibration.tune: buffer needs liquidation.mode buffer")
        if "fraction" in knobs and model.liquidation.mode != "fraction":
            raise ValueError("calibration.tune: fraction needs liquidation.mode fraction")
        if "mark_window" in knobs and model.mark.kind == "index":
            raise ValueError("calibration.tune: mark_window needs an EMA mark (mark.kind ema or premium_ema)")
        if "fee_rate" in knobs and not (0 < max_fee_rate < 1 and float(model.liquidation.fee_rate) < max_fee_rate):
            raise ValueError(f"calibration.max_fee_rate: must lie in (fee_rate, 1) (got {max_fee_rate})")
        return cls.from_ladder(model.ladder, tuned_assets, lo, hi, knobs=tuple(knobs), max_fee_rate=max_fee_rate)

    @classmethod
    def from_ladder(cls, ladder: Ladder, tuned_assets, lo: float, hi: float, *, knobs=("mmr",),
                    max_fee_rate: float = 0.05):
        mmr, imr = np.asarray(ladder.mmr, np.float64), np.asarray(ladder.imr, np.float64)
        a, k = mmr.shape
        validate_rate_range("calibration.min_mmr, max_mmr", lo, hi)
        real = np.arange(k)[None, :] < np.asarray(ladder.n_tiers)[:, None]
        tuned = real & np.isin(np.arange(a), tuned_assets)[:, None]
        ratio = np.where(mmr > 0, imr / np.where(mmr > 0, mmr, 1.0), 2.0)
        dt = ladder.mmr.dtype
        return cls(floors=ladder.floors, lo=jnp.full((a, k), lo, dt), hi=jnp.full((a, k), hi, dt),
                   imr_ratio=jnp.asarray(ratio, dt), tuned=jnp.asarray(tuned, dt), base_mmr=ladder.mmr,
                   max_fee_rate=float(max_fee_rate), n_tiers=ladder.n_tiers, knobs=tuple(knobs))

    def init(self, model: RiskModel) -> dict:
        """Parameters that reproduce the model's current values."""
        theta = {"mmr": self.theta_from(np.asarray(model.ladder.mmr))}
        dt = self.floors.dtype
        if "floors" in self.knobs:
            inc = np.diff(np.asarray(model.ladder.floors, np.float64), axis=-1)
            theta["floors"] = jnp.asarray(np.log(np.maximum(inc, 1.0)), dt)
        if "fee_rate" in self.knobs:
            x = float(model.liquidation.fee_rate) / self.max_fee_rate
            theta["fee_rate"] = jnp.asarray(math.log(x / (1 - x)) if x > 0 else -20.0, dt)
        if "mark_window" in self.knobs:
            theta["mark_window"] = jnp.asarray(math.log(float(model.mark.window_seconds)), dt)
        if "buffer" in self.knobs:
            theta["buffer"] = jnp.asarray(math.log(max(float(model.liquidation.buffer), 1e-6)), dt)
        if "fraction" in self.knobs:
            x = min(max(float(model.liquidation.fraction), 1e-6), 1 - 1e-6)
            theta["fraction"] = jnp.asarray(math.log(x / (1 - x)), dt)
        return theta

    def apply(self, model: RiskModel, theta: dict) -> RiskModel:
        """The model with the parameters' ladder, fee and mark window."""
        m = eqx.tree_at(lambda x: x.ladder, model, self.ladder(theta))
        if "fee_rate" in theta:
            m = eqx.tree_at(lambda x: x.liquidation.fee_rate, m, self.max_fee_rate * jax.nn.sigmoid(theta["fee_rate"]))
        if "mark_window" in theta:
            m = eqx.tree_at(lambda x: x.mark.window_seconds, m, jnp.exp(theta["mark_window"]))
        if "fraction" in theta:
            m = eqx.tree_at(lambda x: x.liquidation.fraction, m, jax.nn.sigmoid(theta["fraction"]))
        if "buffer" in theta:
            m = eqx.tree_at(lambda x: x.liquidation.buffer, m, jnp.exp(theta["buffer"]))
        return m

    def floors_of(self, theta: dict):
        if "floors" not in theta:
            return self.floors
        f = jnp.concatenate([jnp.zeros_like(self.floors[:, :1]), jnp.cumsum(jnp.exp(theta["floors"]), -1)], -1)
        real = jnp.arange(f.shape[1])[None, :] < jnp.asarray(self.n_tiers)[:, None]
        last = jnp.take_along_axis(f, jnp.asarray(np.asarray(self.n_tiers) - 1)[:, None], axis=-1)
        tuned = self.tuned.sum(-1, keepdims=True) > 0
        return jnp.where(tuned, jnp.where(real, f, last), self.floors)

    def ladder(self, theta) -> Ladder:
        """The ladder of parameters ``theta`` (a dict, or the ``mmr`` array alone)."""
        theta = theta if isinstance(theta, dict) else {"mmr": theta}
        inc = jax.nn.softplus(theta["mmr"]) * self.tuned
        mmr = jnp.clip(self.lo[:, :1] + jnp.cumsum(inc, axis=-1), self.lo, self.hi)
        # padded tiers repeat the last real one
        last = jnp.take_along_axis(mmr, jnp.asarray(np.asarray(self.n_tiers) - 1)[:, None], axis=-1)
        real = jnp.arange(mmr.shape[1])[None, :] < jnp.asarray(self.n_tiers)[:, None]
        mmr = jnp.where(real, mmr, last)
        mmr = jnp.where(self.tuned.sum(-1, keepdims=True) > 0, mmr, self.base_mmr)
        return Ladder(self.floors_of(theta), mmr, jnp.minimum(mmr * self.imr_ratio, 1.0), self.n_tiers)

    def theta_from(self, mmr) -> jax.Array:
        """Parameters that reproduce ``mmr`` (within the bounds; equal tiers get a tiny increment)."""
        m = np.clip(np.asarray(mmr, np.float64), np.asarray(self.lo), np.asarray(self.hi))
        inc = np.diff(np.concatenate([np.asarray(self.lo)[:, :1], m], axis=-1), axis=-1)
        inc = np.maximum(inc, 1e-7)
        return jnp.asarray(np.log(np.expm1(inc)), self.floors.dtype)  # softplus^-1


def check_ladder(ladder: Ladder, space: LadderSpace) -> None:
    """Raise if an iterate is not a publishable ladder (bounds, monotone rates, MMR < IMR <= 1).

    The rules are the margin module's, on all assets at once (padded tiers repeat a floor, and the
    iterates may carry rounding: tolerance 1e-12); MMR < IMR and the bounds bind the tuned tiers.
    """
    m, i = np.asarray(ladder.mmr), np.asarray(ladder.imr)
    tuned = np.asarray(space.tuned) > 0
    eps = 1e-12
    f = np.asarray(ladder.floors)
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(i)) and np.all(np.isfinite(f))):
        raise FloatingPointError("calibration: the ladder went non-finite (lower learning_rate or raise temperature)")
    if np.any(floor_breaks(f, strict=False, tol=eps)):
        raise AssertionError(f"calibration: floors not increasing from 0 {f.tolist()}")
    if np.any(rate_breaks(m, tol=eps)):
        raise AssertionError(f"calibration: non-monotone rates {m.tolist()}")
    if np.any(order_breaks(m, i) & tuned) or np.any(imr_cap_breaks(i, tol=eps)):
        raise AssertionError(f"calibration: MMR >= IMR or IMR > 1 ({m.tolist()}, {i.tolist()})")
    if np.any(bound_breaks(m, space.lo, space.hi, tol=eps) & tuned):
        raise AssertionError("calibration: a rate left its bounds")
