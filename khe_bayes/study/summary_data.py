"""Summary-data model: the published numbers themselves as data (bayesmeta / baggr style).

Each printed 95% CI [L, U] enters a likelihood directly. The exact (unrounded) endpoints are
latent, uniform within their rounding cells (interval-censoring: the likelihood of a printed
pair is the probability that the exact pair falls in its cell). Under a *reading* the exact pair
is a function of the sample summaries the paper computed (group means and SDs), and those have
known sampling distributions given population parameters:

- sample mean of a quantity q over n patients: Normal(mu_q, sd_q * sqrt(deff_q / n));
- sample SD: (n - 1) s^2 / sd_q^2 ~ chi-square(n - 1) (pooled and Welch analogues below).

``deff_q = 1 + (m_q - 1) * icc`` is the design effect of clustering by center, which the paper's
intervals ignore: with K centers whose sizes have squared coefficient of variation cv2, the
effective cluster size is ``m_q = max(1, n_q / K * (1 + cv2))``. The ICC has a stated prior and
the abstract does not inform it (its posterior is its prior; see :func:`icc_prior_vs_posterior`).

Readings (``evidence.toml`` interpretations) and their likelihood of the exact pair (l, u):

- ``mean_at_visit`` / ``mean_change`` (one-sample t, df n - 1): centre (l + u)/2 is the sample
  mean, half-width / t_{0.975, n-1} * sqrt(n) the sample SD;
- ``mean_difference`` pooled t (df n_a + n_b - 2) or Welch (Satterthwaite df of the population
  SDs, t quantile by Cornish-Fisher): centre is the difference of means, half-width gives the
  pooled SD / the Welch standard error;
- ``group_means``: l and u are the two groups' sample means (groups in the file's order).

The printed p bound: under a reading whose p-value is the interval's own test the bound is a
function of the printed pair alone; a reading it contradicts at every point of the rounding
cells has likelihood 0 (:func:`same_test_check`). Otherwise the p-value is another test and its
bound enters as the probability that the test meets it, given the population parameters and
what the reading pins (normal approximation to the t statistic treating unobserved sample SDs as
their population values; for ``group_means``, where both means are pinned, the exact chi-square
probability that the pooled SD is small (large) enough).

Readings are a latent discrete choice per statement. Statements that share parameters form a
*block* (age; severity at 6 and 12 months; tumour shrinkage by KMP status and by arm); within a
block the joint readings are enumerated, each is a model (:func:`build_block_model`), and the
discrete choice is marginalised exactly: P(reading | data) is proportional to prior weight times
the marginal likelihood (estimated by importance sampling, summary_data_fit.py).

Priors (:class:`SummaryPriors`) are on the scale of each quantity and are the same under every
reading of a block, so marginal likelihoods compare readings, not priors.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy import stats

from khe_bayes.study.evidence import Evidence, Interpretation, IntervalRecord, PBoundRecord

# statements that share population parameters (statistic ids of evidence.toml)
BLOCKS: dict[str, tuple[str, ...]] = {
    "age": ("age_difference_kmp",),
    "severity": ("severity_6m", "severity_12m"),
    "shrinkage": ("kmp_vs_non_kmp_response", "combination_vs_alone_shrinkage"),
}
Z975 = float(stats.norm.ppf(0.975))


@dataclass(frozen=True)
class SummaryPriors:
    """Priors of the summary-data model, on the scale of each quantity.

    - age: each group's mean age at treatment ~ Normal(36, 36) months (paediatric cohort: 97.5%
      of the prior mass below 6 years; not truncated at 0, because a hard bound next to a
      pinned mean makes NUTS diverge; the printed numbers keep every reading's means far from
      0); each group's SD ~ Gamma(2, mean 30) months;
    - severity: mean score at 0, 6, 12 months ~ Uniform(0, 10) (the score's range, as in the
      reconstruction); SD of the score at a visit and of its change ~ Gamma(2, mean 2) points;
    - tumour shrinkage (%): each group's mean ~ Normal(0, 50) (no direction assumed); SD ~
      Gamma(2, mean 20) points;
    - ICC of center (all outcomes) ~ Beta(1, 19): mean 0.05, P(ICC > 0.15) = 0.045.

    SDs get Gamma(2) priors (density 0 at SD = 0, "boundary-avoiding"): under a reading that
    pins a group's mean but not its SD (``group_means``), a prior with mass near SD = 0 makes a
    funnel that NUTS cannot sample without divergences.
    """

    age_mean_mu: float = 36.0
    age_mean_sigma: float = 36.0
    age_sd_mean: float = 30.0
    score_min: float = 0.0
    score_max: float = 10.0
    score_sd_mean: float = 2.0
    shrinkage_mean_mu: float = 0.0
    shrinkage_mean_sigma: float = 50.0
    shrinkage_sd_mean: float = 20.0
    sd_shape: float = 2.0
    icc_alpha: float = 1.0
    icc_beta: float = 19.0
    # every SD known and fixed at this value (no SD prior): the closed-form reference case
    sd_fixed: float | None = None

    def describe(self) -> str:
        return (
            f"mean age per group Normal({self.age_mean_mu:g}, {self.age_mean_sigma:g}) months, "
            f"SD Gamma("
            f"{self.sd_shape:g}, mean {self.age_sd_mean:g}); mean severity score per visit "
            f"Uniform({self.score_min:g}, {self.score_max:g}), SDs Gamma({self.sd_shape:g}, mean "
            f"{self.score_sd_mean:g}); mean shrinkage per group Normal({self.shrinkage_mean_mu:g}"
            f", {self.shrinkage_mean_sigma:g}) %, SD Gamma({self.sd_shape:g}, mean "
            f"{self.shrinkage_sd_mean:g}); ICC of center Beta({self.icc_alpha:g}, "
            f"{self.icc_beta:g})"
        )


@dataclass(frozen=True)
class CenterDesign:
    """K centers of unknown sizes. ``concentration``: the Dirichlet concentration of the
    reconstruction's allocation (equal expected shares); the squared coefficient of variation of
    a Dirichlet share is then (K - 1) / (concentration + 1)."""

    centers: int = 6
    concentration: float = 6.0

    @property
    def cv2(self) -> float:
        return (self.centers - 1) / (self.concentration + 1)

    def cluster_size(self, n: int) -> float:
        return max(1.0, n / self.centers * (1.0 + self.cv2))

    def deff(self, n: int, icc: float) -> float:
        return 1.0 + (self.cluster_size(n) - 1.0) * icc


@dataclass(frozen=True)
class Statement:
    """One printed interval with its p bound and its readings (prior weights normalised)."""

    statistic: str
    ci: IntervalRecord
    p: PBoundRecord | None
    readings: tuple[Interpretation, ...]
    prior: Mapping[str, float]

    @property
    def timepoint(self) -> str:
        return self.ci.timepoint or ""


@dataclass(frozen=True)
class Block:
    name: str
    statements: tuple[Statement, ...]
    sizes: Mapping[str, int]  # patients per group of the block's quantities

    def joint_readings(self) -> list[dict[str, str]]:
        """Every combination of readings with prior weight > 0 (statistic -> reading id)."""
        options = [[r.id for r in s.readings if s.prior[r.id] > 0] for s in self.statements]
        return [
            dict(zip([s.statistic for s in self.statements], combo, strict=True))
            for combo in itertools.product(*options)
        ]

    def prior_weight(self, joint: Mapping[str, str]) -> float:
        return float(np.prod([s.prior[joint[s.statistic]] for s in self.statements]))

    def statement(self, statistic: str) -> Statement:
        return next(s for s in self.statements if s.statistic == statistic)


def group_sizes(evidence: Evidence) -> dict[str, int]:
    """Patients per group, from the evidence counts."""
    n = evidence["n_analyzed"].events
    kmp = evidence["kmp_count"].events
    comb = evidence["combination_count"].events
    return {
        "all": n,
        "kmp": kmp,
        "non_kmp": n - kmp,
        "kmp_combination": comb,
        "kmp_sirolimus": kmp - comb,
    }


def blocks_from_evidence(evidence: Evidence) -> list[Block]:
    """The three blocks of statements, with readings and prior weights from the evidence."""
    cis = {r.statistic: r for r in evidence.of_kind("ci95")}
    ps = {r.statistic: r for r in evidence.of_kind("p_bound")}
    sizes = group_sizes(evidence)
    blocks = []
    for name, statistics in BLOCKS.items():
        statements = []
        for stat in statistics:
            ci = cis[stat]
            statements.append(
                Statement(stat, ci, ps.get(stat), tuple(ci.interpretations), ci.prior_weights())
            )
        blocks.append(Block(name, tuple(statements), sizes))
    return blocks


# ---------------------------------------------------------------------------------------------
# quantities: population mean and SD of what the paper summarised, by block


@dataclass
class Quantity:
    mean: pt.TensorVariable
    sd: pt.TensorVariable
    n: int
    deff: pt.TensorVariable


def _sd_prior(name: str, priors: SummaryPriors, mean: float, dims: str):
    if priors.sd_fixed is not None:  # known SDs: the closed-form reference case
        size = len(pm.modelcontext(None).coords[dims])
        return pm.Deterministic(name, pt.fill(pt.zeros(size), priors.sd_fixed), dims=dims)
    return pm.Gamma(name, alpha=priors.sd_shape, beta=priors.sd_shape / mean, dims=dims)


def _anchored_means(name, prior, labels, sd, sizes, design, icc, anchors, dims):
    """Group means with prior ``prior`` (a PyMC distribution), non-centred where a reading pins
    a group's sample mean (``anchors``: label -> printed value): mean = anchor + SE * z, z free,
    with the prior density of the mean and the Jacobian added as a potential. The posterior is
    the same as with the means as free variables; the geometry is not (without it, a pinned mean
    whose SD is free makes a funnel). Anchors depend only on the printed numbers."""
    anchor = np.array([anchors.get(g, 0.0) for g in labels])
    pinned = np.array([g in anchors for g in labels])
    n = np.array([sizes[g] for g in labels], dtype=float)
    m = np.array([design.cluster_size(int(k)) for k in n])
    se = sd * pt.sqrt((1.0 + (m - 1.0) * icc) / n)
    scale = pt.switch(pinned, se, 1.0)
    z = pm.Flat(f"{name}_offset", dims=dims)
    mean = pm.Deterministic(name, anchor + scale * z, dims=dims)
    pm.Potential(f"{name}_prior", pt.sum(pm.logp(prior, mean)) + pt.sum(pt.log(scale)))
    return mean


def _quantities(
    block: Block, priors: SummaryPriors, design: CenterDesign, icc, anchors: Mapping[str, float]
) -> dict:
    s = block.sizes

    def q(mean, sd, n):
        m = design.cluster_size(n)
        return Quantity(mean, sd, n, 1.0 + (m - 1.0) * icc)

    if block.name == "age":
        sd = _sd_prior("sd_age", priors, priors.age_sd_mean, "group")
        mean = _anchored_means(
            "mean_age",
            pm.Normal.dist(mu=priors.age_mean_mu, sigma=priors.age_mean_sigma, shape=2),
            ["kmp", "non_kmp"],
            sd,
            s,
            design,
            icc,
            anchors,
            "group",
        )
        pm.Deterministic("age_difference_months", mean[1] - mean[0])
        return {g: q(mean[i], sd[i], s[g]) for i, g in enumerate(("kmp", "non_kmp"))}
    if block.name == "severity":
        mean = pm.Uniform(
            "mean_score", lower=priors.score_min, upper=priors.score_max, dims="visit"
        )
        sd = _sd_prior("sd_score", priors, priors.score_sd_mean, "followup")
        sd_change = _sd_prior("sd_change", priors, priors.score_sd_mean, "followup")
        decrease = pm.Deterministic("decrease", mean[0] - mean[1:], dims="followup")
        out = {}
        for i, tp in enumerate(("6m", "12m")):
            out[f"score_{tp}"] = q(mean[i + 1], sd[i], s["all"])
            out[f"change_{tp}"] = q(decrease[i], sd_change[i], s["all"])
        return out
    if block.name == "shrinkage":
        sd = _sd_prior("sd_shrinkage", priors, priors.shrinkage_sd_mean, "arm")
        mean = _anchored_means(
            "mean_shrinkage",
            pm.Normal.dist(mu=priors.shrinkage_mean_mu, sigma=priors.shrinkage_mean_sigma, shape=3),
            ["non_kmp", "kmp_combination", "kmp_sirolimus"],
            sd,
            s,
            design,
            icc,
            anchors,
            "arm",
        )
        w_c = s["kmp_combination"] / s["kmp"]
        w_a = 1.0 - w_c
        kmp_mean = w_c * mean[1] + w_a * mean[2]
        kmp_sd = pt.sqrt(
            w_c * (sd[1] ** 2 + (mean[1] - kmp_mean) ** 2)
            + w_a * (sd[2] ** 2 + (mean[2] - kmp_mean) ** 2)
        )
        pm.Deterministic("mean_shrinkage_kmp", kmp_mean)
        pm.Deterministic("kmp_minus_non_kmp", kmp_mean - mean[0])
        pm.Deterministic("combination_minus_sirolimus", mean[1] - mean[2])
        return {
            "non_kmp": q(mean[0], sd[0], s["non_kmp"]),
            "kmp_combination": q(mean[1], sd[1], s["kmp_combination"]),
            "kmp_sirolimus": q(mean[2], sd[2], s["kmp_sirolimus"]),
            "kmp": q(kmp_mean, kmp_sd, s["kmp"]),
        }
    raise ValueError(f"unknown block {block.name!r}")


QUANTITIES = {
    "age": ["kmp", "non_kmp"],
    "severity": ["score_6m", "change_6m", "score_12m", "change_12m"],
    "shrinkage": ["non_kmp", "kmp_combination", "kmp_sirolimus", "kmp"],
}
COORDS = {
    "age": {"group": ["kmp", "non_kmp"]},
    "severity": {"visit": ["0m", "6m", "12m"], "followup": ["6m", "12m"]},
    "shrinkage": {"arm": ["non_kmp", "kmp_combination", "kmp_sirolimus"]},
}

DESCRIPTIONS = {
    "age_difference_months": "Mean age at treatment, non-KMP minus KMP (months)",
    "mean_age": "Mean age at treatment by KMP status (months)",
    "decrease": "Mean decrease in severity score from baseline (points; positive = better)",
    "mean_score": "Mean severity score at the visit (points, 0-10)",
    "kmp_minus_non_kmp": "Mean tumour shrinkage, KMP minus non-KMP (percentage points)",
    "combination_minus_sirolimus": "Mean tumour shrinkage in KMP patients, combination minus "
    "sirolimus alone (percentage points; an association: combination went to severe cases)",
    "mean_shrinkage": "Mean tumour shrinkage by group (%)",
    "mean_shrinkage_kmp": "Mean tumour shrinkage in KMP patients (%)",
    "icc": "Intra-class correlation of center (not informed by the abstract: posterior = prior)",
}

# estimands reported per block (population quantities; identical under every reading)
ESTIMANDS: dict[str, list[str]] = {
    "age": ["age_difference_months", "mean_age"],
    "severity": ["decrease", "mean_score"],
    "shrinkage": [
        "kmp_minus_non_kmp",
        "combination_minus_sirolimus",
        "mean_shrinkage",
        "mean_shrinkage_kmp",
    ],
}


# ---------------------------------------------------------------------------------------------
# which quantities a reading is about


@dataclass(frozen=True)
class ReadingMap:
    kind: str  # "one_sample", "pooled", "welch", "group_means"
    quantities: tuple[str, ...]
    df: float | None  # degrees of freedom of the interval (None: Welch, from the parameters)
    p_test: str  # "same", "one_sample", "two_sample"
    p_quantities: tuple[str, ...] = ()
    p_positive: bool = False  # only the positive tail counts (the text states the sign)


def reading_map(statement: Statement, reading: Interpretation, sizes: Mapping[str, int]):
    """Translate an evidence interpretation into quantities and tests."""
    tp = statement.timepoint
    if reading.estimand == "mean_at_visit":
        qs = (reading.groups[0],) if reading.groups else (f"score_{tp}",)
        kind = "one_sample"
    elif reading.estimand == "mean_change":
        qs, kind = (f"change_{tp}",), "one_sample"
    elif reading.estimand == "mean_difference":
        qs = tuple(reading.groups)
        kind = "welch" if reading.test == "t_two_sample_welch" else "pooled"
    elif reading.estimand == "group_means":
        qs, kind = tuple(reading.groups), "group_means"
    else:
        raise ValueError(f"{statement.statistic}: reading {reading.id!r} has no estimand")
    n = [sizes.get(q, sizes["all"]) for q in qs]
    df = {"one_sample": n[0] - 1, "pooled": sum(n) - 2}.get(kind)
    if reading.p_test == "same" or statement.p is None:
        return ReadingMap(kind, qs, df, "same")
    positive = reading.p_direction == "positive"
    if reading.p_test == "t_paired":
        return ReadingMap(kind, qs, df, "one_sample", (f"change_{tp}",), positive)
    return ReadingMap(kind, qs, df, "two_sample", tuple(reading.p_groups), positive)


def _n(q: str, sizes: Mapping[str, int]) -> int:
    return sizes.get(q, sizes["all"])


def same_test_p_range(statement: Statement, rm: ReadingMap, sizes) -> tuple[float, float]:
    """Range of the p-value of the interval's own test over the rounding cells of its ends."""
    ci = statement.ci
    half = 0.5 * 10.0 ** (-ci.decimals)
    if rm.kind == "welch":
        na, nb = (_n(q, sizes) for q in rm.quantities)
        dfs = [min(na, nb) - 1, na + nb - 2]
    else:
        dfs = [rm.df]
    ps = []
    for df in dfs:
        tq = stats.t.ppf(0.975, df)
        for lo in (ci.lower - half, ci.lower + half):
            for up in (ci.upper - half, ci.upper + half):
                est, se = (lo + up) / 2, (up - lo) / (2 * tq)
                ps.append(float(2 * stats.t.sf(abs(est / se), df)))
    return min(ps), max(ps)


def same_test_check(statement: Statement, reading: Interpretation, sizes) -> str:
    """'' if the reading is compatible with the printed p bound, else why it has likelihood 0.

    Only for readings whose p-value is the interval's own test: then the bound is a function of
    the printed pair, checked at every corner of the rounding cells (the p-value is monotone in
    each end). A bound met at some corners but not others is an error (not modelled)."""
    rm = reading_map(statement, reading, sizes)
    if rm.p_test != "same" or statement.p is None or rm.kind == "group_means":
        return ""
    lo, hi = same_test_p_range(statement, rm, sizes)
    ok_lo, ok_hi = statement.p.holds(lo), statement.p.holds(hi)
    if ok_lo and ok_hi:
        return ""
    if ok_lo != ok_hi:
        raise ValueError(f"{statement.statistic}: p bound met only in part of the rounding cell")
    return (
        f"the interval's own test gives p in [{lo:.2g}, {hi:.2g}], which contradicts the printed "
        f"p {statement.p.relation} {statement.p.bound:g}"
    )


# ---------------------------------------------------------------------------------------------
# likelihood pieces (pytensor)


def _normal_logpdf(x, mu, sigma):
    return -0.5 * ((x - mu) / sigma) ** 2 - pt.log(sigma) - 0.5 * math.log(2 * math.pi)


def _sd_logpdf(s, ref_var, df):
    """Log density of a sample SD ``s`` with df * s^2 / ref_var ~ chi-square(df)."""
    x = df * s**2 / ref_var
    chi2 = (df / 2 - 1) * pt.log(x) - x / 2 - (df / 2) * math.log(2) - pt.gammaln(df / 2)
    return chi2 + pt.log(2 * df * s / ref_var)


def t_quantile_975(df):
    """t_{0.975, df} by the Cornish-Fisher expansion (error < 1e-4 for df >= 5)."""
    z = Z975
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


def _log_normal_cdf(x):
    return pm.logcdf(pm.Normal.dist(0.0, 1.0), x)


def interval_loglik(rm: ReadingMap, qs: Mapping[str, Quantity], lower, upper):
    """Log density of the exact printed pair under a reading, and what the reading pins:
    {quantity: (sample mean or None, sample SD or None)} for the p-bound term."""
    if rm.kind == "one_sample":
        q = qs[rm.quantities[0]]
        tq = float(stats.t.ppf(0.975, q.n - 1))
        est = (lower + upper) / 2
        a = math.sqrt(q.n) / (2 * tq)
        s = (upper - lower) * a
        ll = (
            _normal_logpdf(est, q.mean, q.sd * pt.sqrt(q.deff / q.n))
            + _sd_logpdf(s, q.sd**2, q.n - 1)
            + math.log(a)
        )
        return ll, {rm.quantities[0]: (est, s)}
    if rm.kind in ("pooled", "welch"):
        qa, qb = (qs[n] for n in rm.quantities)
        est = (lower + upper) / 2
        mean_sd = pt.sqrt(qa.deff * qa.sd**2 / qa.n + qb.deff * qb.sd**2 / qb.n)
        ll = _normal_logpdf(est, qa.mean - qb.mean, mean_sd)
        if rm.kind == "pooled":
            df = qa.n + qb.n - 2
            c = math.sqrt(1 / qa.n + 1 / qb.n)
            a = 1 / (2 * float(stats.t.ppf(0.975, df)) * c)
            sp = (upper - lower) * a
            ref = ((qa.n - 1) * qa.sd**2 + (qb.n - 1) * qb.sd**2) / df
            ll = ll + _sd_logpdf(sp, ref, df) + math.log(a)
        else:
            v = qa.sd**2 / qa.n + qb.sd**2 / qb.n
            nu = v**2 / (qa.sd**4 / (qa.n**2 * (qa.n - 1)) + qb.sd**4 / (qb.n**2 * (qb.n - 1)))
            a = 1 / (2 * t_quantile_975(nu))
            se = (upper - lower) * a
            ll = ll + _sd_logpdf(se, v, nu) + pt.log(a)
        return ll, {}
    if rm.kind == "group_means":
        qa, qb = (qs[n] for n in rm.quantities)
        ll = _normal_logpdf(lower, qa.mean, qa.sd * pt.sqrt(qa.deff / qa.n))
        ll = ll + _normal_logpdf(upper, qb.mean, qb.sd * pt.sqrt(qb.deff / qb.n))
        return ll, {rm.quantities[0]: (lower, None), rm.quantities[1]: (upper, None)}
    raise ValueError(rm.kind)


def p_bound_logprob(rm: ReadingMap, qs: Mapping[str, Quantity], pinned: dict, p: PBoundRecord):
    """Log probability that the p-value of another test meets the printed bound."""
    below = p.relation in ("<", "<=")
    if rm.p_test == "one_sample":
        q = qs[rm.p_quantities[0]]
        tc = float(stats.t.ppf(1 - p.bound / 2, q.n - 1))
        m, s = pinned.get(rm.p_quantities[0], (None, None))
        se = (s if s is not None else q.sd) / math.sqrt(q.n)
        centre = (m if m is not None else q.mean) / se
        spread = pt.sqrt(q.deff) * (q.sd / math.sqrt(q.n)) / se if m is None else None
        return _two_sided_exceed(centre, spread, tc, below, rm.p_positive)
    a_name, b_name = rm.p_quantities
    qa, qb = qs[a_name], qs[b_name]
    df = qa.n + qb.n - 2
    c = math.sqrt(1 / qa.n + 1 / qb.n)
    tc = float(stats.t.ppf(1 - p.bound / 2, df))
    ma, sa = pinned.get(a_name, (None, None))
    mb, sb = pinned.get(b_name, (None, None))
    if ma is not None and mb is not None and sa is None and sb is None:
        # both means pinned: P(s_p < |diff| / (tc c)) with df s_p^2 / ref ~ chi-square(df)
        ref = ((qa.n - 1) * qa.sd**2 + (qb.n - 1) * qb.sd**2) / df
        x = df * ((ma - mb) / (tc * c)) ** 2 / ref
        prob = pt.gammainc(df / 2, x / 2)
        prob = prob if below else 1 - prob
        if rm.p_positive and below:  # a significant result of the stated sign
            prob = pt.switch(ma - mb > 0, prob, 0.0)
        return pt.log(pt.clip(prob, 1e-300, 1.0))
    var_a = qa.sd**2 if sa is None else sa**2
    var_b = qb.sd**2 if sb is None else sb**2
    se = c * pt.sqrt(((qa.n - 1) * var_a + (qb.n - 1) * var_b) / df)
    centre = ((qa.mean if ma is None else ma) - (qb.mean if mb is None else mb)) / se
    spread_var = (qa.deff * qa.sd**2 / qa.n if ma is None else 0.0) + (
        qb.deff * qb.sd**2 / qb.n if mb is None else 0.0
    )
    return _two_sided_exceed(centre, pt.sqrt(spread_var) / se, tc, below, rm.p_positive)


def _two_sided_exceed(centre, spread, tc, below: bool, positive: bool = False):
    """log P(|T| > tc) (below=True: p below its bound) or log P(|T| <= tc), T ~ N(centre,
    spread^2); with ``positive`` (the text states the sign) a p below its bound means T > tc.
    A pinned statistic (spread None) gives a hard 0 / -inf via a steep logistic."""
    if spread is None:
        stat = centre if (positive and below) else pt.abs(centre)
        margin = (stat - tc) * (1.0 if below else -1.0)
        return -pt.log1p(pt.exp(-50.0 * margin))
    hi = _log_normal_cdf((centre - tc) / spread)
    if positive and below:
        return hi
    lo = _log_normal_cdf((-centre - tc) / spread)
    log_exceed = pt.logaddexp(hi, lo)
    return log_exceed if below else pt.log1mexp(pt.minimum(log_exceed, -1e-12))


# ---------------------------------------------------------------------------------------------
# the builder


@dataclass(frozen=True)
class ModelOptions:
    """``icc``: a fixed ICC (design-effect sensitivity) instead of its prior; ``p_bounds``:
    include the printed p bounds (False only for the predictive check of a reading whose own
    test contradicts its bound)."""

    icc: float | None = None
    p_bounds: bool = True
    design: CenterDesign = field(default_factory=CenterDesign)


def build_block_model(
    block: Block,
    joint: Mapping[str, str],
    priors: SummaryPriors,
    options: ModelOptions = ModelOptions(),
) -> pm.Model:
    """The summary-data model of one block under one joint reading (statistic -> reading id).

    Priors are passed explicitly (:class:`SummaryPriors`); nothing is sampled here. Free
    variables: the block's population means and SDs, ``icc`` (unless fixed) and the exact
    printed ends ``exact_lower`` / ``exact_upper`` (dims ``statement``), uniform in their
    rounding cells; one potential ``loglik_<statistic>`` per statement, plus the log volume of
    the rounding cells so that the marginal likelihood is the probability of the printed
    numbers (times the density of the rest).
    """
    stmts = block.statements
    coords = {
        **COORDS[block.name],
        "statement": [s.statistic for s in stmts],
        "quantity": QUANTITIES[block.name],
    }
    half = np.array([0.5 * 10.0 ** (-s.ci.decimals) for s in stmts])
    lower = np.array([s.ci.lower for s in stmts])
    upper = np.array([s.ci.upper for s in stmts])
    with pm.Model(coords=coords) as model:
        if options.icc is None:
            icc = pm.Beta("icc", alpha=priors.icc_alpha, beta=priors.icc_beta)
        else:  # a data container, so one compiled function serves every fixed value
            icc = pm.Deterministic("icc", pm.Data("icc_fixed", float(options.icc)))
        anchors = {}
        for st in stmts:
            reading = next(r for r in st.readings if r.id == joint[st.statistic])
            if reading.estimand == "group_means":
                anchors.update(zip(reading.groups, (st.ci.lower, st.ci.upper), strict=True))
        qs = _quantities(block, priors, options.design, icc, anchors)
        names = QUANTITIES[block.name]
        # population mean, SD and design effect of each summarised quantity (predictive checks)
        pm.Deterministic("quantity_mean", pt.stack([qs[n].mean for n in names]), dims="quantity")
        pm.Deterministic("quantity_sd", pt.stack([qs[n].sd for n in names]), dims="quantity")
        pm.Deterministic(
            "quantity_deff",
            pt.stack([pt.as_tensor(qs[n].deff).astype("float64") for n in names]),
            dims="quantity",
        )
        # the printed numbers are data, so one compiled sampler serves other printed values
        lower_d = pm.Data("printed_lower", lower, dims="statement")
        upper_d = pm.Data("printed_upper", upper, dims="statement")
        half_d = pm.Data("rounding_half_width", half, dims="statement")
        lo = pm.Uniform(
            "exact_lower", lower=lower_d - half_d, upper=lower_d + half_d, dims="statement"
        )
        up = pm.Uniform(
            "exact_upper", lower=upper_d - half_d, upper=upper_d + half_d, dims="statement"
        )
        pm.Potential("rounding_cell_log_volume", 2 * pt.sum(pt.log(2 * half_d)))
        for i, st in enumerate(stmts):
            reading = next(r for r in st.readings if r.id == joint[st.statistic])
            rm = reading_map(st, reading, block.sizes)
            ll, pinned = interval_loglik(rm, qs, lo[i], up[i])
            if options.p_bounds and st.p is not None and rm.p_test != "same":
                ll = ll + p_bound_logprob(rm, qs, pinned, st.p)
            pm.Potential(f"loglik_{st.statistic}", ll)
    return model
