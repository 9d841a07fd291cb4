"""The explicit registry of model families a spec in models/ can name.

A spec's ``family`` key picks an entry of :data:`FAMILIES`; nothing is ever imported by a path
written in a file. To add a family:

1. write a pydantic spec class deriving from ``SpecBase`` with ``family: Literal["my_family"]``
   and its own fields (``extra="forbid"`` is inherited);
2. write ``load_data(spec, spec_dir)`` that validates its data (raise ``InputError`` naming file,
   row and column) and ``build(spec, data) -> pm.Model`` that never samples;
3. add ``Family(name, spec, load_data, build, summary_vars, descriptions)`` to ``FAMILIES``.

``load_spec(path)`` reads a TOML spec, picks the family and validates strictly.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from khe_bayes.errors import InputError
from khe_bayes.families.base import Family, ReportedStatisticSpec, SpecBase
from khe_bayes.families.grouped import BINOMIAL, NORMAL
from khe_bayes.families.khe import AGGREGATE, KHE_FAMILIES
from khe_bayes.tomlio import read_toml, validate_as

FAMILIES: dict[str, Family] = {f.name: f for f in (BINOMIAL, NORMAL, AGGREGATE, *KHE_FAMILIES)}

__all__ = ["FAMILIES", "Family", "ReportedStatisticSpec", "SpecBase", "load_spec"]


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
