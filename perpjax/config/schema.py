"""The config file's typed schema (pydantic v2): keys, types, defaults, choices and bounds.

Every section forbids unknown keys, every number must be finite, YAML 1.1 number strings
(``1e-4``, which PyYAML reads as a string) are read as numbers, and an integral float is
accepted where an integer is required (``paths: 1e6``). Errors become one ``ConfigError``
line naming the dotted path of the field (``ladders.BTC[2].mmr``) and the rule broken.

What a value means for the model (a correlation positive semi-definite, a ladder monotone, a
liquidation mode known) is checked once, by the Module it builds (``__check_init__``), not here.
Besides ``fields`` it uses only ``errors`` and ``margin``'s rule on calibration's rate bounds (no import cycle).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from ..errors import ConfigError
from ..margin import validate_rate_range
from .fields import (
    Assets,
    Bool,
    Int,
    Num,
    NumList,
    NumMatrix,
    PerAsset,
    Section,
    Str,
    config_error,
    defaults,
    integer,
    number,
    time_or_seconds,
    validate,
)

__all__ = ["ConfigError", "validate", "defaults", "config_error", "KNOBS", "Config", "Calibration", "Objective"]


class Time(Section):
    step_seconds: Num = Field(gt=0)
    horizon_seconds: Num = Field(gt=0)


class Asset(Section):
    name: Str
    price: Num = Field(gt=0)
    vol: Num = Field(ge=0)
    drift: Num = 0.0
    depth_usd: Num = Field(gt=0)
    spread: Num = Field(0.0, ge=0)
    basis_mean: Num = 0.0


class Innovations(Section):
    kind: Str = "gaussian"
    nu: Num = 5.0
    residuals: Str | None = None  # historical: npz of GARCH-standardised residuals x/sqrt(h) (std ~1, scales vol)
    bar_seconds: Num | None = Field(None, gt=0)  # the bar the innovations (and GARCH) hold at; None = the step
    block_bars: Int = Field(1, ge=1)  # historical: bars per moving bootstrap block (1 = i.i.d. residual vectors)


class MarketStateSection(Section):
    """The conditional state at the forecast origin (filtered by ``perpjax filter``)."""

    time: Annotated[Any, BeforeValidator(time_or_seconds)] | None = None
    variance_ratio: PerAsset | None = None  # GARCH variance / its long-run target, per asset (> 0)
    stress: Bool = False  # start in the stress regime


class Jumps(Section):
    intensity_per_year: PerAsset
    mean: PerAsset
    std: PerAsset


class Oracle(Section):
    update_every_seconds: Num | None = None


class Mark(Section):
    kind: Str = "index"
    window_seconds: Num = 150.0


class Basis(Section):
    stationary_std: Num = 0.0
    half_life_seconds: Num = 3600.0
    crowding: PerAsset = 0.0


class Funding(Section):
    enabled: Bool = True
    interval_seconds: Num = 28800.0
    interest: Num = 1e-4
    clamp: Num = 5e-4
    cap: Num = 7.5e-3
    quantum: Num = 0.0
    rounding: Str = "nearest"
    price: Str = "mark"
    weighting: Str = "linear"
    scale: Num = 1.0


class Tier(Section):
    floor: Num
    mmr: Num
    imr: Num


class Liquidation(Section):
    check_every_seconds: Num | None = None
    bridge: Bool = False
    fee_rate: Num = 0.005
    depth_distance: Num = 0.005
    impact_exponent: Num = 0.5
    mode: Str = "full"
    buffer: Num = 0.02
    fraction: Num = 0.2
    fraction_above_notional: Num = 100_000.0
    cooldown_seconds: Num = 0.0
    adl: Bool = False
    backstop_fraction_of_mm: Num = 0.0
    delay_seconds: Num = 0.0
    throttle_notional_per_step: Num = 0.0
    fairness: Bool = False
    ledger: Bool = False
    forced_cost: Num = 0.0
    depth_vol_elasticity: Num = 0.0
    depth_floor: Num = 0.1
    depth_vol_halflife_seconds: Num = 900.0


class CircuitBreaker(Section):
    move: Num
    window_seconds: Num
    halt_seconds: Num


class Guardrails(Section):
    circuit_breaker: CircuitBreaker | None = None
    enforce_initial_margin: Bool = False
    open_interest_limit: dict[str, Annotated[float, BeforeValidator(number), Field(gt=0)]] | None = None


class Position(Section):
    asset: Str
    size: Num
    entry: Num = Field(gt=0)
    margin: Num | None = None


class Account(Section):
    id: Str
    mode: Literal["cross", "isolated"] = "cross"
    collateral: Num | None = Field(None, ge=0)
    positions: list[Position]


class Generate(Section):
    n_accounts: Int = Field(ge=1)
    seed: Int = 0
    leverage: NumList = [2, 5, 10, 20]
    leverage_weights: NumList = [0.3, 0.3, 0.25, 0.15]
    long_fraction: Num = 0.55
    notional_median: Num = 50_000.0
    notional_sigma: Num = 1.5
    isolated_fraction: Num = 0.2
    entry_dispersion: Num = 0.02


class Book(Section):
    """The accounts listed (``accounts``), a book file's (``accounts_file``: CSV or JSON, what ``--book`` reads;
    ``csv``: its alias for a CSV) and the generated ones (``generate``) add up."""

    accounts: list[Account] = []
    accounts_file: Str | None = None
    csv: Str | None = None  # the alias of accounts_file for a CSV book (a .json here is refused: not a CSV)
    generate: Generate | None = None
    start_below_maintenance: Bool = False  # allow units below maintenance at t = 0 (stress tests)

    @model_validator(mode="after")
    def _one_file(self):
        if self.csv is not None and self.accounts_file is not None:
            raise PydanticCustomError("one_file", "csv, accounts_file: one book file (book.csv is the alias of "
                                                  "book.accounts_file for a CSV); write the other as null to drop "
                                                  "one inherited through extends")
        if self.csv is not None and self.csv.lower().endswith(".json"):
            raise PydanticCustomError("csv_json", "csv: a JSON book is named by book.accounts_file (book.csv reads "
                                                  "a CSV)")
        return self


class Cascade(Section):
    impact: Str = "sqrt"
    permanent_fraction: Num = Field(0.5, ge=0)
    impact_exponent: Num | None = None
    window_seconds: Num = 300.0


class Regimes(Section):
    stress_correlation: NumMatrix
    switch: Str = "shock"
    drawdown: Num = Field(0.05, ge=0)
    reference_halflife_seconds: Num = Field(21600.0, ge=0)
    enter_rate_per_day: Num = Field(0.1, ge=0)
    exit_rate_per_day: Num = Field(4.0, ge=0)
    vol_multiplier: PerAsset = 1.0
    depth_factor: PerAsset = 1.0


class Garch(Section):
    alpha: PerAsset
    beta: PerAsset
    fitted_seconds: Num = Field(3600.0, gt=0)
    winsorize: Num | None = Field(None, gt=1)  # cap on the squared unit innovation the update sees


class Window(Section):
    start_seconds: Num = Field(ge=0)
    duration_seconds: Num


class Shock(Window):
    assets: Assets = "all"
    return_: Num = Field(alias="return", gt=-1)


class DepthBurst(Window):
    assets: Assets = "all"
    factor: Num = Field(gt=0)


class Replay(Section):
    start: Annotated[Any, BeforeValidator(time_or_seconds)]
    symbols: dict[str, Any]
    csv: Str | None = None
    seed: Int = 0
    bar_seconds: Num = 3600.0


class Events(Section):
    shocks: list[Shock] = []
    depth_bursts: list[DepthBurst] = []
    oracle_freezes: list[Window] = []
    stress_windows: list[Window] = []
    replay: Replay | None = None


KNOBS = ("mmr", "floors", "fee_rate", "mark_window", "fraction", "buffer")
Weight = Annotated[float, BeforeValidator(number), Field(ge=0)]
Probability = Annotated[float, BeforeValidator(number), Field(gt=0, lt=1)]


class Objective(Section):
    """Calibration objective: weights of each term (see ``calibrate``)."""

    bad_debt: Weight = 1.0
    trader_cost: Weight = 0.0
    liquidations: Weight = 0.0
    capital: Weight = 0.05
    fund_es: Weight = 0.0
    fund_es_level: Probability = 0.99
    over_liquidation: Weight = 0.0
    excess_cost: Weight = 0.0
    exceed_budget: Num | None = Field(None, gt=0)
    exceed_probability: Probability = 0.001
    exceed_weight: Weight = 0.0
    exceed_temperature: Num = Field(0.1, gt=0)


class Calibration(Section):
    """Ladder calibration settings (``perpjax calibrate``)."""

    assets: Literal["all"] | list[Str] = "all"
    min_mmr: Num = Field(0.001, ge=0)
    max_mmr: Num = Field(0.25, lt=1)
    temperature: Num = Field(1e-4, gt=0)
    paths: Int = Field(2000, ge=1)
    iterations: Int = Field(100, ge=1)
    learning_rate: Num = Field(0.05, gt=0)
    clip_norm: Num = Field(1.0, gt=0)
    resample: Bool = False
    checkpoint_every: Int = Field(10, ge=1)
    patience: Int = Field(25, ge=0)
    tolerance: Num = Field(1e-4, ge=0)
    block_steps: Int = Field(60, ge=0)
    eval_paths: Int = Field(20000, ge=1)
    seed: Int | None = Field(None, ge=0)
    tune: list[Literal[KNOBS]] = Field(["mmr"], min_length=1)
    max_fee_rate: Probability = 0.05
    chunk_paths: Int = Field(0, ge=0)
    objective: Objective = Objective()

    @model_validator(mode="after")
    def _consistent(self):
        try:
            validate_rate_range("min_mmr, max_mmr", self.min_mmr, self.max_mmr)  # the margin module's rule
        except ValueError as e:
            raise PydanticCustomError("order", str(e).replace("{", "{{").replace("}", "}}")) from None
        if self.chunk_paths and self.paths % self.chunk_paths:
            raise PydanticCustomError("divide", f"chunk_paths: must divide calibration.paths ({self.paths}), "
                                                f"got {self.chunk_paths}")
        if self.objective.fund_es and self.chunk_paths:
            raise PydanticCustomError("fund_es", "chunk_paths: the fund ES term ranks all paths together; use one "
                                                 "chunk (chunk_paths: 0) with objective.fund_es")
        return self


class Config(Section):
    """A whole run: market, venue rules, book, stress and calibration settings."""

    seed: Int = Field(0, ge=0)
    paths: Int = Field(100_000, ge=1)
    chunk_size: Literal["auto"] | Annotated[int, BeforeValidator(integer), Field(ge=1)] = "auto"
    dtype: Literal["float32", "float64"] = "float32"
    devices: Literal["all"] | Annotated[int, BeforeValidator(integer), Field(ge=1)] = "all"  # local devices
    time: Time
    assets: list[Asset] = Field(min_length=1)
    correlation: NumMatrix
    innovations: Innovations = Innovations()
    jumps: Jumps | None = None
    oracle: Oracle = Oracle()
    mark: Mark = Mark()
    basis: Basis = Basis()
    funding: Funding = Funding()
    ladders: dict[str, Annotated[list[Tier], Field(min_length=1)]]
    liquidation: Liquidation = Liquidation()
    insurance_fund: Num = Field(0.0, ge=0)
    book: Book
    guardrails: Guardrails = Guardrails()
    description: Str = ""
    cascade: Cascade | None = None
    regimes: Regimes | None = None
    garch: Garch | None = None
    market_state: MarketStateSection | None = None
    events: Events | None = None
    calibration: Calibration | None = None


