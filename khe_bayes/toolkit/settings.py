"""Sampler settings: a light module (pydantic only), so that the CLI can show defaults and check
options without importing PyMC. ``khe_bayes.toolkit.sampling`` re-exports :class:`SamplerSettings`.

Validation is strict: a number written as a string (``draws = "1000"``) is an error, not a
number, and every count has an upper bound that names why it exists.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Bounds on what one fit may ask for. Chains: PyMC runs each chain in its own process (nutpie in
# its own thread) and keeps every draw in memory; R-hat and ESS are reliable from 4 chains, so
# more than 64 buys nothing but processes and memory (1000 chains started hundreds of processes).
MAX_CHAINS = 64
MAX_DRAWS = 1_000_000  # per chain: 1e6 draws of a 1000-parameter model is already 8 GB
MAX_TUNE = 100_000
MAX_SEED = 2**32 - 1  # numpy's SeedSequence takes any non-negative int; PyMC's seeds are 32-bit
# Warm-up each reconstructed dataset tries first (pooling.fit_dataset): nutpie's adaptation
# usually settles far sooner than the full warm-up, and a dataset whose quick fit fails the
# convergence rules is refitted with the full one (issue 18; measured in benchmarks/RESULTS.md)
QUICK_TUNE = 300
# Posterior-predictive draws kept per reconstructed dataset (pooling.fit_dataset), thinned evenly
# within each chain: PyMC evaluates the predictive one draw at a time (~0.4 ms a draw), which for
# every draw of every dataset took more of the reanalysis than the sampling (issue 18); the
# checks replicate 100 datasets from each (ReanalysisSettings.ppc_draws_per_dataset)
PREDICTIVE_DRAWS = 400


class SamplerSettings(BaseModel):
    """NUTS settings. ``seed`` fixes every chain, so the same settings give the same draws.

    ``backend``: ``"nutpie"`` (numba-compiled, compiled once per model structure and re-used
    for every dataset; see compiled.py) or ``"pymc"`` (PyMC's own NUTS implementation,
    ``pm.sample(nuts_sampler="pymc")``). PyMC 6's ``pm.sample`` itself defaults to nutpie, but
    compiles per call; the compile-once path is ours.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    draws: int = Field(default=2000, ge=10, le=MAX_DRAWS)
    tune: int = Field(default=1000, ge=0, le=MAX_TUNE)
    chains: int = Field(default=4, ge=1, le=MAX_CHAINS)
    cores: int | None = Field(default=None, ge=1, le=MAX_CHAINS)
    target_accept: float = Field(default=0.9, gt=0.5, lt=1.0)
    seed: int = Field(default=20170815, ge=0, le=MAX_SEED)
    progressbar: bool | None = None
    backend: Literal["pymc", "nutpie"] = "nutpie"


def settings_error_message(exc: Exception, *, option_prefix: str = "--") -> str:
    """One line from a pydantic ValidationError on SamplerSettings: the option (``--seed``) or
    key, the rule, and the value given."""
    errors = getattr(exc, "errors", None)
    if errors is None:
        return str(exc).splitlines()[0]
    err = errors()[0]
    name = ".".join(str(p) for p in err["loc"])
    dashed = "--" + name.replace("_", "-")
    name = dashed if option_prefix == "--" else option_prefix + name
    rule = err["msg"]
    rule = rule[0].lower() + rule[1:] if rule else rule
    if err["type"] == "extra_forbidden":
        rule = "unknown setting"
    value = err.get("input")
    why = LIMIT_REASONS.get(str(err["loc"][-1])) if err["type"] == "less_than_equal" else None
    return f"{name}: {rule} (got {value!r})" + (f"; {why}" if why else "")


LIMIT_REASONS = {
    "chains": f"each chain is a process (PyMC) or thread (nutpie) holding its draws in memory, "
    f"and 4 chains are enough for R-hat and ESS; at most {MAX_CHAINS}",
    "cores": f"at most one process per chain, and at most {MAX_CHAINS} chains",
    "draws": "draws are kept in memory; thin a long run or use several shorter ones",
    "tune": "adaptation beyond this does not converge further",
    "seed": "seeds are 32-bit",
}


# The sampler of each simulation-based-calibration fit (khe_bayes.toolkit.sbc; the defaults of
# khe-bayes sbc).
SBC_SAMPLER = SamplerSettings(
    draws=500, tune=500, chains=2, target_accept=0.95, backend="nutpie", cores=1
)
