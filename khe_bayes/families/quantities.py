"""Reported quantities of formula specs (``[[quantities]]``): their spec, their design rows at
the stated covariate values, and the Deterministic each becomes. See families/glmm.py for the
definitions (conditional at u = 0 or at a group's own u; population-averaged by Gauss-Hermite
quadrature over u ~ Normal(0, tau))."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from khe_bayes.families.base import SpecWarning
from khe_bayes.families.formula import Design
from khe_bayes.toolkit.errors import InputError

LEVEL_MEASURES = {"binomial": ("probability", "log_odds"), "normal": ("mean",)}
CONTRAST_MEASURES = {
    "binomial": ("risk_difference", "risk_ratio", "odds_ratio", "log_odds_ratio"),
    "normal": ("difference",),
}
MEASURES = {k: LEVEL_MEASURES[k] + CONTRAST_MEASURES[k] for k in LEVEL_MEASURES}
FRACTION_MEASURES = ("probability", "risk_difference")
GH_NODES = 40


class QuantitySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    measure: str
    effect: Literal["conditional", "population_averaged"]
    group: str | None = None
    at: dict[str, float | str] = Field(default_factory=dict)
    compare: dict[str, list[float | str]] | None = None
    description: str = ""

    @model_validator(mode="after")
    def _shape(self):
        if self.group is not None and self.effect != "conditional":
            raise ValueError("group applies to effect = 'conditional' (at that group's own effect)")
        if self.compare is not None:
            if len(self.compare) != 1 or len(next(iter(self.compare.values()))) != 2:
                raise ValueError("compare takes one variable and two values: { arm = [from, to] }")
            if next(iter(self.compare)) in self.at:
                raise ValueError("the compared variable must not also be in 'at'")
        return self


@dataclass
class FormulaData:
    """The typed data frame, its design and each quantity's design rows (all dataset-dependent
    arrays of the model)."""

    frame: pd.DataFrame
    design: Design
    quantity_rows: dict[str, np.ndarray] = field(default_factory=dict)
    quantity_group: dict[str, int] = field(default_factory=dict)
    compare: dict[str, tuple] = field(default_factory=dict)  # name -> (column, [from, to], at)

    def standard_table(self, quantity: str | None = None) -> tuple[pd.DataFrame, np.ndarray]:
        """The columns the [[reported]] tests read (``events``, ``n`` and, when ``quantity``
        compares two levels of a categorical column, ``treated``; or ``estimate``, ``se``) and
        the mask of rows kept: rows at neither compared level, or at another level of a
        categorical column the quantity fixes in ``at``, are left out."""
        r = self.design.response
        names = ("events", "n") if r.kind == "binomial" else ("estimate", "se")
        table = pd.DataFrame({names[0]: self.frame[r.outcome], names[1]: self.frame[r.size]})
        keep = np.ones(len(table), bool)
        compare = self.compare.get(quantity)
        if compare is not None:
            var, (ref, other), fixed = compare
            column = self.frame[var].astype(str)
            keep = column.isin([str(ref), str(other)]).to_numpy().copy()
            for name, value in fixed.items():  # the quantity's categorical 'at' values
                keep &= (self.frame[name].astype(str) == str(value)).to_numpy()
            table["treated"] = (column == str(other)).astype(float)
        return table[keep].reset_index(drop=True), keep


def quantity_rows(spec, data: FormulaData) -> None:
    """Each quantity's design rows (and group index), checked against the design: what the
    design does not identify is an InputError naming the quantity's key."""
    design = data.design
    has_re = design.group_factor is not None and not design.dropped_random_effect
    for i, q in enumerate(spec.quantities):
        key = f"quantities[{i + 1}]"
        if q.effect == "population_averaged" and not has_re:
            why = "one group" if design.dropped_random_effect else "no (1 | group) term"
            raise InputError(
                f"{q.name}: a population average needs a between-group distribution; the design "
                f"has {why}, so use effect = 'conditional'",
                key=f"{key}.effect",
            )
        if q.group is not None:
            if design.group_factor is None:
                raise InputError(
                    f"{q.name}: group given but the formula has no (1 | group)", key=f"{key}.group"
                )
            if q.group not in design.groups:
                raise InputError(
                    f"{q.name}: {q.group!r} is not a group of the data; groups: {design.groups}",
                    key=f"{key}.group",
                )
            data.quantity_group[q.name] = design.groups.index(q.group)
        compared = next(iter(q.compare)) if q.compare else None
        needed = set(design.variables) - ({compared} if compared else set())
        missing, extra = needed - set(q.at), set(q.at) - set(design.variables)
        if missing or extra:
            what = (
                f"missing {sorted(missing)}" if missing else f"not in the formula {sorted(extra)}"
            )
            raise InputError(
                f"{q.name}: 'at' must give every covariate of the formula ({sorted(needed)}); "
                f"{what}",
                key=f"{key}.at",
            )
        if compared is not None and compared not in design.variables:
            raise InputError(
                f"{q.name}: {compared!r} is not a variable of the formula's common terms "
                f"({sorted(design.variables)})",
                key=f"{key}.compare",
            )
        values = dict(q.at)
        rows = (
            [values] if compared is None else [{**values, compared: v} for v in q.compare[compared]]
        )
        for var, kind in design.variables.items():
            for row in rows:
                v = row[var]
                if kind == "categorical" and str(v) not in design.levels[var]:
                    raise InputError(
                        f"{q.name}: {var} = {v!r} is not a level of the data {design.levels[var]}",
                        key=key,
                    )
                if kind == "numeric":
                    if isinstance(v, str):
                        raise InputError(f"{q.name}: {var} must be a number", key=key)
                    lo, hi = data.frame[var].min(), data.frame[var].max()
                    if not lo <= v <= hi:
                        warnings.warn(
                            f"quantity {q.name}: {var} = {v:g} is outside the data "
                            f"({lo:g} to {hi:g}): an extrapolation",
                            SpecWarning,
                            stacklevel=2,
                        )
        X = design.rows_at(rows)
        if compared is not None and np.allclose(X[0], X[1]):
            raise InputError(f"{q.name}: the two compared rows have the same design", key=key)
        if compared is not None and design.variables[compared] == "categorical":
            fixed = {
                v: q.at[v]
                for v, k in design.variables.items()
                if k == "categorical" and v != compared
            }
            data.compare[q.name] = (compared, q.compare[compared], fixed)
        data.quantity_rows[q.name] = X


def add_quantity(q: QuantitySpec, kind: str, data: FormulaData, b, tau, u) -> None:
    """The quantity as a scalar Deterministic named ``q.name`` (see families/glmm.py)."""
    model = pm.modelcontext(None)
    at = [str(v) for v in q.compare[next(iter(q.compare))]] if q.compare else ["at"]
    model.add_coord(f"{q.name}_at", at)
    rows = data.quantity_rows[q.name]
    eta = pt.dot(pm.Data(f"X_{q.name}", rows, dims=(f"{q.name}_at", "coef")), b)
    if q.group is not None and u is not None:
        eta = eta + u[pm.Data(f"group_{q.name}", np.int64(data.quantity_group[q.name]))]
    if kind == "normal":
        value = eta[0] if q.compare is None else eta[1] - eta[0]
        pm.Deterministic(q.name, value)
        return
    if q.effect == "population_averaged":
        x, w = np.polynomial.hermite.hermgauss(GH_NODES)
        shifts = np.sqrt(2.0) * tau * x  # u = sqrt(2) tau x for the weight exp(-x^2)
        p = (pm.math.invlogit(eta[:, None] + shifts[None, :]) * (w / np.sqrt(np.pi))).sum(axis=1)
        logit = pt.log(p) - pt.log1p(-p)
    else:
        p, logit = pm.math.invlogit(eta), eta
    value = {
        "probability": lambda: p[0],
        "log_odds": lambda: logit[0],
        "risk_difference": lambda: p[1] - p[0],
        "risk_ratio": lambda: p[1] / p[0],
        "odds_ratio": lambda: pt.exp(logit[1] - logit[0]),
        "log_odds_ratio": lambda: logit[1] - logit[0],
    }[q.measure]()
    pm.Deterministic(q.name, value)
