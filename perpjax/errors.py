"""The exceptions perpjax raises on purpose, in a leaf module (it imports nothing from perpjax), so that any
module can raise or catch them without importing the config package, the engine or the store.

They are ``ValueError`` subclasses: a caller that only knows "bad input" catches ``ValueError``. The CLI turns
a ``ConfigError`` (``OutDirError`` included) into its message and exit status 2. Re-exported where callers
found them before: ``perpjax.ConfigError`` and ``perpjax.config.ConfigError``; ``FewRegimeBars`` from
``perpjax.estimate``; ``OutDirError`` from ``perpjax.store``; ``NotARunError`` from ``perpjax.report`` and
``perpjax.report.load``.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value breaks a rule; the message names the field."""


class OutDirError(ConfigError):
    """An output directory that cannot be used: not a directory, not writable, locked by another run, or
    too small for the run's per-path table (exit 2: the message names it)."""


class NotARunError(ValueError):
    """The directory holds no perpjax output (no summary.json and manifest.json, no compare.csv)."""


class FewRegimeBars(ValueError):
    """Too few stress or calm bars for a regime's correlation (``fit_market``'s ``stress_fallback`` catches it)."""
