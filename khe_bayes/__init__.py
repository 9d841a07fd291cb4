"""khe-bayes: Bayesian reanalysis of the sirolimus-for-KHE cohort (Int J Cancer 2017;141:848-855).

The path through the package is evidence -> data -> model -> posterior -> checks -> report.
The Python API (:mod:`khe_bayes.api`) is importable from here::

    import khe_bayes as kb
    result = kb.fit_spec("binomial_example", draws=1000)   # an ArviZ DataTree
    kb.summarize(result)

Names are imported on first use, so ``import khe_bayes`` (and ``khe-bayes --help``) does not
load PyMC.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.2.0"

_API = {
    "fit_spec": "khe_bayes.api",
    "load_spec": "khe_bayes.api",
    "summarize": "khe_bayes.api",
    "rebuild_model": "khe_bayes.api",
    "spec_of": "khe_bayes.api",
    "reanalyze": "khe_bayes.api",
    "bundled_specs": "khe_bayes.resources",
    "load_evidence": "khe_bayes.study.evidence",
    "SamplerSettings": "khe_bayes.toolkit.sampling",
    "fit": "khe_bayes.toolkit.sampling",
    "load_result": "khe_bayes.toolkit.datatree",
    "save_result": "khe_bayes.toolkit.datatree",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        target = {"load_result": "load", "save_result": "save"}.get(name, name)
        return getattr(import_module(_API[name]), target)
    raise AttributeError(f"module 'khe_bayes' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
