"""The KHE analyses as registry families: the aggregate proportions (from the evidence) and the
hierarchical IPD models (from an IPD CSV in the schema of khe_bayes.study.ipd)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from khe_bayes.families.base import Family, SpecBase
from khe_bayes.study.aggregate import AggregateProportionSpec, build_proportion_model, outcome_data
from khe_bayes.study.evidence import load_evidence
from khe_bayes.study.hierarchical import (
    ContrastPriors,
    ResponsePriors,
    SeverityPriors,
    ShrinkagePriors,
    build_contrast_model,
    build_response_model,
    build_severity_model,
    build_shrinkage_model,
)
from khe_bayes.study.ipd import load_ipd
from khe_bayes.study.ipd_analysis import IPD_MODELS


class ResponseSpec(SpecBase):
    family: Literal["khe_response"]
    data: str
    priors: ResponsePriors = ResponsePriors()


class SeveritySpec(SpecBase):
    family: Literal["khe_severity"]
    data: str
    kind: Literal["ordinal", "gaussian"] = "ordinal"
    priors: SeverityPriors = SeverityPriors()


class ShrinkageSpec(SpecBase):
    family: Literal["khe_shrinkage"]
    data: str
    priors: ShrinkagePriors = ShrinkagePriors()


class ContrastSpec(SpecBase):
    family: Literal["khe_contrasts"]
    data: str
    priors: ContrastPriors = ContrastPriors()


def _load_ipd(spec, spec_dir: Path):
    return load_ipd(spec_dir / spec.data)


def _entry(model_name: str):
    return next(m for m in IPD_MODELS if m.name == model_name)


def _ipd_family(name, spec_cls, build, model_name) -> Family:
    """``model_name`` may be a function of the spec (the severity family has two models)."""
    pick = model_name if callable(model_name) else (lambda spec: model_name)
    return Family(
        name=name,
        spec=spec_cls,
        load_data=_load_ipd,
        build=build,
        summary_vars=lambda spec: list(_entry(pick(spec)).var_names),
        describe=lambda spec: dict(_entry(pick(spec)).descriptions),
        data_files=lambda spec, spec_dir: [spec_dir / spec.data],
    )


KHE_FAMILIES = (
    _ipd_family(
        "khe_response", ResponseSpec, lambda s, d: build_response_model(d, s.priors), "response"
    ),
    _ipd_family(
        "khe_severity",
        SeveritySpec,
        lambda s, d: build_severity_model(d, s.kind, s.priors),
        lambda spec: f"severity_{spec.kind}",
    ),
    _ipd_family(
        "khe_shrinkage",
        ShrinkageSpec,
        lambda s, d: build_shrinkage_model(d, s.priors),
        "shrinkage_combination",
    ),
    _ipd_family(
        "khe_contrasts",
        ContrastSpec,
        lambda s, d: build_contrast_model(d, s.priors),
        "kmp_contrasts",
    ),
)


def _load_aggregate(spec: AggregateProportionSpec, spec_dir: Path):
    evidence = load_evidence(spec_dir / spec.evidence if spec.evidence else None)
    return [outcome_data(evidence, o) for o in spec.outcome]


AGGREGATE = Family(
    name="aggregate_proportion",
    spec=AggregateProportionSpec,
    load_data=_load_aggregate,
    build=lambda spec, data: build_proportion_model(data, spec.priors),
    summary_vars=lambda spec: ["rate"],
    descriptions={"rate": "Probability of the outcome"},
    data_files=lambda spec, spec_dir: [spec_dir / spec.evidence] if spec.evidence else [],
)
