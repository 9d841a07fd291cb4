"""The explicit registry of model families a spec in models/ can name.

A spec's ``family`` key picks an entry of :data:`FAMILIES`; nothing is ever imported by a path
written in a file. To add a family:

1. write a pydantic spec class deriving from ``SpecBase`` with ``family: Literal["my_family"]``
   and its own fields (``extra="forbid"`` is inherited);
2. write ``load_data(spec, spec_dir)`` that validates its data (raise ``InputError`` naming file,
   row and column) and ``build(spec, data) -> pm.Model`` that never samples;
3. add ``Family(name, spec, load_data, build, summary_vars, descriptions)`` to ``FAMILIES``
   in this file, or, for a family defined outside the package (a script or a notebook), call
   ``register_family(name, family)`` before loading a spec that names it.

``load_spec(path)`` reads a TOML spec, picks the family and validates strictly.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from khe_bayes.families.base import Family, ReportedStatisticSpec, SpecBase
from khe_bayes.families.glmm import BINOMIAL_GLMM, NORMAL_GLMM
from khe_bayes.families.grouped import BINOMIAL, NORMAL
from khe_bayes.families.khe import AGGREGATE, KHE_FAMILIES
from khe_bayes.toolkit.errors import InputError
from khe_bayes.toolkit.tomlio import read_toml, validate_as

FAMILIES: dict[str, Family] = {
    f.name: f for f in (BINOMIAL, NORMAL, BINOMIAL_GLMM, NORMAL_GLMM, AGGREGATE, *KHE_FAMILIES)
}

__all__ = [
    "FAMILIES",
    "Family",
    "ReportedStatisticSpec",
    "SpecBase",
    "load_spec",
    "register_family",
]


def register_family(name: str, family: Family) -> Family:
    """Add ``family`` to :data:`FAMILIES` under ``name`` and return it.

    ``name`` must equal ``family.name`` (it is the value of a spec's ``family`` key and is stored
    with every result) and must not be registered already: an existing family is never replaced,
    so a spec always means the model it meant when it was written. Raises ``ValueError``
    (``TypeError`` if ``family`` is not a :class:`Family`). The registration lasts for the
    running process: ``load_spec``, ``khe_bayes.rebuild_model`` and ``cli.main(["fit", ...])``
    called
    in that process accept specs naming the family; a new ``khe-bayes`` process does not.
    """
    if not isinstance(family, Family):
        raise TypeError(f"expected a Family, got {type(family).__name__}")
    if name != family.name:
        raise ValueError(f"name {name!r} differs from the family's own name {family.name!r}")
    if name in FAMILIES:
        raise ValueError(f"family {name!r} is already registered; choose another name")
    FAMILIES[name] = family
    return family


def load_spec(path: str | Path) -> tuple[BaseModel, Family]:
    """Read, pick the family, validate strictly. Errors name the file and the key."""
    raw = read_toml(path)
    name = raw.get("family")
    if name is None:
        raise InputError("missing key 'family'", file=path, key="family")
    if not isinstance(name, str) or name not in FAMILIES:
        raise InputError(
            f"unknown family {name!r}; known: {sorted(FAMILIES)}", file=path, key="family"
        )
    family = FAMILIES[name]
    return validate_as(raw, family.spec, file=path), family
