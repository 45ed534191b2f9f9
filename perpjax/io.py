"""Atomic result files and the run manifest."""

from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path

import jax


def _atomic_write(path, mode: str, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync, then ``os.replace`` it
    onto ``path``: readers never see a partial file, and a crash leaves the old one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    _atomic_write(path, "w", lambda f: f.write(text))


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    _atomic_write(path, "wb", lambda f: f.write(data))


def atomic_write_npz(path, **arrays) -> None:
    """``numpy.savez`` to ``path`` atomically."""
    import numpy as np

    _atomic_write(path, "wb", lambda f: np.savez(f, **arrays))


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def _jsonable(x):
    try:
        return x.item()
    except AttributeError:
        return str(x)


def manifest(cfg: dict, *, seed: int, wall_seconds: float, extra=None) -> dict:
    from . import __version__

    dev = jax.devices()[0]
    m = {"perpjax_version": __version__, "jax_version": jax.__version__, "python": platform.python_version(),
         "device": {"platform": dev.platform, "kind": dev.device_kind, "count": jax.device_count()},
         "seed": seed, "wall_seconds": wall_seconds, "xla_flags": os.environ.get("XLA_FLAGS", ""),
         "config": cfg}
    if extra:
        m.update(extra)
    return m
