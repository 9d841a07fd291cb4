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

from khe_bayes.sampling import SamplerSettings, derive_seed, fit, with_seed
from khe_bayes.summary import divergences
from khe_bayes.summary_data import (
    ESTIMANDS,
    Block,
    ModelOptions,
    SummaryPriors,
    build_block_model,
    same_test_check,
)

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
    cov = np.cov(m, rowvar=False) * PROPOSAL_SCALE + 1e-9 * np.eye(m.shape[1])
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


def importance(model, block: str, proposal: Proposal, n: int, rng) -> dict:
    """Log marginal likelihood (and SE, ESS) of ``model`` by importance sampling, with the
    normalised weights and the estimands at the draws (for self-normalised summaries).
    Proposal columns of variables the model lacks (a fixed ICC) are marginalised out: the
    marginal of a multivariate t is the t of the sub-vector."""
    names, fn = _vectorised(model, estimand_vars(model, block))
    idx = np.concatenate([np.arange(proposal.mean.size)[proposal.slices[nm]] for nm in names])
    sub = Proposal(names, {}, {}, proposal.mean[idx], proposal.cov[np.ix_(idx, idx)])
    x, logq = sub.draw(n, rng)
    args, start = [], 0
    for nm in names:
        k = int(np.prod(proposal.shapes[nm], dtype=int))
        args.append(x[:, start : start + k].reshape(n, *proposal.shapes[nm]))
        start += k
    logp, *values = fn(*args)
    logw = np.where(np.isfinite(logp), logp - logq, -np.inf)
    log_z = float(special.logsumexp(logw) - np.log(n))
    w = np.exp(logw - logw.max())
    rel_var = np.var(w) / n / np.mean(w) ** 2
    return {
        "log_z": log_z,
        "log_z_se": float(np.sqrt(rel_var)),
        "ess": float(w.sum() ** 2 / np.sum(w**2)),
        "weights": w / w.sum(),
        "values": dict(zip(ESTIMANDS[block], values, strict=True)),
    }


def posterior_weights(fits: list[ReadingFit], rng, n_sim: int = 2000) -> None:
    """Set each fit's posterior weight (within its block) and its Monte Carlo SE."""
    for block in {f.block for f in fits}:
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
    options: ModelOptions = ModelOptions(),
    is_draws: int = 20_000,
) -> list[ReadingFit]:
    """NUTS and importance sampling for every joint reading of ``block``. A reading excluded by
    its own test is fitted without the p bounds (its predictive check needs draws) and gets
    weight 0."""
    fits = []
    for joint in block.joint_readings():
        reasons = []
        for st in block.statements:
            reading = next(r for r in st.readings if r.id == joint[st.statistic])
            why = same_test_check(st, reading, block.sizes)
            if why:
                reasons.append(f"{st.statistic}: {why}")
        excluded = "; ".join(reasons)
        opts = ModelOptions(icc=options.icc, p_bounds=not excluded, design=options.design)
        model = build_block_model(block, joint, priors, opts)
        seed = derive_seed(sampler.seed, "summary_data", block.name, *joint.values())
        idata = fit(model, with_seed(sampler, seed))
        rf = ReadingFit(block.name, dict(joint), block.prior_weight(joint), excluded, idata)
        if not excluded:
            rf.proposal = proposal_from_draws(model, idata)
            res = importance(model, block.name, rf.proposal, is_draws, np.random.default_rng(seed))
            rf.log_z, rf.log_z_se, rf.is_ess = res["log_z"], res["log_z_se"], res["ess"]
        fits.append(rf)
    return fits


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
                excluded = next((f.excluded for f in mine if f.excluded), "")
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
                [rng.choice(p[label], size=c, replace=True) for p, c in zip(parts, counts)]
            )
            top = max(group, key=lambda f: f.posterior_weight)
            rows.append(
                {
                    "block": block,
                    "quantity": label,
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
    for icc in grid:
        opts = ModelOptions(icc=icc, p_bounds=True, design=options.design)
        for block in blocks:
            group = [f for f in fits if f.block == block.name and not f.excluded]
            results = [
                importance(
                    build_block_model(block, f.joint, priors, opts),
                    block.name,
                    f.proposal,
                    is_draws,
                    rng,
                )
                for f in group
            ]
            logp = np.array([np.log(f.prior_weight) + r["log_z"] for f, r in zip(group, results)])
            w = np.exp(logp - special.logsumexp(logp))
            deff_max = options.design.deff(block.sizes["all"], icc)
            for st in block.statements:
                for r in st.readings:
                    wr = sum(wi for f, wi in zip(group, w) if f.joint[st.statistic] == r.id)
                    rows.append(
                        {
                            "icc": icc,
                            "block": block.name,
                            "row": "reading weight",
                            "quantity": f"{st.statistic}: {r.id}",
                            "mean": float(wr),
                            "design_effect_n52": deff_max,
                        }
                    )
            for name in results[0]["values"]:
                vals = [np.asarray(r["values"][name]) for r in results]
                flat = [v.reshape(v.shape[0], -1) for v in vals]
                for j in range(flat[0].shape[1]):
                    x = np.concatenate([v[:, j] for v in flat])
                    wt = np.concatenate([wi * r["weights"] for wi, r in zip(w, results)])
                    label = name if flat[0].shape[1] == 1 else f"{name}[{j}]"
                    rows.append(
                        {
                            "icc": icc,
                            "block": block.name,
                            "row": "estimand",
                            "quantity": label,
                            **_describe(x, wt / wt.sum()),
                            "design_effect_n52": deff_max,
                        }
                    )
    return pd.DataFrame(rows)


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
