"""Reading configs: YAML files with ``extends``, ``--set`` overrides, packaged scenarios, a user's book file,
and the schema check that fills defaults (``resolve``). Relative file paths follow one rule (``files``)."""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path

import yaml

from . import files, ladders, schema
from .book import listed_accounts, use_book
from .schema import ConfigError


def default_config_path() -> Path:
    return Path(str(resources.files("perpjax") / "configs" / "default.yaml"))


def scenarios_dir() -> Path:
    return default_config_path().parent / "scenarios"


def list_scenarios() -> list[tuple[str, str]]:
    """(name, description) of every packaged scenario, sorted by name."""
    out = []
    for p in sorted(scenarios_dir().glob("*.yaml")):
        raw = yaml.safe_load(p.read_text()) or {}
        out.append((p.stem, str(raw.get("description", ""))))
    return out


def apply_scenario(cfg: dict, name: str) -> dict:
    """``cfg`` with the named packaged scenario merged over it (its ``extends`` ignored):
    the scenario's events, regimes, cascade and other keys apply to any config."""
    p = scenarios_dir() / f"{name}.yaml"
    if not p.is_file():
        names = ", ".join(n for n, _ in list_scenarios())
        raise ConfigError(f"--scenario {name}: no such scenario (available: {names})")
    raw = files.anchor(yaml.safe_load(p.read_text()), p.parent)
    raw.pop("extends", None)
    return deep_merge(cfg, raw)


def _parse_value(text):
    return yaml.safe_load(text)


def apply_overrides(cfg: dict, overrides) -> dict:
    """Apply ``a.b.0.c=value`` overrides (value parsed as YAML).

    A list of named items is selected by index or by name: ``assets.BTC.vol`` (an asset's ``name``),
    ``book.accounts.whale.collateral`` (an account's ``id``), ``...positions.ETH.size`` (a position's
    ``asset``); an all-digit key is an index."""
    cfg = copy.deepcopy(cfg)
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"--set {item}: expected key=value")
        path, text = item.split("=", 1)
        keys = path.split(".")
        node = cfg
        for i, k in enumerate(keys):
            last = i == len(keys) - 1
            if isinstance(node, list):
                k = _list_index(node, k, ".".join(keys[:i + 1]))
            elif not isinstance(node, dict):
                raise ConfigError(f"{'.'.join(keys[:i + 1])}: cannot set inside a {type(node).__name__}")
            if last:
                node[k] = _parse_value(text)
            else:
                if isinstance(node, dict) and k not in node:
                    node[k] = {}
                # copy on write: a YAML alias (``*ladder``) shares one object between keys; the
                # override changes this key's copy only
                node[k] = copy.copy(node[k]) if isinstance(node[k], (dict, list)) else node[k]
                node = node[k]
    return cfg


NAME_KEYS = ("name", "id", "asset")  # what names an item of a list: assets, accounts, positions


def _list_index(items: list, key: str, where: str) -> int:
    """The position in ``items`` that ``key`` selects: an index, or the one item whose name is ``key``."""
    if not items:
        raise ConfigError(f"{where}: the list is empty (nothing to select)")
    if key.isdigit():
        if int(key) >= len(items):
            raise ConfigError(f"{where}: no such list index (the list has {len(items)} item(s): 0 to "
                              f"{len(items) - 1})")
        return int(key)
    field = next((f for f in NAME_KEYS if all(isinstance(x, dict) and f in x for x in items)), None)
    if field is None:
        raise ConfigError(f"{where}: expected a list index 0 to {len(items) - 1} (the items have no names)")
    hits = [j for j, x in enumerate(items) if str(x[field]) == key]
    if not hits:
        known = ", ".join(str(x[field]) for x in items)
        raise ConfigError(f"{where}: unknown {field} {key!r} (known: {known})")
    if len(hits) > 1:
        raise ConfigError(f"{where}: {len(hits)} items with {field} {key!r} (at {hits}): select one by index")
    return hits[0]


def deep_merge(base: dict, top: dict) -> dict:
    """``top`` over ``base``: mappings merge key by key, anything else (lists included) replaces."""
    out = copy.deepcopy(base)
    for k, v in top.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _read_yaml(p: Path, chain=()) -> dict:
    try:
        raw = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config: file not found: {p}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config: not valid YAML ({p}): {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config: top level of {p} must be a mapping")
    files.anchor(raw, p.parent)  # relative paths: relative to this file, the one that names them
    base = raw.pop("extends", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ConfigError(f"extends: must be 'default' or a path to a config (got {base!r}) in {p}")
    bp = default_config_path() if base == "default" else (p.parent / base).resolve()
    if bp in chain or len(chain) > 8:
        raise ConfigError(f"extends: configs extend each other in a cycle ({' -> '.join(map(str, (*chain, bp)))})")
    return deep_merge(_read_yaml(bp, (*chain, p.resolve())), raw)


def load_config(path=None, overrides=(), *, book=None, scenario: str | None = None) -> dict:
    """Read a YAML config (the packaged default when ``path`` is None), then apply in turn the packaged
    ``scenario`` (``apply_scenario``), the ``book`` file (``book.use_book``: CSV or JSON) and the overrides.

    A config may start with ``extends: default`` (or a path relative to it): it is
    then the base config with this file's keys merged over it (mappings merge key
    by key; lists such as ``book.accounts`` or ``correlation`` replace).

    File paths (``files.FILE_KEYS``): relative to the config file that writes them; ``book`` and paths
    in ``overrides`` are relative to the working directory (all are absolute in the result).
    """
    p = Path(path) if path is not None else default_config_path()
    cfg = _read_yaml(p)
    if scenario:
        cfg = apply_scenario(cfg, scenario)
    if book is not None:
        cfg = use_book(cfg, book)
    return files.anchor(apply_overrides(cfg, overrides), Path.cwd())


def resolve(cfg: dict) -> dict:
    """Check the whole config against the schema (``schema.Config``) and fill defaults (no models built).

    Ladder sources (a preset ``"venue:SYMBOL"`` or a bracket file, ``ladders``) are expanded first, and the
    listed book (``book.listed_accounts``: the config's accounts and its book file) is checked against their
    caps; the result is plain data.
    """
    return resolve_with_caps(cfg)[0]


def resolve_with_caps(cfg: dict) -> tuple[dict, dict]:
    """(``resolve(cfg)``, the capped ladders ``{asset: (cap, source)}`` of ``ladders.expand``): the build checks
    a generated book against the same caps (``ladders.check_generated``)."""
    if not isinstance(cfg, dict):
        raise ConfigError("config: top level must be a mapping")
    cfg, caps = dict(cfg), {}
    if isinstance(cfg.get("ladders"), dict):
        cfg["ladders"], caps = ladders.expand(cfg["ladders"])
    c = schema.validate(schema.Config, cfg).model_dump(by_alias=True)
    names = [a["name"] for a in c["assets"]]
    if len(set(names)) != len(names):
        raise ConfigError(f"assets: names must be unique (got {names})")
    for name in names:
        if name not in c["ladders"]:
            raise ConfigError(f"ladders.{name}: required (one ladder per asset)")
    extra = sorted(set(c["ladders"]) - set(names))
    if extra:
        raise ConfigError(f"ladders.{extra[0]}: not an asset (assets: {', '.join(names)})")
    if caps:
        ladders.check_caps(c, caps, listed_accounts(c))
    return c, caps


def resolve_calibration(c: dict) -> dict:
    """The ``calibration`` section of a resolved config, checked (``schema.Calibration``), defaults filled."""
    cal = schema.validate(schema.Calibration, c.get("calibration") or {}, "calibration").model_dump()
    names = c["asset_names"]
    if cal["assets"] != "all":
        for a in cal["assets"]:
            if a not in names:
                raise ConfigError(f"calibration.assets: unknown asset {a!r} (assets: {', '.join(names)})")
    return cal

