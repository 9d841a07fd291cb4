"""What every model family shares: the spec fields common to all families and the registry
entry type."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pymc as pm
from pydantic import BaseModel, ConfigDict, Field, model_validator

from khe_bayes.toolkit.sampling import SamplerSettings
from khe_bayes.toolkit.summary import Threshold


class SpecWarning(UserWarning):
    """Something in a spec that is allowed but probably not meant (``khe-bayes fit`` prints it
    as a one-line warning)."""


class ReportedStatisticSpec(BaseModel):
    """A frequentist result reported for this analysis, to check the posterior against."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    quantity: str = Field(description="the posterior quantity it corresponds to")
    test: str = Field(description="the frequentist procedure, e.g. t_one_sample")
    estimate: float | None = None
    lower: float | None = None
    upper: float | None = None
    p_relation: Literal["<", ">", "<=", ">="] | None = None
    p_bound: float | None = Field(default=None, gt=0, lt=1)
    decimals: int | None = Field(
        default=None, ge=0, description="decimals printed; replications are rounded alike"
    )
    scale: Literal["fraction", "percent"] | None = Field(
        default=None,
        description="scale of estimate/lower/upper for proportion tests; default: the "
        "quantity's own (fraction for probabilities); a scale the quantity cannot have is an error",
    )
    quote: str = ""

    @model_validator(mode="after")
    def _shape(self):
        if (self.lower is None) != (self.upper is None):
            raise ValueError("give both lower and upper, or neither")
        if self.lower is not None and self.lower > self.upper:
            raise ValueError("lower exceeds upper")
        if (self.p_relation is None) != (self.p_bound is None):
            raise ValueError("give both p_relation and p_bound, or neither")
        if self.estimate is None and self.lower is None and self.p_bound is None:
            raise ValueError("a reported statistic needs an estimate, an interval or a p bound")
        return self


class SpecBase(BaseModel):
    """Fields every spec has. Unknown keys anywhere are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_\-]*$")
    description: str = ""
    sampler: SamplerSettings = SamplerSettings()
    thresholds: list[Threshold] = Field(default_factory=list)
    reported: list[ReportedStatisticSpec] = Field(default_factory=list)


@dataclass(frozen=True)
class Family:
    """A registry entry: the spec class, how to load its data, how to build its model, which
    variables to summarize and how to describe them."""

    name: str
    spec: type[BaseModel]
    load_data: Callable[[Any, Path], Any]  # (spec, spec_dir) -> data; raises InputError
    build: Callable[[Any, Any], pm.Model]  # (spec, data) -> model; never samples
    summary_vars: Callable[[Any], list[str]]
    descriptions: dict[str, str] = field(default_factory=dict)
    data_files: Callable[[Any, Path], list[Path]] = lambda spec, spec_dir: []
    describe: Callable[[Any], dict[str, str]] | None = None  # when descriptions depend on spec
    # quantity name -> "fraction" for probabilities / risk differences (the [[reported]] scale
    # check); quantities not listed are not proportions
    scales: Callable[[Any], dict[str, str]] = lambda spec: {}

    def descriptions_for(self, spec) -> dict[str, str]:
        return self.describe(spec) if self.describe else self.descriptions
