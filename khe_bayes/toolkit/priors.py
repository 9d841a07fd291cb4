"""Priors as data: a PyMC distribution name plus its parameters, checked against a registry.

A prior is written in a spec as ``{ dist = "HalfCauchy", beta = 5 }``. Only distributions in
:data:`PRIOR_REGISTRY` are allowed, and only with the parameter names PyMC uses for them, so a
typo is an error at load time rather than a silent default.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import pymc as pm
from pydantic import BaseModel, ConfigDict, model_validator

# name -> (PyMC class, required parameters, optional parameters, support)
PRIOR_REGISTRY: dict[str, tuple[type, frozenset[str], frozenset[str], str]] = {
    "Normal": (pm.Normal, frozenset({"mu", "sigma"}), frozenset(), "real"),
    "Flat": (pm.Flat, frozenset(), frozenset(), "real"),  # improper; no prior draws (no SBC)
    "StudentT": (pm.StudentT, frozenset({"nu", "mu", "sigma"}), frozenset(), "real"),
    "Cauchy": (pm.Cauchy, frozenset({"alpha", "beta"}), frozenset(), "real"),
    "Logistic": (pm.Logistic, frozenset({"mu", "s"}), frozenset(), "real"),
    "Uniform": (pm.Uniform, frozenset({"lower", "upper"}), frozenset(), "interval"),
    "Beta": (pm.Beta, frozenset({"alpha", "beta"}), frozenset(), "unit"),
    "HalfNormal": (pm.HalfNormal, frozenset({"sigma"}), frozenset(), "positive"),
    "HalfCauchy": (pm.HalfCauchy, frozenset({"beta"}), frozenset(), "positive"),
    "HalfStudentT": (pm.HalfStudentT, frozenset({"nu", "sigma"}), frozenset(), "positive"),
    "Exponential": (pm.Exponential, frozenset({"lam"}), frozenset(), "positive"),
    "Gamma": (pm.Gamma, frozenset({"alpha", "beta"}), frozenset(), "positive"),
    "InverseGamma": (pm.InverseGamma, frozenset({"alpha", "beta"}), frozenset(), "positive"),
    "LogNormal": (pm.LogNormal, frozenset({"mu", "sigma"}), frozenset(), "positive"),
}

# A prior parameter beyond this is a typo or overflow bait (sigma = 1e308 overflows sigma**2).
MAX_PARAMETER = 1e6

_POSITIVE_PARAMS = {"sigma", "beta", "alpha", "nu", "lam", "s"}


class Prior(BaseModel):
    """A prior distribution: ``dist`` names a PyMC distribution, other keys are its parameters."""

    model_config = ConfigDict(extra="allow", frozen=True)

    dist: str

    @model_validator(mode="after")
    def _check(self):
        if self.dist not in PRIOR_REGISTRY:
            allowed = ", ".join(sorted(PRIOR_REGISTRY))
            raise ValueError(f"unknown prior distribution {self.dist!r}; allowed: {allowed}")
        _, required, optional, _ = PRIOR_REGISTRY[self.dist]
        given = set(self.params)
        missing = required - given
        unknown = given - required - optional
        if unknown:
            raise ValueError(
                f"{self.dist} prior has unknown parameter(s) {sorted(unknown)}; "
                f"it takes {sorted(required | optional)}"
            )
        if missing:
            raise ValueError(f"{self.dist} prior needs parameter(s) {sorted(missing)}")
        for key, value in self.params.items():
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError(f"{self.dist} parameter {key} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{self.dist} parameter {key} must be finite, got {value}")
            if abs(value) > MAX_PARAMETER:
                raise ValueError(
                    f"{self.dist} parameter {key} = {value:g} is absurd (magnitude above "
                    f"{MAX_PARAMETER:g}: it overflows in the log density); rescale the data"
                )
            positive = key in _POSITIVE_PARAMS and not (self.dist == "Cauchy" and key == "alpha")
            if positive and value <= 0:
                raise ValueError(f"{self.dist} parameter {key} must be > 0, got {value}")
        if self.dist == "Uniform" and self.params["lower"] >= self.params["upper"]:
            raise ValueError("Uniform prior needs lower < upper")
        return self

    @property
    def params(self) -> dict[str, float]:
        return dict(self.model_extra or {})

    @property
    def support(self) -> str:
        return PRIOR_REGISTRY[self.dist][3]

    def create(self, name: str, **kwargs: Any):
        """Add this prior as a random variable ``name`` to the model on the context stack
        (inside :func:`priors_as_data`, with its parameters in ``pm.Data`` containers)."""
        cls = PRIOR_REGISTRY[self.dist][0]
        params: dict[str, Any] = self.params
        if _PRIORS_AS_DATA.get():
            params = {k: pm.Data(f"{name}__prior_{k}", float(v)) for k, v in params.items()}
        return cls(name, **params, **kwargs)

    def dist_obj(self, **kwargs: Any):
        """An unnamed PyMC distribution (for prior draws outside a model)."""
        cls = PRIOR_REGISTRY[self.dist][0]
        return cls.dist(**self.params, **kwargs)

    def label(self) -> str:
        args = ", ".join(f"{k}={v:g}" for k, v in self.params.items())
        return f"{self.dist}({args})"


_PRIORS_AS_DATA: ContextVar[bool] = ContextVar("priors_as_data", default=False)


@contextmanager
def priors_as_data() -> Iterator[None]:
    """Models built inside this block hold every prior parameter in a ``pm.Data`` container
    (``{name}__prior_{parameter}``, e.g. ``kmp_effect__prior_sigma``) instead of a constant.
    The density is the same; what changes is that models differing only in their priors'
    values (same families) then have one compiled structure (compiled.py), so a prior grid
    compiles once per model instead of once per cell, each cell swapping its values in."""
    token = _PRIORS_AS_DATA.set(True)
    try:
        yield
    finally:
        _PRIORS_AS_DATA.reset(token)


# BUGS convention: a precision 1 / tau^2 with a vague Gamma(eps, eps) prior, eps this small or less
PRECISION_LIKE_MAX = 0.01


def looks_like_precision_prior(p: Prior) -> bool:
    """A Gamma prior with tiny shape and rate (BUGS's ``dgamma(0.001, 0.001)``) is the usual
    vague prior on a *precision*; given for an SD it puts almost all its mass near 0 and far
    out, which is rarely what was meant."""
    return p.dist == "Gamma" and max(p.params["alpha"], p.params["beta"]) <= PRECISION_LIKE_MAX


def precision_warning(key: str) -> str:
    return (
        f"the {key} prior is Gamma with tiny shape and rate, the BUGS prior on a precision; "
        f"it is used here as a prior on the SD {key}. If you meant the precision 1/{key}^2, "
        f"write it as {key}_precision"
    )


def prior(dist: str, **params: float) -> Prior:
    """Shorthand: ``prior("Normal", mu=0, sigma=1.5)``."""
    return Prior(dist=dist, **params)
