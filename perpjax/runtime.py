"""Process-wide JAX settings perpjax turns on: the persistent compilation cache.

A run compiles its kernel once per model structure (25-45 s on a 2-core CPU for the default
book); JAX's persistent compilation cache keeps the compiled executables on disk, so a second
process (the next CLI call, a daily risk run, a test session) loads them instead of compiling.
On by default in the user's cache directory (``$XDG_CACHE_HOME/perpjax/jax``, else
``~/.cache/perpjax/jax``); ``PERPJAX_COMPILATION_CACHE`` overrides the directory, and ``off`` (or
``0``, ``none``, empty) disables it. Executables are keyed by JAX on the program, the backend and
the compile options, so a cached kernel gives the same numbers as a fresh compile.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "PERPJAX_COMPILATION_CACHE"
OFF = ("", "0", "off", "none", "false")


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "perpjax" / "jax"


def compilation_cache_dir() -> Path | None:
    """The directory the cache uses, or None when disabled."""
    v = os.environ.get(ENV)
    if v is not None and v.strip().lower() in OFF:
        return None
    return Path(v) if v is not None else default_cache_dir()


def enable_compilation_cache() -> Path | None:
    """Point JAX's persistent cache at ``compilation_cache_dir()`` unless the user configured one
    (``JAX_COMPILATION_CACHE_DIR``) or disabled it; returns the directory in use. A directory that
    cannot be created disables the cache (a warning, not an error)."""
    import warnings

    import jax

    if jax.config.jax_compilation_cache_dir:  # set by the user (env or config): respect it
        return Path(jax.config.jax_compilation_cache_dir)
    d = compilation_cache_dir()
    if d is None:
        return None
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        warnings.warn(f"perpjax: compilation cache disabled ({d}: {e.strerror})", stacklevel=2)
        return None
    jax.config.update("jax_compilation_cache_dir", str(d))
    # cache every kernel that took a while to compile (JAX's default threshold is 1 s)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return d


class CompileClock:
    """Counts what a block of work spent compiling, from JAX's own monitoring events:
    ``with CompileClock() as c: ...`` then ``c.record()`` -> {compile_seconds (backend compiles),
    compiles, compile_cache_hits} for the manifest. Listeners are process-wide: the clock counts
    every compile in the process while it is open; ``names``: only compiles of functions whose name
    contains one of them (e.g. a kernel's)."""

    COMPILE = "/jax/core/compile/backend_compile_duration"
    HIT = "/jax/compilation_cache/cache_hits"

    def __init__(self, *names: str):
        self.names = names
        self.seconds, self.compiles, self.hits = 0.0, 0, 0

    def _duration(self, event, duration, **kw):
        if event == self.COMPILE and (not self.names or any(n in str(kw.get("fun_name", "")) for n in self.names)):
            self.seconds += float(duration)
            self.compiles += 1

    def _event(self, event, **_):
        if event == self.HIT:
            self.hits += 1

    def __enter__(self):
        import jax

        jax.monitoring.register_event_duration_secs_listener(self._duration)
        jax.monitoring.register_event_listener(self._event)
        return self

    def __exit__(self, *exc):
        import jax

        jax.monitoring.unregister_event_duration_listener(self._duration)
        jax.monitoring.unregister_event_listener(self._event)

    def record(self) -> dict:
        return {"compile_seconds": round(self.seconds, 3), "compiles": self.compiles,
                "compile_cache_hits": self.hits}
