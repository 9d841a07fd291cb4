"""Generic grouped-data families for methodologists: ``binomial`` and ``normal``.

binomial: CSV columns ``group``, ``n``, ``events``, optional ``arm`` (two levels; the spec names
the reference) and other numeric covariate columns. For row r in group g::

    logit p_r = theta[g] + arm_effect * [arm_r != reference] + x_r . beta     (x centered)
    theta = mu + tau * z,  z ~ Normal(0, 1)                                   (non-centered)

Parameters: ``mu`` (population mean, logit scale), ``tau`` (between-group SD), ``theta`` and
``p`` = invlogit(theta) (dim ``group``, reference arm, covariates at their mean), ``p_mean`` =
invlogit(mu). With an arm column: ``arm_effect`` (log odds ratio), ``odds_ratio`` =
exp(arm_effect) and ``risk_difference`` = invlogit(mu + arm_effect) - invlogit(mu), the risk
difference between arms *at the mean group effect* (a conditional, not a population-averaged,
contrast). With one group (one trial) there is no between-group effect: theta = mu, no tau, and
``risk_difference`` is at the trial's own baseline (a SpecWarning says so). For other contrasts
(population-averaged, at a group's own effect, at stated covariate values, uncentred
covariates, interactions, priors per term) write a formula: families ``binomial_glmm`` and
``normal_glmm`` (families/glmm.py).

normal: CSV columns ``group``, ``estimate``, ``se`` (the random-effects meta-analysis / eight
schools shape)::

    estimate_g ~ Normal(theta[g], se_g),  theta = mu + tau * z  (non-centered)

Between-group spread: a prior on the SD (``tau``) or, as in BUGS, a prior on the variance
(``tau_variance``; then tau = sqrt(tau_variance)) or on the precision (``tau_precision``, e.g.
BUGS's Gamma(0.001, 0.001); then tau = 1 / sqrt(tau_precision)); at most one. A ``tau`` prior
that looks like a precision prior (Gamma with shape and rate <= 0.01) gives a SpecWarning. Defaults:
``mu ~ Normal(0, 2.5)`` (binomial, logit scale) or ``Normal(0, 100)`` (normal family: set a
scale-appropriate prior for your data), ``tau ~ HalfNormal(1)`` (binomial) or
``HalfCauchy(25)`` (normal), ``arm_effect ~ Normal(0, 1.5)``, ``beta ~ Normal(0, 1)``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pymc as pm
from pydantic import BaseModel, ConfigDict, model_validator

from khe_bayes.families.base import Family, SpecBase, SpecWarning
from khe_bayes.toolkit.errors import InputError, check_input_path, control_character
from khe_bayes.toolkit.priors import Prior, looks_like_precision_prior, precision_warning, prior


class SpreadPriors(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mu: Prior | None = None
    tau: Prior | None = None
    tau_variance: Prior | None = None
    tau_precision: Prior | None = None
    arm_effect: Prior = prior("Normal", mu=0.0, sigma=1.5)
    beta: Prior = prior("Normal", mu=0.0, sigma=1.0)

    @model_validator(mode="after")
    def _one_spread(self):
        check_spread(self, SPREAD_KEYS)
        return self


SPREAD_KEYS = ("tau", "tau_variance", "tau_precision")


def check_spread(priors, keys: tuple[str, ...]) -> None:
    """At most one way of giving the between-group spread, each on positive values."""
    given = [k for k in keys if getattr(priors, k) is not None]
    if len(given) > 1:
        raise ValueError(f"give one of {', '.join(keys)}; not both {' and '.join(given)}")
    for name in keys:
        p = getattr(priors, name)
        if isinstance(p, Prior) and p.support != "positive":
            raise ValueError(f"the {name} prior must be on positive values")


def spread_warnings(priors) -> list[str]:
    """BUGS users' vague precision prior given as a prior on the SD (see priors.py)."""
    tau = getattr(priors, "tau", None)
    return [precision_warning("tau")] if tau is not None and looks_like_precision_prior(tau) else []


class BinomialSpec(SpecBase):
    family: Literal["binomial"]
    data: str
    reference_arm: str | None = None
    priors: SpreadPriors = SpreadPriors()


class NormalSpec(SpecBase):
    family: Literal["normal"]
    data: str
    priors: SpreadPriors = SpreadPriors()


def _read_csv(path: Path) -> pd.DataFrame:
    check_input_path(path)  # a symlink loop or a permission problem, in those words
    if not path.exists():
        raise InputError("data file not found", file=path)
    if not path.is_file():
        raise InputError("is a directory (or not a regular file), not a CSV file", file=path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", file=path) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"not a valid CSV ({str(exc).strip()})", file=path) from None
    if frame.empty:
        raise InputError("no data rows", file=path)
    return frame


def _numbers(frame, column, path, *, integer=False, minimum=None, strict_min=False):
    out = []
    for i, text in enumerate(frame[column]):
        try:
            value = float(text)
        except ValueError:
            raise InputError(
                f"{text!r} is not a number", file=path, row=i + 2, column=column
            ) from None
        if not np.isfinite(value) or (integer and value != int(value)):
            kind = "an integer" if integer else "a finite number"
            raise InputError(f"{text!r} is not {kind}", file=path, row=i + 2, column=column)
        if minimum is not None and (value <= minimum if strict_min else value < minimum):
            rel = ">" if strict_min else ">="
            raise InputError(
                f"{text} must be {rel} {minimum:g}", file=path, row=i + 2, column=column
            )
        out.append(value)
    return np.array(out)


def _require(frame, columns, path):
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"missing column(s) {missing}", file=path, row=1, column=missing[0])
    for i, g in enumerate(frame["group"]):
        if not str(g).strip():
            raise InputError("empty group label", file=path, row=i + 2, column="group")
        bad = control_character(str(g))
        if bad:
            raise InputError(
                f"control character {bad} in group label {g!r}",
                file=path,
                row=i + 2,
                column="group",
            )


def load_binomial(spec: BinomialSpec, spec_dir: Path) -> pd.DataFrame:
    path = spec_dir / spec.data
    frame = _read_csv(path)
    _require(frame, ["group", "n", "events"], path)
    out = pd.DataFrame({"group": frame["group"].str.strip()})
    out["n"] = _numbers(frame, "n", path, integer=True, minimum=1).astype(int)
    out["events"] = _numbers(frame, "events", path, integer=True, minimum=0).astype(int)
    over = np.flatnonzero(out["events"] > out["n"])
    if over.size:
        raise InputError("events exceed n", file=path, row=int(over[0]) + 2, column="events")
    if "arm" in frame.columns:
        arms = sorted(frame["arm"].str.strip().unique())
        if len(arms) != 2:
            raise InputError(
                f"arm must have exactly 2 levels, found {arms}", file=path, column="arm"
            )
        if spec.reference_arm not in arms:
            raise InputError(
                f"reference_arm {spec.reference_arm!r} is not one of {arms}",
                file=path,
                column="arm",
            )
        out["treated"] = (frame["arm"].str.strip() != spec.reference_arm).astype(float)
    covariates = [c for c in frame.columns if c not in ("group", "n", "events", "arm")]
    for c in covariates:
        out[c] = _numbers(frame, c, path)
    out.attrs["covariates"] = covariates
    return out


def load_normal(spec: NormalSpec, spec_dir: Path) -> pd.DataFrame:
    path = spec_dir / spec.data
    frame = _read_csv(path)
    _require(frame, ["group", "estimate", "se"], path)
    extra = [c for c in frame.columns if c not in ("group", "estimate", "se")]
    if extra:
        raise InputError(f"unknown column(s) {extra}", file=path, row=1, column=extra[0])
    dup = frame["group"].duplicated()
    if dup.any():
        raise InputError(
            "duplicate group", file=path, row=int(np.flatnonzero(dup)[0]) + 2, column="group"
        )
    return pd.DataFrame(
        {
            "group": frame["group"].str.strip(),
            "estimate": _numbers(frame, "estimate", path),
            "se": _numbers(frame, "se", path, minimum=0, strict_min=True),
        }
    )


def spread(priors, default_tau: Prior):
    """The between-group SD ``tau``: from a prior on tau itself, on the variance tau^2
    (``tau_variance``, inverse-gamma in BUGS-era analyses) or on the precision 1 / tau^2
    (``tau_precision``, BUGS's ``dgamma(0.001, 0.001)``). Warns (SpecWarning) when a tau prior
    looks like a precision prior."""
    for message in spread_warnings(priors):
        warnings.warn(message, SpecWarning, stacklevel=2)
    if priors.tau_variance is not None:
        variance = priors.tau_variance.create("tau_variance")
        return pm.Deterministic("tau", pm.math.sqrt(variance))
    if priors.tau_precision is not None:
        precision = priors.tau_precision.create("tau_precision")
        return pm.Deterministic("tau", 1.0 / pm.math.sqrt(precision))
    return (priors.tau or default_tau).create("tau")


ONE_GROUP = (
    "the data have one group: fitted without a between-group effect (no tau; theta = mu is the "
    "group's own log-odds or effect), so every contrast is at the group's own baseline"
)


def _group_effects(priors, mu, n_groups: int, default_tau: Prior):
    """theta = mu + tau * z (non-centered); with one group tau is not identified by the data
    and a contrast 'at mu' would be at an unidentified baseline, so one group has theta = mu
    and no tau (SpecWarning says so)."""
    if n_groups == 1:
        warnings.warn(ONE_GROUP, SpecWarning, stacklevel=3)
        for key in SPREAD_KEYS:
            if getattr(priors, key) is not None:
                warnings.warn(f"priors.{key} is unused (one group)", SpecWarning, stacklevel=3)
        return pm.Deterministic("theta", mu[None], dims="group")
    tau = spread(priors, default_tau)
    z = pm.Normal("z", 0.0, 1.0, dims="group")
    return pm.Deterministic("theta", mu + tau * z, dims="group")


def build_binomial(spec: BinomialSpec, data: pd.DataFrame) -> pm.Model:
    groups = list(dict.fromkeys(data["group"]))
    g = pd.Categorical(data["group"], categories=groups).codes
    covariates = data.attrs.get("covariates", [])
    coords = {"group": groups, "row": np.arange(len(data))}
    if covariates:
        coords["covariate"] = covariates
    with pm.Model(coords=coords) as model:
        mu = (spec.priors.mu or prior("Normal", mu=0.0, sigma=2.5)).create("mu")
        theta = _group_effects(spec.priors, mu, len(groups), prior("HalfNormal", sigma=1.0))
        eta = theta[pm.Data("row_group", g, dims="row")]
        if "treated" in data:
            arm_effect = spec.priors.arm_effect.create("arm_effect")
            eta = eta + arm_effect * pm.Data("treated", data["treated"].to_numpy(float), dims="row")
            pm.Deterministic("odds_ratio", pm.math.exp(arm_effect))
            pm.Deterministic(
                "risk_difference", pm.math.invlogit(mu + arm_effect) - pm.math.invlogit(mu)
            )
        if covariates:
            x = data[covariates].to_numpy(float)
            beta = spec.priors.beta.create("beta", dims="covariate")
            eta = eta + pm.math.dot(
                pm.Data("covariates_centered", x - x.mean(axis=0), dims=("row", "covariate")), beta
            )
        pm.Binomial(
            "events",
            n=pm.Data("n", data["n"].to_numpy(), dims="row"),
            logit_p=eta,
            observed=pm.Data("events_observed", data["events"].to_numpy(), dims="row"),
            dims="row",
        )
        pm.Deterministic("p", pm.math.invlogit(theta), dims="group")
        pm.Deterministic("p_mean", pm.math.invlogit(mu))
    return model


def build_normal(spec: NormalSpec, data: pd.DataFrame) -> pm.Model:
    groups = list(data["group"])
    with pm.Model(coords={"group": groups}) as model:
        mu = (spec.priors.mu or prior("Normal", mu=0.0, sigma=100.0)).create("mu")
        theta = _group_effects(spec.priors, mu, len(groups), prior("HalfCauchy", beta=25.0))
        pm.Normal(
            "estimate",
            theta,
            pm.Data("se", data["se"].to_numpy(float), dims="group"),
            observed=pm.Data("estimate_observed", data["estimate"].to_numpy(float), dims="group"),
            dims="group",
        )
    return model


def _binomial_vars(spec: BinomialSpec) -> list[str]:
    return [
        "mu",
        "tau",
        "theta",
        "p",
        "p_mean",
        "arm_effect",
        "odds_ratio",
        "risk_difference",
        "beta",
    ]


BINOMIAL = Family(
    name="binomial",
    spec=BinomialSpec,
    load_data=load_binomial,
    build=build_binomial,
    summary_vars=_binomial_vars,
    descriptions={
        "mu": "Population mean log-odds",
        "tau": "Between-group SD of the log-odds",
        "theta": "Group log-odds (reference arm)",
        "p": "Group probability (reference arm)",
        "p_mean": "Probability at the population mean",
        "arm_effect": "Log odds ratio, other arm vs reference",
        "odds_ratio": "Odds ratio, other arm vs reference",
        "risk_difference": "Risk difference between arms at the mean group effect",
        "beta": "Covariate effect on the log-odds (per unit, centered)",
    },
    data_files=lambda spec, spec_dir: [spec_dir / spec.data],
    scales=lambda spec: {"p": "fraction", "p_mean": "fraction", "risk_difference": "fraction"},
)

NORMAL = Family(
    name="normal",
    spec=NormalSpec,
    load_data=load_normal,
    build=build_normal,
    summary_vars=lambda spec: ["mu", "tau", "theta"],
    descriptions={
        "mu": "Population mean effect",
        "tau": "Between-group SD of the effects",
        "theta": "Group effect (partially pooled)",
    },
    data_files=lambda spec, spec_dir: [spec_dir / spec.data],
)
