"""Model formulas in specs, in brms / bambi / lme4 notation, read by the ``formulae`` library.

Left-hand sides (the response part is the only notation handled here; the right-hand side is
``formulae``'s own):

- binomial: ``p(events, n)`` (bambi/formulae; also ``prop(...)``, ``proportion(...)``) or
  ``events | trials(n)`` (brms);
- normal with known standard errors (meta-analysis / meta-regression): ``estimate | se(se)``
  (brms).

Right-hand side: any common-effects terms formulae accepts (``arm + x1 * x2``, ``C(arm)``,
``center(x)``, ``scale(x)``, ``I(x**2)``, ``0 +`` ...) and at most one random intercept
``(1 | group)``. Covariates enter **as written**: nothing is centred unless the formula says
``center(x)`` (or ``scale(x)``); reported quantities are computed at values stated on the
covariates' own scale, so centring changes the meaning of the intercept only, never of a
reported quantity. Categorical columns: the first level (sorted, or as listed in the spec's
``levels``) is the reference.

This module turns a formula and a data frame into a :class:`Design` (arrays only, no PyMC);
``families/glmm.py`` builds the model from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from formulae import design_matrices

_BINOMIAL_LHS = re.compile(r"^(?:p|prop|proportion)\(\s*(\w+)\s*,\s*(\w+)\s*\)$")
_TRIALS_LHS = re.compile(r"^(\w+)\s*\|\s*trials\(\s*(\w+)\s*\)$")
_SE_LHS = re.compile(r"^(\w+)\s*\|\s*se\(\s*(\w+)\s*\)$")


class FormulaError(ValueError):
    """A formula that cannot be used (the caller adds file and key)."""


@dataclass(frozen=True)
class Response:
    kind: str  # "binomial" | "normal"
    outcome: str  # events column, or estimate column
    size: str  # trials column, or se column


def split_formula(formula: str, likelihood: str) -> tuple[Response, str]:
    """The response columns and the right-hand side (for formulae) of ``formula``."""
    if formula.count("~") != 1:
        raise FormulaError(f"a formula needs exactly one '~', got {formula!r}")
    lhs, rhs = (s.strip() for s in formula.split("~"))
    if not rhs:
        raise FormulaError("the formula has no right-hand side (write '~ 1' for intercept only)")
    if likelihood == "binomial":
        m = _BINOMIAL_LHS.match(lhs) or _TRIALS_LHS.match(lhs)
        if not m:
            raise FormulaError(
                f"binomial response must be 'p(events, n)' or 'events | trials(n)', got {lhs!r}"
            )
    else:
        m = _SE_LHS.match(lhs)
        if not m:
            raise FormulaError(
                f"normal response must be 'estimate | se(se)' (known standard errors), got {lhs!r}"
            )
    return Response(likelihood, m.group(1), m.group(2)), rhs


@dataclass
class Design:
    """Arrays of one formula on one data frame (everything dataset-dependent is here)."""

    response: Response
    rhs: str
    X: np.ndarray  # rows x coefficients
    coef_labels: list[str]
    terms: dict[str, slice]  # formulae term name -> columns of X
    variables: dict[str, str]  # variable of the common terms -> "numeric" | "categorical"
    levels: dict[str, list[str]]  # categorical variables -> levels, reference first
    group_factor: str | None
    groups: list[str]
    group_index: np.ndarray | None
    dropped_random_effect: bool = False
    _common: object = field(default=None, repr=False)

    def rows_at(self, values: list[dict]) -> np.ndarray:
        """Common-effects design rows for covariate values stated on their own scale (stateful
        transforms such as ``center`` keep the data's mean)."""
        frame = pd.DataFrame(values)
        for name, kind in self.variables.items():
            if kind == "categorical":
                frame[name] = pd.Categorical(
                    frame[name].astype(str), categories=self.levels[name], ordered=True
                )
            else:
                frame[name] = frame[name].astype(float)
        return np.asarray(self._common.evaluate_new_data(frame).design_matrix, dtype=float)


def _variables(term) -> list[str]:
    names: list[str] = []
    for component in getattr(term, "components", []):
        if hasattr(component, "var_names"):
            names.extend(sorted(component.var_names))
        else:
            names.append(component.name)
    return names


def make_design(formula: str, likelihood: str, frame: pd.DataFrame) -> Design:
    """Evaluate ``formula`` on ``frame`` (columns already typed: numbers as float, categories as
    ordered categoricals). Raises FormulaError for what the model cannot use."""
    response, rhs = split_formula(formula, likelihood)
    try:
        dm = design_matrices(f"{response.outcome} ~ {rhs}", frame, na_action="error")
    except Exception as exc:  # formulae raises several types; one line is enough
        raise FormulaError(f"formulae cannot use {formula!r}: {exc}".splitlines()[0]) from None
    common = dm.common
    if common is None:
        raise FormulaError("the formula has no common-effects terms (not even an intercept)")
    X = np.asarray(common.design_matrix, dtype=float)
    terms = {name: common.slices[name] for name in common.terms}
    variables: dict[str, str] = {}
    for name, term in common.terms.items():
        if name == "Intercept":
            continue
        for var in _variables(term):
            if var not in frame.columns:
                raise FormulaError(f"term {name!r} uses {var!r}, which is not a data column")
            kind = "categorical" if isinstance(frame[var].dtype, pd.CategoricalDtype) else "numeric"
            variables[var] = kind
    group_factor, groups, group_index = None, [], None
    if dm.group is not None:
        names = list(dm.group.terms)
        if len(names) != 1 or not names[0].startswith("1|"):
            raise FormulaError(f"only one random intercept '(1 | group)' is supported, got {names}")
        term = dm.group.terms[names[0]]
        factor = [c.name for c in term.factor.components]
        if len(factor) != 1:
            raise FormulaError(f"the grouping factor must be one column, got {factor}")
        group_factor = factor[0]
        groups = [str(g) for g in term.groups]
        labels = frame[group_factor].astype(str)
        group_index = pd.Categorical(labels, categories=groups).codes.astype(np.int64)
    design = Design(
        response=response,
        rhs=rhs,
        X=X,
        coef_labels=[label for t in common.terms.values() for label in t.labels],
        terms=terms,
        variables=variables,
        levels={
            v: [str(c) for c in frame[v].cat.categories]
            for v, k in variables.items()
            if k == "categorical"
        },
        group_factor=group_factor,
        groups=groups,
        group_index=group_index,
        _common=common,
    )
    if group_factor is not None and len(groups) == 1:
        design.dropped_random_effect = True
    _check_rank(design)
    return design


def _check_rank(design: Design) -> None:
    """Coefficients the data cannot identify (collinear columns, a covariate that does not
    vary) are an error, never a silent prior-only estimate."""
    X = design.X
    rank = np.linalg.matrix_rank(X)
    if rank == X.shape[1]:
        return
    # find the first column that adds nothing
    for j in range(1, X.shape[1] + 1):
        if np.linalg.matrix_rank(X[:, :j]) < j:
            raise FormulaError(
                f"coefficient {design.coef_labels[j - 1]!r} is not identified by the data "
                f"(its column is a combination of earlier ones; design rank {rank} < "
                f"{X.shape[1]} columns); drop the term or add data where it varies"
            )
