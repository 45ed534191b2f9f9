"""Field types and the base section of the config schema: numbers as YAML writes them (``1e-4`` read as a
string by YAML 1.1 is a number; an integral float is an integer), finite only; strict booleans and strings;
a section that refuses unknown keys and reads null as the default; and pydantic's errors turned into one
``ConfigError`` line naming the dotted field (``ladders.BTC[2].mmr``)."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from ..errors import ConfigError as ConfigError  # the one class (perpjax.errors), re-exported for the schema


def rule_error(kind: str, rule: str, value=None):
    got = "" if value is None else f" (got {type(value).__name__} {value!r})"
    return PydanticCustomError(kind, rule + got.replace("{", "{{").replace("}", "}}"))


def number(v):
    if isinstance(v, str):
        try:  # YAML 1.1 reads "1e-4" as a string
            v = float(v)
        except ValueError:
            raise rule_error("number", "must be a number", v) from None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise rule_error("number", "must be a number", v)
    if not math.isfinite(v):
        raise PydanticCustomError("finite", f"must be a finite number (got {v})")
    return float(v)


def integer(v):
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            raise rule_error("integer", "must be an integer", v) from None
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise rule_error("integer", "must be an integer", v)
    return v


def strict(kind: type, word: str):
    def check(v):
        if not isinstance(v, kind) or (kind is not bool and isinstance(v, bool)):
            raise rule_error(word, f"must be a {word}", v)
        return v
    return check


def per_asset(v):
    """One number for every asset, or a list of one per asset (the length is checked with the assets)."""
    if isinstance(v, list):
        return [number(x) for x in v]
    return number(v)


def assets_choice(v):
    if v == "all" or isinstance(v, str) or (isinstance(v, list) and v and all(isinstance(x, str) for x in v)):
        return v
    raise rule_error("assets", "must be 'all', an asset name or a list of asset names", v)


Num = Annotated[float, BeforeValidator(number)]
Int = Annotated[int, BeforeValidator(integer)]
Bool = Annotated[bool, BeforeValidator(strict(bool, "boolean"))]
Str = Annotated[str, BeforeValidator(strict(str, "string"))]
PerAsset = Annotated[Any, BeforeValidator(per_asset)]
Assets = Annotated[Any, BeforeValidator(assets_choice)]
NumList = Annotated[list, BeforeValidator(lambda v: [number(x) for x in strict(list, "list")(v)])]
NumMatrix = Annotated[list, BeforeValidator(lambda v: [[number(x) for x in strict(list, "list")(r)]
                                                       for r in strict(list, "list")(v)])]


def time_or_seconds(v):
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise rule_error("time", "must be a date or unix seconds", v)
    return v


class Section(BaseModel):
    """A config mapping: unknown keys and non-mappings refused, a null value means the default."""

    model_config = ConfigDict(extra="forbid", validate_default=False)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, d):
        if not isinstance(d, dict):
            raise rule_error("mapping", "must be a mapping", d)
        allowed = {f.alias or name for name, f in cls.model_fields.items()}  # a key may be an alias ("return")
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise PydanticCustomError("unknown_key", "unknown key (allowed: {allowed})",
                                      {"key": str(unknown[0]), "allowed": ", ".join(sorted(allowed))})
        return {k: v for k, v in d.items() if v is not None}


def _where(loc, err) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "literal[", "int", "list[", "constrained")):
            continue  # pydantic's tag of one alternative of a union, not a config key
        else:
            out += ("." if out else "") + str(part)
    if err["type"] == "unknown_key":
        out += ("." if out else "") + err["ctx"]["key"]
    return out


_RULES = {
    "missing": lambda e: "required",
    "greater_than": lambda e: f"must be > {e['ctx']['gt']} (got {e['input']})",
    "greater_than_equal": lambda e: f"must be >= {e['ctx']['ge']} (got {e['input']})",
    "less_than": lambda e: f"must be < {e['ctx']['lt']} (got {e['input']})",
    "less_than_equal": lambda e: f"must be <= {e['ctx']['le']} (got {e['input']})",
    "too_short": lambda e: f"must have at least {e['ctx']['min_length']} item(s)",
    "literal_error": lambda e: ("must be one of " if e["ctx"]["expected"].count("'") > 4 else "must be ")
    + f"{e['ctx']['expected']} (got {e['input']!r})",
    "list_type": lambda e: f"must be a list (got {type(e['input']).__name__} {e['input']!r})",
    "dict_type": lambda e: f"must be a mapping (got {type(e['input']).__name__} {e['input']!r})",
    "model_type": lambda e: f"must be a mapping (got {type(e['input']).__name__} {e['input']!r})",
    "int_type": lambda e: f"must be an integer (got {type(e['input']).__name__} {e['input']!r})",
    "string_type": lambda e: f"must be a string (got {type(e['input']).__name__} {e['input']!r})",
}


def config_error(exc: ValidationError, prefix: str = "") -> ConfigError:
    """The first error of a pydantic validation as one line: ``dotted.path: rule (got value)``."""
    errs = exc.errors(include_url=False)
    # a field typed "A or B" reports one error per alternative: the most specific (longest path) says most
    e = max(errs, key=lambda x: (x["type"] not in ("literal_error", "int_type", "model_type"), len(x["loc"])))
    rule = _RULES.get(e["type"], lambda e: e["msg"])(e)
    where = ".".join(x for x in (prefix, _where(e["loc"], e)) if x).replace(".[", "[")
    if not where:
        return ConfigError(rule)
    # a cross-field rule names its fields itself ("min_mmr, max_mmr: ...")
    named = e["type"] in ("order", "divide", "fund_es", "one_file", "csv_json")
    return ConfigError(f"{where}.{rule}" if named else f"{where}: {rule}")


def validate(model: type[BaseModel], data, prefix: str = ""):
    """``model.model_validate(data)``, with a ``ConfigError`` naming the field on failure."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, prefix) from None


def defaults(model: type[BaseModel]) -> dict:
    """The default value of every optional field of a section, as plain data."""
    return {k: (f.default.model_dump(by_alias=True) if isinstance(f.default, BaseModel) else f.default)
            for k, f in model.model_fields.items() if not f.is_required()}
