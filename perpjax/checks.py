"""Construction-time checks shared by the models.

Every model validates its concrete inputs in ``__check_init__`` and raises a
``ValueError`` whose message starts with the field name and states the rule, so
the config layer can prefix it with the config path. Checks are skipped when a
field is a tracer (a model rebuilt inside ``jit``/``grad``), where values are
not known.
"""

from __future__ import annotations

import jax
import numpy as np


def concrete(*xs) -> bool:
    """True when every argument holds concrete values (not a JAX tracer)."""
    return not any(isinstance(x, jax.core.Tracer) for x in xs)


def finite(name: str, x) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: must be finite (got {a.tolist()})")
    return a


def nonneg(name: str, x) -> np.ndarray:
    a = finite(name, x)
    if np.any(a < 0):
        raise ValueError(f"{name}: must be >= 0 (got {a.tolist()})")
    return a


def positive(name: str, x) -> np.ndarray:
    a = finite(name, x)
    if np.any(a <= 0):
        raise ValueError(f"{name}: must be > 0 (got {a.tolist()})")
    return a


def shape(name: str, x, expected: tuple) -> np.ndarray:
    a = np.asarray(x)
    if a.shape != expected:
        raise ValueError(f"{name}: expected shape {expected}, got {a.shape}")
    return a
