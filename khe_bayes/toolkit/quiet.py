"""Silence what a user of the reanalysis cannot act on.

- FutureWarning and DeprecationWarning from the libraries (ArviZ's and PyMC's API changes):
  they concern khe-bayes's code, not the user's run;
- PyTensor's "could not link to a BLAS installation": the reanalysis compiles every model with
  numba (PyTensor's default mode on this stack; nutpie for sampling), which does not use
  PyTensor's C BLAS, so the warning says nothing about this run;
- numba's "will use object mode" note for a custom distribution's random draws (a speed note);
- PyMC's INFO log lines ("Sampling: [score]") printed for every posterior-predictive draw;
- arviz-stats' RuntimeWarnings from degenerate chains (e.g. a square root of a negative
  variance estimate in the MCSE of a very short run): the convergence checks already flag
  such fits in words, with what to do.

Set ``KHE_BAYES_WARNINGS=1`` to see everything (for developers).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

MESSAGES = (
    r"PyTensor could not link to a BLAS installation",
    r"Numba will use object mode to run",
)
LOGGERS = ("pymc", "pymc.sampling", "pymc.sampling.forward")


@contextmanager
def quiet() -> Iterator[None]:
    """Within the block: the filters above; the log levels are restored afterwards."""
    if os.environ.get("KHE_BAYES_WARNINGS"):
        yield
        return
    levels = {name: logging.getLogger(name).level for name in LOGGERS}
    with warnings.catch_warnings():
        install_filters()
        for name in LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        try:
            yield
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)


def install_filters() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    for message in MESSAGES:
        warnings.filterwarnings("ignore", message=message)
    warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"arviz_stats(\.|$)")


def quiet_call(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` under :func:`quiet` (for tasks run in another process, e.g. on Dask)."""
    with quiet():
        return fn(*args)
