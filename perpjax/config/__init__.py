"""Config files (YAML) -> validated models.

The config maps one-to-one onto the Modules (``paths``, ``market``, ``margin``,
``liquidation``). Every key is checked before anything is computed: unknown
keys, wrong types, NaN / infinite numbers and out-of-range values raise
``ConfigError`` naming the field (dotted path) and the rule.

Rooms: ``schema`` (the typed schema, pydantic), ``load`` (YAML, ``extends``, ``--set``, scenarios,
``resolve``), ``build`` (resolved config -> ``RiskModel``), ``book`` (accounts, CSV, generated books),
``events`` (cascade, regimes, GARCH, scheduled events), ``convert`` (shared conversions).
"""

from ..errors import ConfigError as ConfigError
from . import schema as schema
from .book import read_book_csv as read_book_csv
from .build import build_model as build_model
from .events import build_stress as build_stress
from .load import apply_overrides as apply_overrides
from .load import apply_scenario as apply_scenario
from .load import deep_merge as deep_merge
from .load import default_config_path as default_config_path
from .load import list_scenarios as list_scenarios
from .load import load_config as load_config
from .load import resolve as resolve
from .load import resolve_calibration as resolve_calibration
from .load import scenarios_dir as scenarios_dir
