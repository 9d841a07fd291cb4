"""Fitting the summary-data model: one NUTS fit per block and joint reading, each reading's
marginal likelihood by importance sampling, the readings' posterior weights, the mixture
posterior, and the design-effect (ICC) sensitivity.

Marginal likelihood: importance sampling in the unconstrained space with a multivariate t
proposal (5 df) centred on the NUTS draws, covariance 1.5 x theirs. ``log_z_se`` is the delta-
method Monte Carlo SE of log Z from the importance weights, and ``is_ess`` their effective
sample size; the readings' weights carry a Monte Carlo SE propagated from those SEs.

Posterior weight of a joint reading r of a block: prior_r * Z_r / sum_s prior_s * Z_s. A reading
whose own test contradicts its printed p bound (summary_data.same_test_check) has Z = 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytensor
import pytensor.tensor as pt
from pytensor.graph.replace import vectorize_graph
from scipy import special, stats

from khe_bayes.study.summary_data import (
    DESCRIPTIONS,
    ESTIMANDS,
    Block,
    ModelOptions,
    SummaryPriors,
    build_block_model,
    same_test_check,
)
from khe_bayes.toolkit.sampling import SamplerSettings, derive_seed, fit, with_seed
from khe_bayes.toolkit.summary import divergences
from khe_bayes.toolkit.sweep import IN_PROCESS, SweepOptions, run_unstored

PROPOSAL_DF = 5
PROPOSAL_SCALE = 1.5
ICC_GRID = (0.0, 0.05, 0.1, 0.2, 0.3)


@dataclass
class Proposal:
    names: list[str]  # value-variable names, in column order
    slices: dict[str, slice]
    shapes: dict[str, tuple[int, ...]]
    mean: np.ndarray
    cov: np.ndarray

    def draw(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draws and their log density (multivariate t)."""
        dist = stats.multivariate_t(loc=self.mean, shape=self.cov, df=PROPOSAL_DF, seed=rng)
        x = np.atleast_2d(dist.rvs(n))
        return x, dist.logpdf(x)


@dataclass
class ReadingFit:
    block: str
    joint: dict[str, str]
    prior_weight: float
    excluded: str  # why the reading has likelihood 0 ('' if it has not)
    idata: object
    proposal: Proposal | None = None
    log_z: float = float("-inf")
    log_z_se: float = 0.0
    is_ess: float = 0.0
    posterior_weight: float = 0.0
    posterior_weight_mcse: float = 0.0

    @property
    def label(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.joint.items())


def _draws(idata, name: str) -> np.ndarray:
    x = np.asarray(idata.posterior[name].values)
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def proposal_from_draws(model, idata) -> Proposal:
    """Mean and covariance of the NUTS draws in the unconstrained space."""
    cols, names, slices, shapes, start = [], [], {}, {}, 0
    for rv in model.free_RVs:
        vv = model.rvs_to_values[rv]
        x = _draws(idata, rv.name)
        tr = model.rvs_to_transforms.get(rv)
        if tr is not None:
            x = np.asarray(tr.forward(pt.as_tensor(x), *rv.owner.inputs).eval())
        flat = x.reshape(x.shape[0], -1)
        names.append(vv.name)
        shapes[vv.name] = x.shape[1:]
        slices[vv.name] = slice(start, start + flat.shape[1])
        start += flat.shape[1]
        cols.append(flat)
    m = np.concatenate(cols, axis=1)
    cov = np.atleast_2d(np.cov(m, rowvar=False))
    if m.shape[0] <= 2 * m.shape[1]:  # too few draws for a full covariance: keep its diagonal
        cov = np.diag(np.diag(cov))
    # a ridge relative to the scale, so a short or stuck chain still gives a proper proposal
    ridge = 1e-6 * max(float(np.mean(np.diag(cov))), 1e-6)
    cov = cov * PROPOSAL_SCALE + ridge * np.eye(m.shape[1])
    return Proposal(names, slices, shapes, m.mean(axis=0), cov)


def _vectorised(model, outputs):
    """A function of batched value variables returning the log density and ``outputs``."""
    vvs = model.value_vars
    batched = [
        pt.tensor(name=f"{v.name}_batch", shape=(None, *v.type.shape), dtype=v.dtype) for v in vvs
    ]
    outs = [model.logp(jacobian=True), *model.replace_rvs_by_values(outputs)]
    outs = vectorize_graph(outs, dict(zip(vvs, batched, strict=True)))
    fn = pytensor.function(batched, outs, on_unused_input="ignore")
    return [v.name for v in vvs], fn


def estimand_vars(model, block: str) -> list:
    return [model[name] for name in ESTIMANDS[block]]


class Importance:
    """Importance sampling of one model: log marginal likelihood (with its delta-method Monte
    Carlo SE and the weights' ESS), normalised weights and the estimands at the draws. Compiled
    once; a fixed-ICC model can be re-run at another ICC by setting its ``icc_fixed`` data.
    Proposal columns of variables the model lacks (a fixed ICC) are marginalised out: the
    marginal of a multivariate t is the t of the sub-vector."""

    def __init__(self, model, block: str, proposal: Proposal):
        self.model, self.block = model, block
        self.names, self.fn = _vectorised(model, estimand_vars(model, block))
        idx = np.concatenate(
            [np.arange(proposal.mean.size)[proposal.slices[n]] for n in self.names]
        )
        self.shapes = [proposal.shapes[n] for n in self.names]
        self.proposal = Proposal(
            self.names, {}, {}, proposal.mean[idx], proposal.cov[np.ix_(idx, idx)]
        )

    def run(self, n: int, rng: np.random.Generator) -> dict:
        x, logq = self.proposal.draw(n, rng)
        args, start = [], 0
        for shape in self.shapes:
            k = int(np.prod(shape, dtype=int))
            args.append(x[:, start : start + k].reshape(n, *shape))
            start += k
        logp, *values = self.fn(*args)
        logw = np.where(np.isfinite(logp), logp - logq, -np.inf)
        log_z = float(special.logsumexp(logw) - np.log(n))
        w = np.exp(logw - logw.max())
        rel_var = np.var(w) / n / np.mean(w) ** 2
        return {
            "log_z": log_z,
            "log_z_se": float(np.sqrt(rel_var)),
            "ess": float(w.sum() ** 2 / np.sum(w**2)),
            "weights": w / w.sum(),
            "values": dict(zip(ESTIMANDS[self.block], values, strict=True)),
        }


def importance(model, block: str, proposal: Proposal, n: int, rng) -> dict:
    """One importance-sampling run (see :class:`Importance`)."""
    return Importance(model, block, proposal).run(n, rng)


def posterior_weights(fits: list[ReadingFit], rng, n_sim: int = 2000) -> None:
    """Set each fit's posterior weight (within its block) and its Monte Carlo SE."""
    # blocks in the fits' order: iterating a set of strings follows the process's hash seed,
    # which handed the random draws to the blocks in another order in every run
    for block in dict.fromkeys(f.block for f in fits):
        group = [f for f in fits if f.block == block]
        logp = np.array([np.log(f.prior_weight) + f.log_z for f in group])
        se = np.array([f.log_z_se if np.isfinite(f.log_z) else 0.0 for f in group])
        w = np.exp(logp - special.logsumexp(logp))
        sims = logp + rng.normal(size=(n_sim, len(group))) * se
        sims = np.exp(sims - special.logsumexp(sims, axis=1, keepdims=True))
        for f, wi, sd in zip(group, w, sims.std(axis=0), strict=True):
            f.posterior_weight, f.posterior_weight_mcse = float(wi), float(sd)


def fit_block(
    block: Block,
    priors: SummaryPriors,
    sampler: SamplerSettings,
    *,
    options: ModelOptions | None = None,
    is_draws: int = 20_000,
    sweep: SweepOptions = IN_PROCESS,
) -> list[ReadingFit]:
    """NUTS and importance sampling for every joint reading of ``block`` (:func:`fit_reading`),
    in this process or as tasks on Dask (``sweep``). A reading excluded by its own test is
    fitted without the p bounds (its predictive check needs draws) and gets weight 0."""
    return run_unstored(fit_reading, reading_jobs(block, priors, sampler, options, is_draws), sweep)


def reading_jobs(
    block: Block,
    priors: SummaryPriors,
    sampler: SamplerSettings,
    options: ModelOptions | None = None,
    is_draws: int = 20_000,
) -> list[tuple]:
    """The arguments of :func:`fit_reading` for each joint reading of ``block`` that needs a
    fit (an excluded reading is fitted once, whatever the other statements' readings)."""
    options = options or ModelOptions()
    jobs = []
    checked_excluded: set[tuple[str, str]] = set()
    for joint in block.joint_readings():
        reasons, keys = [], []
        for st in block.statements:
            reading = next(r for r in st.readings if r.id == joint[st.statistic])
            why = same_test_check(st, reading, block.sizes)
            if why:
                reasons.append(f"{st.statistic}: {why}")
                keys.append((st.statistic, reading.id))
        excluded = "; ".join(reasons)
        if excluded and all(k in checked_excluded for k in keys):
            continue  # weight 0 either way; one fit per excluded reading serves its check
        checked_excluded.update(keys)
        opts = ModelOptions(icc=options.icc, p_bounds=not excluded, design=options.design)
        jobs.append((block, dict(joint), priors, opts, sampler, is_draws, excluded))
    return jobs


def fit_reading(
    block: Block,
    joint: dict[str, str],
    priors: SummaryPriors,
    options: ModelOptions,
    sampler: SamplerSettings,
    is_draws: int,
    excluded: str,
) -> ReadingFit:
    """One joint reading of a block: NUTS (seed derived from the block and the reading, so the
    draws do not depend on where the fit runs) and, unless ``excluded``, its marginal
    likelihood by importance sampling."""
    model = build_block_model(block, joint, priors, options)
    seed = derive_seed(sampler.seed, "summary_data", block.name, *joint.values())
    idata = fit(model, with_seed(sampler, seed))
    rf = ReadingFit(block.name, dict(joint), block.prior_weight(joint), excluded, idata)
    if not excluded:
        rf.proposal = proposal_from_draws(model, idata)
        res = importance(model, block.name, rf.proposal, is_draws, np.random.default_rng(seed))
        rf.log_z, rf.log_z_se, rf.is_ess = res["log_z"], res["log_z_se"], res["ess"]
    return rf


@dataclass
class SummaryDataResult:
    fits: list[ReadingFit]
    priors: SummaryPriors
    options: ModelOptions
    weights: pd.DataFrame = field(default_factory=pd.DataFrame)
    joint_weights: pd.DataFrame = field(default_factory=pd.DataFrame)
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    by_reading: pd.DataFrame = field(default_factory=pd.DataFrame)
    icc_sensitivity: pd.DataFrame = field(default_factory=pd.DataFrame)
    icc_prior_posterior: pd.DataFrame = field(default_factory=pd.DataFrame)
    checks: pd.DataFrame = field(default_factory=pd.DataFrame)
    diagnostics: pd.DataFrame = field(default_factory=pd.DataFrame)


def statement_weights(blocks: list[Block], fits: list[ReadingFit]) -> pd.DataFrame:
    """Each statement's readings: prior weight, posterior weight (summed over the other
    statements' readings of its block) with Monte Carlo SE, and why a reading is excluded."""
    rows = []
    for block in blocks:
        group = [f for f in fits if f.block == block.name]
        for st in block.statements:
            for r in st.readings:
                mine = [f for f in group if f.joint[st.statistic] == r.id]
                own = [
                    part
                    for f in mine
                    for part in f.excluded.split("; ")
                    if part.startswith(f"{st.statistic}: ")
                ]
                excluded = own[0].split(": ", 1)[1] if own else ""
                if not r.plausible:
                    excluded = f"implausible: {r.description}"
                rows.append(
                    {
                        "block": block.name,
                        "statistic": st.statistic,
                        "reading": r.id,
                        "prior_weight": st.prior[r.id],
                        "posterior_weight": sum(f.posterior_weight for f in mine),
                        "mcse": float(np.sqrt(sum(f.posterior_weight_mcse**2 for f in mine))),
                        "excluded": excluded,
                        "description": r.description,
                    }
                )
    return pd.DataFrame(rows)


def _flat(values: np.ndarray, name: str, coords: Mapping[str, list]) -> dict[str, np.ndarray]:
    """{label: draws} for a variable whose draws are (S, *shape)."""
    if values.ndim == 1:
        return {name: values}
    (dim_labels,) = [c for c in coords.values() if len(c) == values.shape[1]][:1] or [None]
    labels = dim_labels or [str(i) for i in range(values.shape[1])]
    return {f"{name}[{lab}]": values[:, i] for i, lab in enumerate(labels)}


def estimand_draws(fit_: ReadingFit) -> dict[str, np.ndarray]:
    post = fit_.idata.posterior
    out = {}
    for name in [*ESTIMANDS[fit_.block], "icc"]:
        var = post[name]
        dims = [d for d in var.dims if d not in ("chain", "draw")]
        x = _draws(fit_.idata, name)
        coords = {d: [str(c) for c in post[d].values] for d in dims}
        out.update(_flat(x, name, coords))
    return out


def _describe(draws: np.ndarray, weights: np.ndarray | None = None) -> dict[str, float]:
    if weights is None:
        weights = np.full(draws.size, 1.0 / draws.size)
    order = np.argsort(draws)
    cdf = np.cumsum(weights[order])
    q = [float(draws[order][min(np.searchsorted(cdf, p), draws.size - 1)]) for p in (0.025, 0.975)]
    mean = float(np.sum(weights * draws))
    return {
        "mean": mean,
        "sd": float(np.sqrt(np.sum(weights * (draws - mean) ** 2))),
        "eti_2.5%": q[0],
        "eti_97.5%": q[1],
        "p_gt_0": float(np.sum(weights * (draws > 0))),
    }


def mixture_summary(fits: list[ReadingFit], rng, n: int = 8000) -> pd.DataFrame:
    """Reading-averaged posterior of each estimand: each reading's NUTS draws resampled in
    proportion to its posterior weight."""
    rows = []
    for block in dict.fromkeys(f.block for f in fits):
        group = [f for f in fits if f.block == block and f.posterior_weight > 0]
        counts = rng.multinomial(n, [f.posterior_weight for f in group])
        parts = [estimand_draws(f) for f in group]
        for label in parts[0]:
            pooled = np.concatenate(
                [
                    rng.choice(p[label], size=c, replace=True)
                    for p, c in zip(parts, counts, strict=True)
                ]
            )
            top = max(group, key=lambda f: f.posterior_weight)
            rows.append(
                {
                    "block": block,
                    "quantity": label,
                    "description": DESCRIPTIONS[label.split("[")[0]],
                    **_describe(pooled),
                    "most_probable_reading": top.label,
                    "its_weight": top.posterior_weight,
                }
            )
    return pd.DataFrame(rows)


def reading_summary(fits: list[ReadingFit]) -> pd.DataFrame:
    """Each estimand under each joint reading, with the reading's weight and diagnostics."""
    rows = []
    for f in fits:
        for label, x in estimand_draws(f).items():
            rows.append(
                {
                    "block": f.block,
                    "reading": f.label,
                    "posterior_weight": f.posterior_weight,
                    "quantity": label,
                    **_describe(x),
                    "excluded": f.excluded,
                }
            )
    return pd.DataFrame(rows)


def icc_sensitivity(
    blocks: list[Block],
    fits: list[ReadingFit],
    priors: SummaryPriors,
    options: ModelOptions,
    grid=ICC_GRID,
    is_draws: int = 20_000,
    seed: int = 0,
) -> pd.DataFrame:
    """Design-effect sensitivity: for each fixed ICC, every reading's marginal likelihood and
    estimands by importance sampling (proposal of the ICC-marginal fit, ICC column dropped);
    readings re-weighted at that ICC. One row per (ICC, quantity) with the reading-averaged
    mean, 95% interval and P(> 0), and one per (ICC, statement reading) with its weight."""
    rows = []
    rng = np.random.default_rng(seed)
    opts = ModelOptions(icc=grid[0], p_bounds=True, design=options.design)
    for block in blocks:
        group = [f for f in fits if f.block == block.name and not f.excluded]
        evaluators = [
            Importance(build_block_model(block, f.joint, priors, opts), block.name, f.proposal)
            for f in group
        ]
        labels = _estimand_labels(evaluators[0].model, block.name)
        for icc in grid:
            for ev in evaluators:
                ev.model["icc_fixed"].set_value(float(icc))
            results = [ev.run(is_draws, rng) for ev in evaluators]
            logp = np.array(
                [np.log(f.prior_weight) + r["log_z"] for f, r in zip(group, results, strict=True)]
            )
            w = np.exp(logp - special.logsumexp(logp))
            deff = options.design.deff(block.sizes["all"], icc)
            for st in block.statements:
                for r in st.readings:
                    wr = sum(
                        wi for f, wi in zip(group, w, strict=True) if f.joint[st.statistic] == r.id
                    )
                    rows.append(
                        {
                            "icc": icc,
                            "design_effect_n52": deff,
                            "block": block.name,
                            "row": "reading weight",
                            "quantity": f"{st.statistic}: {r.id}",
                            "mean": float(wr),
                        }
                    )
            wt = np.concatenate([wi * r["weights"] for wi, r in zip(w, results, strict=True)])
            wt = wt / wt.sum()
            for name in ESTIMANDS[block.name]:
                flat = [np.asarray(r["values"][name]).reshape(is_draws, -1) for r in results]
                for j, label in enumerate(labels[name]):
                    x = np.concatenate([v[:, j] for v in flat])
                    rows.append(
                        {
                            "icc": icc,
                            "design_effect_n52": deff,
                            "block": block.name,
                            "row": "estimand",
                            "quantity": label,
                            **_describe(x, wt),
                        }
                    )
    return pd.DataFrame(rows)


def _estimand_labels(model, block: str) -> dict[str, list[str]]:
    out = {}
    for name in ESTIMANDS[block]:
        dims = model.named_vars_to_dims.get(name) or ()
        if not dims:
            out[name] = [name]
        else:
            out[name] = [f"{name}[{c}]" for c in model.coords[dims[0]]]
    return out


def icc_prior_vs_posterior(fits: list[ReadingFit], priors: SummaryPriors) -> pd.DataFrame:
    """The ICC's posterior (reading-averaged, per block) beside its prior: the abstract does not
    inform it, so the two should agree up to Monte Carlo error."""
    prior = stats.beta(priors.icc_alpha, priors.icc_beta)
    rows = []
    for block in dict.fromkeys(f.block for f in fits):
        group = [f for f in fits if f.block == block and f.posterior_weight > 0]
        x = np.concatenate([_draws(f.idata, "icc") for f in group])
        w = np.concatenate(
            [np.full(_draws(f.idata, "icc").size, f.posterior_weight) for f in group]
        )
        w = w / w.sum()
        d = _describe(x, w)
        rows.append(
            {
                "block": block,
                "prior_mean": prior.mean(),
                "posterior_mean": d["mean"],
                "prior_sd": prior.std(),
                "posterior_sd": d["sd"],
                "prior_97.5%": prior.ppf(0.975),
                "posterior_97.5%": d["eti_97.5%"],
            }
        )
    return pd.DataFrame(rows)


def fit_diagnostics(fits: list[ReadingFit]) -> pd.DataFrame:
    import arviz as az

    rows = []
    for f in fits:
        names = [*ESTIMANDS[f.block], "icc"]
        s = az.summary(f.idata, var_names=names, round_to="none")
        rows.append(
            {
                "block": f.block,
                "reading": f.label,
                "r_hat_max": float(s["r_hat"].max()),
                "ess_bulk_min": float(s["ess_bulk"].min()),
                "divergences": divergences(f.idata),
                "log_marginal_likelihood": f.log_z,
                "log_z_mcse": f.log_z_se,
                "importance_ess": f.is_ess,
                "excluded": f.excluded,
            }
        )
    return pd.DataFrame(rows)


def run_summary_data(
    evidence,
    sampler: SamplerSettings,
    *,
    priors: SummaryPriors | None = None,
    options: ModelOptions | None = None,
    is_draws: int = 20_000,
    icc_grid=ICC_GRID,
    check_draws: int = 2000,
    progress=lambda message: None,
    sweep: SweepOptions = IN_PROCESS,
) -> SummaryDataResult:
    """The whole summary-data analysis: fits, reading weights, mixture posterior, ICC
    sensitivity, ICC prior vs posterior, predictive checks and diagnostics. The fits run where
    ``sweep`` says (each block's readings as tasks on Dask with ``--workers``)."""
    from khe_bayes.study.summary_data import blocks_from_evidence

    priors = priors or SummaryPriors()
    options = options or ModelOptions()
    from khe_bayes.study.summary_data_checks import summary_data_checks

    blocks = blocks_from_evidence(evidence)
    jobs = [job for b in blocks for job in reading_jobs(b, priors, sampler, options, is_draws)]
    progress(
        f"summary-data model: {len(jobs)} fits for the joint readings of "
        + ", ".join(f"{b.name} ({len(b.joint_readings())})" for b in blocks)
    )
    # all blocks' fits at once, so that Dask workers (--workers) are not idle between blocks
    fits: list[ReadingFit] = run_unstored(fit_reading, jobs, sweep)
    rng = np.random.default_rng(derive_seed(sampler.seed, "summary_data", "weights"))
    posterior_weights(fits, rng)
    result = SummaryDataResult(fits, priors, options)
    result.weights = statement_weights(blocks, fits)
    result.joint_weights = pd.DataFrame(
        [
            {
                "block": f.block,
                "joint_reading": f.label,
                "prior_weight": f.prior_weight,
                "posterior_weight": f.posterior_weight,
                "mcse": f.posterior_weight_mcse,
                "excluded": f.excluded,
            }
            for f in fits
        ]
    )
    result.summary = mixture_summary(fits, rng)
    result.by_reading = reading_summary(fits)
    progress("summary-data model: design-effect (ICC) sensitivity")
    result.icc_sensitivity = icc_sensitivity(
        blocks, fits, priors, options, grid=icc_grid, is_draws=is_draws, seed=sampler.seed
    )
    result.icc_prior_posterior = icc_prior_vs_posterior(fits, priors)
    progress("summary-data model: predictive checks against the printed numbers")
    result.checks = summary_data_checks(blocks, fits, n_draws=check_draws, seed=sampler.seed)
    result.diagnostics = fit_diagnostics(fits)
    return result
