"""How long a fit may take, said before it starts.

NUTS costs about (tune + draws) x chains iterations, each a number of leapfrog steps that grows
with the number of free parameters (roughly with its square root in well-conditioned models),
each step one gradient whose cost grows with the parameters and the observations. The estimate
below is that product with constants measured on this project's models (eight schools: 10
parameters, about 0.3 ms per iteration on one core); it is deliberately rough, for a warning
like "this will take hours", not for a progress bar.
"""

from __future__ import annotations

import math
import os
import sys
from typing import TYPE_CHECKING, TextIO

from khe_bayes.toolkit.settings import SamplerSettings

if TYPE_CHECKING:
    import pymc as pm

WARN_AFTER_S = 300.0  # warn when a fit is expected to take more than this
SECONDS_PER_GRADIENT_ELEMENT = 2e-8  # per (parameter + observation) per leapfrog step
SECONDS_PER_GRADIENT_OVERHEAD = 2e-5  # per leapfrog step (Python/numba call overhead)


def model_size(model: pm.Model) -> tuple[int, int]:
    """(free parameters, observed values) of a PyMC model, from its initial point and data."""
    params = sum(int(v.size) for v in model.initial_point().values())
    observed = 0
    for rv in model.observed_RVs:
        shape = model.rvs_to_values[rv].shape.eval()  # data shapes: cheap to evaluate
        observed += int(math.prod(int(n) for n in shape))
    return params, observed


def estimate_seconds(params: int, observed: int, settings: SamplerSettings) -> float:
    """A rough wall time for one fit (see the module docstring)."""
    steps = min(1023.0, 3.0 + 2.0 * math.sqrt(max(params, 1)))
    per_step = SECONDS_PER_GRADIENT_OVERHEAD + SECONDS_PER_GRADIENT_ELEMENT * (params + observed)
    iterations = (settings.tune + settings.draws) * settings.chains
    parallel = max(1, min(settings.chains, settings.cores or os.cpu_count() or 1))
    return iterations * steps * per_step / parallel


def describe_seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def warn_if_long(
    model: pm.Model,
    settings: SamplerSettings,
    *,
    threshold_s: float = WARN_AFTER_S,
    stream: TextIO | None = None,
) -> float:
    """Print a warning to stderr before sampling if the fit is expected to be long; return the
    estimate in seconds."""
    params, observed = model_size(model)
    seconds = estimate_seconds(params, observed, settings)
    if seconds > threshold_s:
        print(
            f"khe-bayes: warning: a long fit: {params} free parameters, {observed} observations, "
            f"{settings.chains} chains x {settings.tune + settings.draws} iterations; roughly "
            f"{describe_seconds(seconds)} or more (a rough estimate). Fewer --draws/--chains or "
            "a smaller model make it shorter; Ctrl-C stops it without writing anything.",
            file=stream or sys.stderr,
            flush=True,
        )
    return seconds


# The reanalysis at its defaults (4 reconstructions, 4 chains, 2000 draws, sensitivity on) takes
# about 4.5 min on 2 cores (benchmarks/RESULTS.md); most of it is the IPD fits, whose cost grows
# with datasets x chains x (tuning + draws per dataset).
REANALYSIS_DEFAULT_S = 270.0
REANALYSIS_WARN_AFTER_S = 1200.0


def reanalysis_seconds(datasets: int, sampler: SamplerSettings, *, sensitivity: bool) -> float:
    """A rough wall time of ``khe-bayes reanalyze`` with these settings (see above)."""
    per_dataset = min(sampler.draws, max(2000, -(-sampler.draws // datasets)))
    iterations = datasets * sampler.chains * (max(sampler.tune, 2000) + per_dataset)
    default_iterations = 4 * 4 * (2000 + 2000)
    seconds = REANALYSIS_DEFAULT_S * iterations / default_iterations
    return seconds if sensitivity else seconds * 0.6


def warn_if_long_reanalysis(
    datasets: int, sampler: SamplerSettings, *, sensitivity: bool, stream: TextIO | None = None
) -> float:
    seconds = reanalysis_seconds(datasets, sampler, sensitivity=sensitivity)
    if seconds > REANALYSIS_WARN_AFTER_S:
        print(
            f"khe-bayes: warning: a long run: {datasets} datasets x {sampler.chains} chains x "
            f"{sampler.draws} draws; roughly {describe_seconds(seconds)} on 2 cores (a rough "
            "estimate; the defaults take about 4.5 min). Ctrl-C stops it without writing anything.",
            file=stream or sys.stderr,
            flush=True,
        )
    return seconds
