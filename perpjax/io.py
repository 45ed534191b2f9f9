"""Atomic result files and the run manifest."""

from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path

import jax

from .datadir import default_data_path
from .errors import ConfigError
from .version import __version__


def _atomic_write(path, mode: str, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync, then ``os.replace`` it
    onto ``path``: readers never see a partial file, and a crash leaves the old one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; a result file respects the umask
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


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


def sha256_file(path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def data_files(cfg: dict) -> list[str]:
    """Every data file a resolved config reads: string values under a ``csv`` / ``residuals`` / ``*_file`` /
    ``*_path`` key that name an existing file, and the default replay data when a replay uses it."""
    found = []

    def walk(x, key=""):
        if isinstance(x, dict):
            for k, v in x.items():
                walk(v, str(k))
        elif isinstance(x, list | tuple):
            for v in x:
                walk(v, key)
        elif isinstance(x, str) and (key in ("csv", "residuals") or key.endswith(("_file", "_path", "_csv"))) \
                and Path(x).is_file():
            found.append(str(Path(x).resolve()))

    walk(cfg)
    replay = (cfg.get("events") or {}).get("replay") if isinstance(cfg.get("events"), dict) else None
    if isinstance(replay, dict) and not replay.get("csv"):
        if default_data_path().is_file():
            found.append(str(default_data_path().resolve()))
    return sorted(set(found))


def config_fingerprint(resolved: dict) -> str:
    """sha256 of the resolved config without seed and paths (those are checked on their own), and of the
    contents of every data file it reads (``io.data_files``: a book file edited between a killed run and
    ``--resume`` must not mix chunks of two books)."""
    import hashlib
    import json

    body = {k: v for k, v in resolved.items() if k not in ("seed", "paths")}
    body["__data_files__"] = {f: sha256_file(f) for f in data_files(resolved)}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def git_commit() -> str | None:
    """The commit of the checkout perpjax is imported from (``+dirty`` if it has changes), or None."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_model() -> str:
    """The host CPU's model name (``/proc/cpuinfo``; else ``platform.processor()``): named beside every
    figure measured on it and in every manifest."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def manifest(cfg: dict, *, seed: int, wall_seconds: float, extra=None, command=None) -> dict:
    """What produced a run: versions, device, commit, time, command line, scenario, config, data hashes."""
    import datetime
    import sys

    dev = jax.devices()[0]
    versions = {"perpjax": __version__, "jax": jax.__version__, "python": platform.python_version()}
    for mod in ("jaxlib", "equinox", "numpy", "pandas", "pyarrow"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - an optional module's version is informative only
            versions[mod] = None
    m = {"perpjax_version": __version__, "jax_version": jax.__version__, "python": platform.python_version(),
         "versions": versions,
         "device": {"platform": dev.platform, "kind": dev.device_kind, "count": jax.device_count(),
                    "host_cpu": cpu_model()},
         "git_commit": git_commit(),
         "utc_time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
         "command": list(sys.argv) if command is None else list(command),
         "scenario": cfg.get("scenario"),
         "data_files": {f: sha256_file(f) for f in data_files(cfg)},
         "seed": seed, "wall_seconds": wall_seconds, "xla_flags": os.environ.get("XLA_FLAGS", ""),
         "config": cfg}
    if extra:
        m.update(extra)
    return m


def read_csv(path, where: str, *, header: str = "", **kw):
    """``pandas.read_csv`` with every fault of the file a ``ConfigError`` that starts with ``where``
    (e.g. ``"book.csv: PATH"``): missing, a directory, unreadable, empty (``header``: the columns it
    should have), a truncated or corrupt compressed file, bytes that are not text, malformed rows."""
    import gzip
    import zlib

    import pandas as pd

    try:
        return pd.read_csv(path, **kw)
    except FileNotFoundError:
        raise ConfigError(f"{where}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{where}: is a directory, not a CSV file") from None
    except PermissionError:
        raise ConfigError(f"{where}: not readable (permission denied)") from None
    except pd.errors.EmptyDataError:
        raise ConfigError(f"{where}: empty file" + (f" (expected a header: {header})" if header else "")) from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ConfigError(f"{where}: truncated or corrupt compressed file ({e})") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"{where}: not a readable CSV ({str(e).strip().splitlines()[0]})") from None
