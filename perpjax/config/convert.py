"""Small conversions shared by the config builders: per-asset number lists, seconds -> steps, and
wrapping a Module's ``ValueError`` into a ``ConfigError`` that names the config field."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError


def num_list(v, path, n=None):
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{path}: must be numbers (got {v!r})") from None
    if not np.all(np.isfinite(a)):
        raise ConfigError(f"{path}: must be finite numbers (got {v!r})")
    if n is not None:
        a = np.broadcast_to(a, (n,)) if a.ndim == 0 else a
        if a.shape != (n,):
            raise ConfigError(f"{path}: needs one value per asset ({n}), got {a.shape}")
    return a


def wrapped(path, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from None


def steps_of(grid, seconds, path) -> int:
    try:
        return grid.steps_of(seconds, path)
    except ValueError as e:
        raise ConfigError(str(e)) from None

