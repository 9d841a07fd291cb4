"""Hierarchical models on individual-patient data (real or reconstructed).

Each module has a small builder that returns a ``pm.Model`` with named coords and dims and
non-centered center effects (``center_effect = center_sd * center_z``), and a priors object with
stated defaults. Building never samples.

Dims: ``center`` (treating hospital), ``patient``, ``visit`` (0m, 6m, 12m or 6m, 12m),
``kmp_status`` (non_kmp, kmp), ``obs`` (one row of long-format data).
"""

from khe_bayes.study.hierarchical.contrasts import ContrastPriors, build_contrast_model
from khe_bayes.study.hierarchical.response import (
    ResponsePriors,
    build_response_model,
    build_response_model_cells,
)
from khe_bayes.study.hierarchical.severity import SeverityPriors, build_severity_model
from khe_bayes.study.hierarchical.shrinkage import ShrinkagePriors, build_shrinkage_model

__all__ = [
    "ContrastPriors",
    "ResponsePriors",
    "SeverityPriors",
    "ShrinkagePriors",
    "build_contrast_model",
    "build_response_model",
    "build_response_model_cells",
    "build_severity_model",
    "build_shrinkage_model",
]
