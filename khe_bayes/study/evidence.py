"""The published evidence as typed records, each with the sentence it was read from.

Records live in ``khe_bayes/study/data/evidence.toml`` (or a user file of the same shape) and are
validated strictly: unknown keys, a missing quote, a CI with lower > upper, or a record kind
without its values are errors that name the file and the key.
"""

from __future__ import annotations

import math
import tomllib
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from khe_bayes.toolkit.errors import InputError
from khe_bayes.toolkit.tomlio import read_toml

DEFAULT_EVIDENCE = "evidence.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Interpretation(_Strict):
    """One reading of an ambiguous number, with the procedure the paper most plausibly used."""

    id: str
    description: str
    default: bool = False
    plausible: bool = True
    estimand: str | None = None
    units: str | None = None
    test: str | None = None
    groups: list[str] | None = None
    denominator: int | None = Field(default=None, gt=0)
    denominator_min: int | None = Field(default=None, gt=0)
    # readings as a latent choice (summary_data.py): prior weight (normalised within the record),
    # the test the statistic's printed p-value belongs to under this reading ("same": the
    # interval's own test) and the groups it compares; why the groups are in this order
    prior_weight: float | None = Field(default=None, ge=0)
    p_test: Literal["same", "t_two_sample_pooled", "t_paired"] | None = None
    p_groups: list[str] | None = None
    # the text states the sign of a significant result (e.g. "significant decreases"): the
    # tested difference (p_groups[0] minus p_groups[1], or the change) is positive
    p_direction: Literal["positive"] | None = None
    order_reason: str | None = None

    @model_validator(mode="after")
    def _implausible_has_no_weight(self):
        if not self.plausible and self.prior_weight:
            raise ValueError("an implausible interpretation must have prior_weight = 0")
        if self.estimand == "group_means" and not self.order_reason:
            raise ValueError("a group_means reading needs order_reason (which group is which)")
        return self


class _Record(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    statistic: str
    quote: str = Field(min_length=10)
    population: str
    timepoint: str | None = None
    description: str
    interpretations: list[Interpretation] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_default(self):
        if self.interpretations and sum(i.default for i in self.interpretations) != 1:
            raise ValueError("exactly one interpretation must have default = true")
        return self

    @property
    def default_interpretation(self) -> Interpretation | None:
        return next((i for i in self.interpretations if i.default), None)

    def interpretation(self, interpretation_id: str | None = None) -> Interpretation:
        if interpretation_id is None:
            found = self.default_interpretation
        else:
            found = next((i for i in self.interpretations if i.id == interpretation_id), None)
        if found is None:
            raise KeyError(f"record {self.id!r} has no interpretation {interpretation_id!r}")
        return found

    def prior_weights(self) -> dict[str, float]:
        """Each reading's prior probability (``prior_weight`` normalised over the record; equal
        weights over the plausible readings when the file gives none)."""
        raw = {
            i.id: (0.0 if not i.plausible else (1.0 if i.prior_weight is None else i.prior_weight))
            for i in self.interpretations
        }
        total = sum(raw.values())
        if total <= 0:
            raise ValueError(f"record {self.id!r}: every reading has prior weight 0")
        return {k: v / total for k, v in raw.items()}

    def value_text(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError


class CountRecord(_Record):
    """``events`` out of ``total`` (``total`` absent for a bare count such as the cohort size)."""

    kind: Literal["count"]
    events: int = Field(ge=0)
    total: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _events_le_total(self):
        if self.total is not None and self.events > self.total:
            raise ValueError(f"events ({self.events}) exceed total ({self.total})")
        return self

    def value_text(self) -> str:
        return f"{self.events}" if self.total is None else f"{self.events}/{self.total}"


class PercentageRecord(_Record):
    """A printed percentage; its consistent integer counts come from :func:`consistent_counts`."""

    kind: Literal["percentage"]
    percent: float = Field(ge=0, le=100)
    decimals: int = Field(default=0, ge=0, le=4)

    @model_validator(mode="after")
    def _needs_denominator(self):
        if not self.interpretations or any(i.denominator is None for i in self.interpretations):
            raise ValueError("a percentage needs interpretations that each give a denominator")
        return self

    def value_text(self) -> str:
        return f"{self.percent:.{self.decimals}f}%"


class IntervalRecord(_Record):
    """A printed 95% confidence interval."""

    kind: Literal["ci95"]
    lower: float
    upper: float
    decimals: int = Field(ge=0, le=6)

    @model_validator(mode="after")
    def _ordered(self):
        if self.lower > self.upper:
            raise ValueError(f"lower ({self.lower}) exceeds upper ({self.upper})")
        return self

    @property
    def midpoint(self) -> float:
        """Exact midpoint (one more decimal than printed, so no float noise)."""
        return round((self.lower + self.upper) / 2, self.decimals + 1)

    @property
    def half_width(self) -> float:
        return (self.upper - self.lower) / 2

    def value_text(self) -> str:
        d = self.decimals
        return f"95% CI {self.lower:.{d}f} to {self.upper:.{d}f}"


class PBoundRecord(_Record):
    """A printed p-value bound, e.g. ``p < 0.001``."""

    kind: Literal["p_bound"]
    relation: Literal["<", ">", "<=", ">="]
    bound: float = Field(gt=0, lt=1)

    def holds(self, p: float) -> bool:
        """Whether an exact p-value satisfies the printed bound."""
        return {
            "<": p < self.bound,
            "<=": p <= self.bound,
            ">": p > self.bound,
            ">=": p >= self.bound,
        }[self.relation]

    def value_text(self) -> str:
        return f"p {self.relation} {self.bound:g}"


class StructureRecord(_Record):
    """A design fact without a number, used as a constraint."""

    kind: Literal["structure"]
    constraint: str

    def value_text(self) -> str:
        return self.constraint


Record = Annotated[
    CountRecord | PercentageRecord | IntervalRecord | PBoundRecord | StructureRecord,
    Field(discriminator="kind"),
]


class Source(_Strict):
    citation: str
    doi: str
    file: str
    rounding: str


class Evidence(_Strict):
    """The whole registry: the source and its records, addressable by id."""

    source: Source
    record: list[Record] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self):
        seen: set[str] = set()
        for r in self.record:
            if r.id in seen:
                raise ValueError(f"duplicate record id {r.id!r}")
            seen.add(r.id)
        return self

    @cached_property
    def by_id(self) -> dict[str, _Record]:
        return {r.id: r for r in self.record}

    def __getitem__(self, record_id: str):
        try:
            return self.by_id[record_id]
        except KeyError:
            raise KeyError(f"no evidence record {record_id!r}") from None

    def of_kind(self, kind: str) -> list:
        return [r for r in self.record if r.kind == kind]

    def to_frame(self) -> pd.DataFrame:
        """One row per record: id, statistic, kind, value, population, timepoint, quote."""
        rows = []
        for r in self.record:
            interp = r.default_interpretation
            rows.append(
                {
                    "id": r.id,
                    "statistic": r.statistic,
                    "kind": r.kind,
                    "value": r.value_text(),
                    "population": r.population,
                    "timepoint": r.timepoint or "",
                    "default_interpretation": interp.id if interp else "",
                    "n_interpretations": len(r.interpretations),
                    "description": r.description,
                    "quote": r.quote,
                }
            )
        return pd.DataFrame(rows)


def rounding_interval(printed: float, decimals: int) -> tuple[float, float]:
    """Closed interval of exact values that print as ``printed`` with ``decimals`` decimals."""
    half = 0.5 * 10.0 ** (-decimals)
    return printed - half, printed + half


def consistent_counts(
    record: PercentageRecord, interpretation_id: str | None = None
) -> list[tuple[int, int]]:
    """All (events, denominator) pairs whose percentage prints as the record's value.

    Rounding rule: see :func:`rounding_interval` (closed interval, so both round-half-up and
    round-half-even are admitted). A small tolerance guards against float error at the edges.
    """
    interp = record.interpretation(interpretation_id)
    lo, hi = rounding_interval(record.percent, record.decimals)
    n_max = interp.denominator
    n_min = interp.denominator_min or n_max
    pairs = []
    for n in range(n_min, n_max + 1):
        k_lo = math.ceil(lo * n / 100 - 1e-9)
        k_hi = math.floor(hi * n / 100 + 1e-9)
        pairs.extend((k, n) for k in range(max(k_lo, 0), min(k_hi, n) + 1))
    return pairs


def _error_location(err: dict, raw: dict) -> str:
    loc = list(err["loc"])
    parts = []
    if len(loc) >= 2 and loc[0] == "record" and isinstance(loc[1], int):
        idx = loc[1]
        rid = raw.get("record", [{}])[idx].get("id", f"#{idx + 1}")
        parts.append(f"record {rid!r}")
        loc = loc[2:]
        if loc and loc[0] in (
            "count",
            "percentage",
            "ci95",
            "p_bound",
            "structure",
        ):  # discriminator tag
            loc = loc[1:]
    key = ".".join(str(x) for x in loc)
    if key:
        parts.append(f"key {key!r}")
    return ", ".join(parts)


def load_evidence(path: str | Path | None = None) -> Evidence:
    """Load and validate an evidence registry (the packaged one when ``path`` is None)."""
    if path is None:
        ref = resources.files("khe_bayes.study").joinpath("data", DEFAULT_EVIDENCE)
        label, raw = (
            f"khe_bayes/study/data/{DEFAULT_EVIDENCE}",
            tomllib.loads(ref.read_text("utf-8")),
        )
    else:
        label, raw = str(path), read_toml(path)
    try:
        return Evidence.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = _error_location(first, raw)
        raise InputError(f"{where}: {first['msg']}", file=label) from None
