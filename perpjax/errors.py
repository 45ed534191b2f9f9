"""The exceptions perpjax raises on purpose, in a leaf module (it imports nothing from perpjax), so that any
module can raise or catch them without importing the config package or the engine.

They are ``ValueError`` subclasses: a caller that only knows "bad input" catches ``ValueError``. The CLI turns
a ``ConfigError`` into its message and exit status 2. Re-exported as ``perpjax.ConfigError`` and
``perpjax.config.ConfigError``; ``FewRegimeBars`` also from ``perpjax.estimate``.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value breaks a rule; the message names the field."""


class FewRegimeBars(ValueError):
    """Too few stress or calm bars for a regime's correlation (``fit_market``'s ``stress_fallback`` catches it)."""
