"""The parameters a sensitivity is taken with respect to, and how a value of them changes the model.

Every parameter is one scalar ``x`` (0 = the config as given) that moves a group of model values
together; the gradient is reported per **unit step** ``x = 0.01``:

* ``vol``: every asset's diffusion volatility scaled by ``exp(x)`` (jumps unchanged): per +1 %
  relative vol (0.62 -> 0.6262), i.e. 0.01 x d(metric)/d(log vol);
* ``correlation``: every off-diagonal correlation shifted by ``+x`` (the matrix re-factored by
  Cholesky): per +0.01 of correlation;
* ``mmr``: every maintenance rate of every ladder scaled by ``exp(x)`` (initial rates and floors
  unchanged; continuity amounts follow): per +1 % relative MMR;
* ``depth``: every asset's book depth ``depth_usd`` scaled by ``exp(x)``: per +1 % depth;
* ``spread``: every asset's quoted spread scaled by ``exp(x)``: per +1 % spread;
* ``fee``: the liquidation fee rate scaled by ``exp(x)``: per +1 % of the fee rate;
* ``fund``: the insurance fund's starting balance scaled by ``exp(x)``: per +1 % fund.

``apply(model, theta, base)`` is the one place a parameter value enters a model: the relaxed engine
calls it with traced values (autodiff), the finite differences with concrete bumps.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from ..config import ConfigError
from ..margin import Ladder

STEP = 0.01  # the reporting unit of every parameter (see the module doc)


class Param(NamedTuple):
    """One parameter: what a unit step means, and its default finite-difference bump (in ``x``)."""

    unit: str  # what ``x = STEP`` is, for the ``unit`` column
    bump: float  # central-difference half-width h (x +- h)
    doc: str


PARAMS = {
    "vol": Param("+1% vol (relative, all assets)", 0.05, "diffusion vol of every asset x exp(x)"),
    "correlation": Param("+0.01 correlation (all pairs)", 0.02, "every off-diagonal correlation + x"),
    "mmr": Param("+1% MMR (relative, all tiers)", 0.05, "every maintenance rate x exp(x)"),
    "depth": Param("+1% depth (relative, all assets)", 0.05, "book depth depth_usd x exp(x)"),
    "spread": Param("+1% spread (relative, all assets)", 0.05, "quoted spread x exp(x)"),
    "fee": Param("+1% liquidation fee rate (relative)", 0.05, "liquidation fee rate x exp(x)"),
    "fund": Param("+1% insurance fund (relative)", 0.05, "insurance fund at t = 0 x exp(x)"),
}
DEFAULT_WRT = ("vol", "correlation", "mmr", "depth", "fee")


def parse_wrt(text: str | None) -> tuple[str, ...]:
    """``--wrt vol,mmr`` -> ('vol', 'mmr'); unknown names raise ``ConfigError`` listing the valid ones."""
    if text is None:
        return DEFAULT_WRT
    names = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    bad = [n for n in names if n not in PARAMS]
    if bad or not names:
        what = ", ".join(repr(b) for b in bad) if bad else "nothing"
        raise ConfigError(f"--wrt: unknown parameter {what} (valid: {', '.join(PARAMS)})")
    return names


def parse_bumps(items, names) -> dict:
    """``--bump vol=0.02`` items -> {name: h} over ``names`` (defaults from ``PARAMS``), checked."""
    bumps = {n: PARAMS[n].bump for n in names}
    for item in items or ():
        key, sep, val = item.partition("=")
        key = key.strip()
        if not sep or key not in bumps:
            raise ConfigError(f"--bump: expected NAME=H with NAME one of {', '.join(names)} (got {item!r})")
        try:
            h = float(val)
        except ValueError:
            raise ConfigError(f"--bump {key}: not a number ({val!r})") from None
        if not (0 < h <= 0.5):
            raise ConfigError(f"--bump {key}: must lie in (0, 0.5] (got {h})")
        bumps[key] = h
    return bumps


class Base(NamedTuple):
    """Model values the parameters act on that the model keeps only in derived form."""

    correlation: np.ndarray  # (assets, assets) the config's correlation matrix


def base_of(resolved: dict) -> Base:
    return Base(np.asarray(resolved["correlation"], np.float64))


def check_supported(model, names) -> None:
    """Refuse (``ConfigError``) a parameter the model has no value for."""
    if "correlation" in names and model.prices.innovations == "historical":
        raise ConfigError("--wrt correlation: filtered historical innovations carry their own dependence "
                          "(innovations.kind historical); no correlation matrix to shift")


def check_bumps(model, base: Base, bumps: dict) -> None:
    """Every finite-difference point must be a valid model: refuse (``ConfigError``) the bump otherwise."""
    if "correlation" in bumps:
        h = bumps["correlation"]
        for s in (-h, h):
            c = shifted_correlation(base.correlation, s)
            if np.abs(c[~np.eye(len(c), dtype=bool)]).max(initial=0) >= 1 or np.linalg.eigvalsh(c).min() <= 0:
                raise ConfigError(f"--bump correlation={h}: the correlation shifted by {s:+g} is not positive "
                                  "definite; use a smaller bump")
    if "mmr" in bumps:
        m = np.asarray(model.ladder.mmr) * np.exp(bumps["mmr"])
        if np.any(m >= np.asarray(model.ladder.imr)):
            raise ConfigError(f"--bump mmr={bumps['mmr']}: a maintenance rate x exp(h) reaches its initial rate "
                              "(MMR < IMR); use a smaller bump")


def shifted_correlation(c: np.ndarray, x):
    off = 1.0 - np.eye(c.shape[0])
    return c + x * off


def apply(model, theta: dict, base: Base):
    """The model at parameter values ``theta`` ({name: scalar}; absent names stay at the config)."""
    m = model
    if "vol" in theta:
        m = eqx.tree_at(lambda x: x.prices.vol, m, m.prices.vol * jnp.exp(theta["vol"]))
    if "correlation" in theta:
        c = jnp.asarray(base.correlation, m.dtype) + theta["correlation"] * jnp.asarray(
            1.0 - np.eye(base.correlation.shape[0]), m.dtype)
        m = eqx.tree_at(lambda x: x.prices.factor, m, jnp.linalg.cholesky(c))
    if "mmr" in theta:
        lad = m.ladder
        m = eqx.tree_at(lambda x: x.ladder, m,
                        Ladder(lad.floors, lad.mmr * jnp.exp(theta["mmr"]), lad.imr, lad.n_tiers))
    if "depth" in theta:
        m = eqx.tree_at(lambda x: x.liquidation.depth.depth_usd, m,
                        m.liquidation.depth.depth_usd * jnp.exp(theta["depth"]))
    if "spread" in theta:
        m = eqx.tree_at(lambda x: x.liquidation.depth.spread, m,
                        m.liquidation.depth.spread * jnp.exp(theta["spread"]))
    if "fee" in theta:
        m = eqx.tree_at(lambda x: x.liquidation.fee_rate, m, m.liquidation.fee_rate * jnp.exp(theta["fee"]))
    if "fund" in theta:
        m = eqx.tree_at(lambda x: x.insurance_fund, m, m.insurance_fund * jnp.exp(theta["fund"]))
    return m
