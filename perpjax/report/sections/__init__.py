"""The report's sections, one module each; every module's ``section(run)`` returns its HTML ('' when its
inputs are absent)."""
