"""Families with a model formula: ``binomial_glmm`` and ``normal_glmm``.

A spec gives ``formula`` in brms / bambi / lme4 notation (read by ``formulae``; see
families/formula.py), e.g.::

    family = "binomial_glmm"
    formula = "p(events, n) ~ arm + x1 * x2 + (1 | group)"

    family = "normal_glmm"                      # meta-regression, known standard errors
    formula = "estimate | se(se) ~ year + (1 | group)"

Model, for row r in group g(r) (non-centered random intercept)::

    eta_r = X_r . b + u[g(r)],   u = tau * z,  z ~ Normal(0, 1)
    binomial: events_r ~ Binomial(n_r, invlogit(eta_r));  normal: estimate_r ~ Normal(eta_r, se_r)

``X`` is formulae's common-effects design matrix, covariates **as written** (write
``center(x)`` to centre; nothing is centred implicitly). ``b`` (dim ``coef``, formulae's
column labels such as ``Intercept``, ``arm[treated]``, ``x1:x2``) is made of one free variable
per term, ``b_<term>``, each with its own prior. Without a ``(1 | group)`` term, or with one
group in the data, there is no random effect (one group: a SpecWarning says the term was
dropped, so the model is one trial's regression).

Priors (``[priors]``), defaults stated (binomial on the log-odds scale; normal on the data's
own scale, so set scale-appropriate ones): ``intercept`` Normal(0, 2.5) / Normal(0, 100);
``coefficients`` (every other term not listed in ``[priors.terms]``) Normal(0, 1.5) /
Normal(0, 100); ``[priors.terms]`` term name -> prior (names as formulae writes them: ``arm``,
``x1:x2``, ``center(x1)``); between-group SD: one of ``tau`` (default HalfNormal(1) /
HalfCauchy(25)), ``tau_variance``, ``tau_precision`` (BUGS) or ``tau_fixed = value``. ``Flat``
priors are allowed (improper; then the posterior mean and intervals reproduce likelihood
results, and SBC cannot draw from the prior).

Reported quantities (``[[quantities]]``): each is a scalar Deterministic named ``name``::

    [[quantities]]
    name = "rd"
    measure = "risk_difference"         # see MEASURES; contrasts are `to` minus (or over) `from`
    effect = "population_averaged"      # or "conditional" (at u = 0, i.e. at mu; or with
    compare = { arm = ["control", "treated"] }   #   `group = "label"`, at that group's own u)
    at = { x1 = 0.5, x2 = 1.0 }         # every other covariate of the formula, on its own scale

Population-averaged probabilities integrate invlogit(eta + u) over u ~ Normal(0, tau) (40-node
Gauss-Hermite quadrature); contrasts are then between these averaged probabilities (the
marginal risk difference, risk ratio and odds ratio). On the normal family's identity scale
conditional-at-mu and population-averaged coincide. A quantity the design does not identify
is an error: a ``group`` not in the data, a population average without a between-group
distribution, a covariate value missing or a level the data lack, a coefficient whose column
is collinear with others; a numeric value outside the data's range is a warning.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from khe_bayes.families.base import Family, SpecBase, SpecWarning
from khe_bayes.families.formula import FormulaError, make_design, split_formula
from khe_bayes.families.grouped import _numbers, _read_csv, check_spread, spread
from khe_bayes.families.quantities import (
    CONTRAST_MEASURES,
    FRACTION_MEASURES,
    MEASURES,
    FormulaData,
    QuantitySpec,
    add_quantity,
    quantity_rows,
)
from khe_bayes.toolkit.errors import InputError
from khe_bayes.toolkit.priors import Prior, prior

DEFAULTS = {
    "binomial": {
        "intercept": prior("Normal", mu=0.0, sigma=2.5),
        "coefficients": prior("Normal", mu=0.0, sigma=1.5),
        "tau": prior("HalfNormal", sigma=1.0),
    },
    "normal": {
        "intercept": prior("Normal", mu=0.0, sigma=100.0),
        "coefficients": prior("Normal", mu=0.0, sigma=100.0),
        "tau": prior("HalfCauchy", beta=25.0),
    },
}
TAU_KEYS = ("tau", "tau_variance", "tau_precision", "tau_fixed")
RESERVED = {"b", "u", "z", "X", "n", "se", "row_group", "events", "estimate", *TAU_KEYS}


class FormulaPriors(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    intercept: Prior | None = None
    coefficients: Prior | None = None
    terms: dict[str, Prior] = Field(default_factory=dict)
    tau: Prior | None = None
    tau_variance: Prior | None = None
    tau_precision: Prior | None = None
    tau_fixed: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_spread(self):
        check_spread(self, TAU_KEYS)
        return self


class GlmmSpec(SpecBase):
    formula: str
    data: str
    levels: dict[str, list[str]] = Field(
        default_factory=dict, description="categorical column -> its levels, reference first"
    )
    priors: FormulaPriors = FormulaPriors()
    quantities: list[QuantitySpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self):
        split_formula(self.formula, self.likelihood)  # FormulaError is a ValueError
        known = MEASURES[self.likelihood]
        names = [q.name for q in self.quantities]
        for q in self.quantities:
            if q.measure not in known:
                raise ValueError(f"quantity {q.name!r}: measure {q.measure!r} not in {known}")
            contrast = q.measure in CONTRAST_MEASURES[self.likelihood]
            if contrast != (q.compare is not None):
                need = "needs" if contrast else "takes no"
                raise ValueError(f"quantity {q.name!r}: measure {q.measure!r} {need} 'compare'")
        if len(set(names)) != len(names):
            raise ValueError("quantity names must be unique")
        taken = [n for n in names if n in RESERVED or n.startswith(("b_", "X_", "group_"))]
        if taken:
            raise ValueError(f"quantity name {taken[0]!r} is taken by the model; choose another")
        return self

    @property
    def likelihood(self) -> str:
        return "binomial" if self.family == "binomial_glmm" else "normal"


class BinomialGlmmSpec(GlmmSpec):
    family: Literal["binomial_glmm"]


class NormalGlmmSpec(GlmmSpec):
    family: Literal["normal_glmm"]


def _type_columns(frame: pd.DataFrame, spec: GlmmSpec, path: Path) -> pd.DataFrame:
    response, _ = split_formula(spec.formula, spec.likelihood)
    out = pd.DataFrame(index=frame.index)
    for column in (response.outcome, response.size):
        if column not in frame.columns:
            raise InputError("missing column (named in the formula)", file=path, column=column)
    for c in frame.columns:
        text = frame[c].str.strip()
        if c == response.outcome:
            binomial = response.kind == "binomial"
            out[c] = _numbers(frame, c, path, integer=binomial, minimum=0 if binomial else None)
            continue
        if c == response.size:
            out[c] = _numbers(
                frame, c, path, integer=response.kind == "binomial", minimum=0, strict_min=True
            )
            continue
        numeric = pd.to_numeric(text, errors="coerce")
        if c in spec.levels or numeric.isna().any():
            levels = spec.levels.get(c) or sorted(text.unique())
            bad = ~text.isin(levels) | (text == "")
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise InputError(
                    f"{text.iloc[i]!r} is not one of the levels {levels}",
                    file=path,
                    row=i + 2,
                    column=c,
                )
            out[c] = pd.Categorical(text, categories=levels, ordered=True)
        else:
            out[c] = numeric.astype(float)
    if response.kind == "binomial":
        over = np.flatnonzero(out[response.outcome] > out[response.size])
        if over.size:
            raise InputError(
                f"{response.outcome} exceeds {response.size}",
                file=path,
                row=int(over[0]) + 2,
                column=response.outcome,
            )
    return out


def load_glmm(spec: GlmmSpec, spec_dir: Path) -> FormulaData:
    path = spec_dir / spec.data
    frame = _type_columns(_read_csv(path), spec, path)
    for c in spec.levels:
        if c not in frame.columns:
            raise InputError("levels names a column the data lack", key=f"levels.{c}")
    try:
        design = make_design(spec.formula, spec.likelihood, frame)
    except FormulaError as exc:
        raise InputError(str(exc), key="formula") from None
    unknown = set(spec.priors.terms) - set(design.terms)
    if unknown:
        raise InputError(
            f"priors for term(s) {sorted(unknown)} not in the formula; terms: {list(design.terms)}",
            key="priors.terms",
        )
    if design.dropped_random_effect:
        warnings.warn(
            f"the data have one {design.group_factor} ({design.groups[0]!r}): (1 | "
            f"{design.group_factor}) is dropped and the model is a regression of that one "
            "group; conditional quantities are at its own baseline",
            SpecWarning,
            stacklevel=2,
        )
    spread_given = [k for k in TAU_KEYS if getattr(spec.priors, k) is not None]
    if spread_given and (design.group_factor is None or design.dropped_random_effect):
        warnings.warn(
            f"priors.{spread_given[0]} is unused: the model has no random effect",
            SpecWarning,
            stacklevel=2,
        )
    data = FormulaData(frame, design)
    quantity_rows(spec, data)
    return data


def _safe(term: str) -> str:
    return re.sub(r"\W+", "_", term).strip("_") or "term"


def _tau(spec: GlmmSpec):
    if spec.priors.tau_fixed is not None:
        return pt.constant(spec.priors.tau_fixed, name="tau_fixed", dtype="float64")
    return spread(spec.priors, DEFAULTS[spec.likelihood]["tau"])


def build_glmm(spec: GlmmSpec, data: FormulaData) -> pm.Model:
    """The model of the module docstring. Never samples."""
    design, kind = data.design, spec.likelihood
    has_re = design.group_factor is not None and not design.dropped_random_effect
    coords = {"coef": design.coef_labels, "row": np.arange(len(design.X))}
    if has_re:
        coords["group"] = design.groups
    defaults = DEFAULTS[kind]
    with pm.Model(coords=coords) as model:
        parts, used = [], set()
        for term, cols in design.terms.items():
            name = f"b_{_safe(term)}"
            if name in used:
                name = f"{name}_{len(used)}"
            used.add(name)
            if term in spec.priors.terms:
                p = spec.priors.terms[term]
            elif term == "Intercept":
                p = spec.priors.intercept or defaults["intercept"]
            else:
                p = spec.priors.coefficients or defaults["coefficients"]
            width = cols.stop - cols.start
            if width == 1:
                parts.append(pt.atleast_1d(p.create(name)))
            else:
                model.add_coord(f"coef_{_safe(term)}", design.coef_labels[cols])
                parts.append(p.create(name, dims=f"coef_{_safe(term)}"))
        b = pm.Deterministic("b", pt.concatenate(parts), dims="coef")
        eta = pt.dot(pm.Data("X", design.X, dims=("row", "coef")), b)
        tau = None
        if has_re:
            tau = _tau(spec)
            if spec.priors.tau_fixed is not None:
                tau = pm.Deterministic("tau", tau)
            z = pm.Normal("z", 0.0, 1.0, dims="group")
            u = pm.Deterministic("u", tau * z, dims="group")
            eta = eta + u[pm.Data("row_group", design.group_index, dims="row")]
        r = design.response
        y = data.frame[r.outcome].to_numpy()
        if kind == "binomial":
            pm.Binomial(
                "events",
                n=pm.Data("n", data.frame[r.size].to_numpy().astype(np.int64), dims="row"),
                logit_p=eta,
                observed=pm.Data("events_observed", y.astype(np.int64), dims="row"),
                dims="row",
            )
        else:
            pm.Normal(
                "estimate",
                eta,
                pm.Data("se", data.frame[r.size].to_numpy(float), dims="row"),
                observed=pm.Data("estimate_observed", y.astype(float), dims="row"),
                dims="row",
            )
        for q in spec.quantities:
            add_quantity(q, kind, data, b, tau, u if has_re else None)
    return model


def describe_glmm(spec: GlmmSpec) -> dict[str, str]:
    out = {
        "b": "Coefficient of the formula's common term (per unit of the covariate as written)",
        "tau": "Between-group SD of the random intercept",
        "u": "Group's own deviation from the common intercept",
    }
    for q in spec.quantities:
        if q.description:
            out[q.name] = q.description
            continue
        where = ", ".join(f"{k}={v}" for k, v in q.at.items()) or "no covariates"
        what = q.measure.replace("_", " ")
        if q.compare:
            var, (a, c) = next(iter(q.compare.items()))
            what += f" {var} {c} vs {a}"
        effect = (
            "averaged over the between-group distribution"
            if q.effect == "population_averaged"
            else f"at group {q.group}'s own effect"
            if q.group
            else "at the mean group effect (u = 0)"
        )
        out[q.name] = f"{what}, {effect}, at {where}"
    return out


def _summary_vars(spec: GlmmSpec) -> list[str]:
    return ["b", "tau", "u", *(q.name for q in spec.quantities)]


def _scales(spec: GlmmSpec) -> dict[str, str]:
    return {q.name: "fraction" for q in spec.quantities if q.measure in FRACTION_MEASURES}


def _family(name: str, cls: type[GlmmSpec]) -> Family:
    return Family(
        name=name,
        spec=cls,
        load_data=load_glmm,
        build=build_glmm,
        summary_vars=_summary_vars,
        describe=describe_glmm,
        data_files=lambda spec, spec_dir: [spec_dir / spec.data],
        scales=_scales,
    )


BINOMIAL_GLMM = _family("binomial_glmm", BinomialGlmmSpec)
NORMAL_GLMM = _family("normal_glmm", NormalGlmmSpec)
