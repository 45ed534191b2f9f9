"""perpjax's version, in a leaf module: the run manifest (``io.manifest``) reads it without importing the
package's ``__init__``. Keep it equal to ``version`` in pyproject.toml."""

__version__ = "0.1.0"
