"""Models that need only the published aggregate numbers: one proportion per outcome.

Estimand: for each outcome (response at 6 and 12 months, KMP prevalence, share of KMP patients
given combination therapy, permanent discontinuation for toxicity, drug-related death) the
probability ``rate[outcome]`` that a patient like those in the cohort has the event.

Likelihood: a count ``k`` of ``n`` is Binomial(n, rate). A printed percentage is an observation
of the *rounded* proportion, so its likelihood is the probability that the count lands in the set
of counts consistent with the rounding (and, with an uncertain denominator, averaged over the
candidate denominators with equal weight):

    L(rate) = sum_n w_n * sum_{k in S_n} Binomial(k | n, rate)

With the default reading of the abstract (denominator 52) each set holds one count, and the
posterior under a Beta(a, b) prior is Beta(a + k, b + n - k) in closed form
(:func:`closed_form_posterior`), which the tests use as the reference.

Priors are explicit: either ``rate`` on the probability scale (default Beta(1, 1)) or
``logit_rate`` on the log-odds scale (e.g. Normal(0, 1.5)); the spec in models/ lists a second
prior family for sensitivity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import special, stats

from khe_bayes.study.evidence import CountRecord, Evidence, PercentageRecord, consistent_counts
from khe_bayes.toolkit.priors import Prior
from khe_bayes.toolkit.sampling import SamplerSettings
from khe_bayes.toolkit.summary import Threshold

DEFAULT_RATE_PRIOR = Prior(dist="Beta", alpha=1, beta=1)


class ProportionPriors(BaseModel):
    """Exactly one of ``rate`` (probability scale) or ``logit_rate`` (log-odds scale)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str = "default"
    rate: Prior | None = None
    logit_rate: Prior | None = None

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.rate is None) == (self.logit_rate is None):
            raise ValueError("give exactly one of 'rate' or 'logit_rate'")
        if (
            self.rate is not None
            and self.rate.support not in ("unit",)
            and not (
                self.rate.dist == "Uniform"
                and self.rate.params["lower"] >= 0
                and self.rate.params["upper"] <= 1
            )
        ):
            raise ValueError("a 'rate' prior must live on [0, 1] (Beta or Uniform(0, 1))")
        if self.logit_rate is not None and self.logit_rate.support != "real":
            raise ValueError("a 'logit_rate' prior must be on the real line (e.g. Normal)")
        return self

    def describe(self) -> str:
        if self.rate is not None:
            return f"rate ~ {self.rate.label()}"
        return f"logit(rate) ~ {self.logit_rate.label()}"


class OutcomeSpec(BaseModel):
    """One outcome: which evidence record it comes from and under which interpretation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    evidence: str
    interpretation: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class ProportionData:
    """The data of one outcome: candidate (events, n) pairs and their prior weights."""

    name: str
    description: str
    evidence_id: str
    counts: tuple[tuple[int, int], ...]

    @property
    def weights(self) -> np.ndarray:
        """Prior weight of each pair: candidate denominators are equally likely, and the counts
        within one denominator are summed (not averaged), as the rounded observation implies."""
        n_denominators = len({n for _, n in self.counts})
        return np.full(len(self.counts), 1.0 / n_denominators)

    @property
    def is_single_count(self) -> bool:
        return len(self.counts) == 1


def outcome_data(evidence: Evidence, outcome: OutcomeSpec) -> ProportionData:
    """Turn an evidence record into the counts a proportion model needs."""
    record = evidence[outcome.evidence]
    if isinstance(record, CountRecord):
        if record.total is None:
            raise ValueError(f"evidence {record.id!r} is a bare count, not events out of a total")
        counts = ((record.events, record.total),)
    elif isinstance(record, PercentageRecord):
        counts = tuple(consistent_counts(record, outcome.interpretation))
        if not counts:
            raise ValueError(f"no integer count is consistent with evidence {record.id!r}")
    else:
        raise ValueError(f"evidence {record.id!r} of kind {record.kind!r} is not a proportion")
    return ProportionData(
        name=outcome.name,
        description=outcome.description or record.description,
        evidence_id=record.id,
        counts=counts,
    )


def build_proportion_model(data: list[ProportionData], priors: ProportionPriors) -> pm.Model:
    """Independent proportions, one per outcome, dim ``outcome``. Builds only; never samples.

    Variables: ``rate`` (dim outcome; Deterministic when the prior is on ``logit_rate``), and per
    outcome either an observed Binomial ``events_<name>`` (one consistent count) or a Potential
    ``rounded_<name>`` (several counts consistent with a printed percentage).
    """
    names = [d.name for d in data]
    if len(set(names)) != len(names):
        raise ValueError("outcome names must be unique")
    with pm.Model(coords={"outcome": names}) as model:
        if priors.rate is not None:
            rate = priors.rate.create("rate", dims="outcome")
        else:
            logit_rate = priors.logit_rate.create("logit_rate", dims="outcome")
            rate = pm.Deterministic("rate", pm.math.invlogit(logit_rate), dims="outcome")
        for i, d in enumerate(data):
            if d.is_single_count:
                ((k, n),) = d.counts
                observed = pm.Data(f"events_observed_{d.name}", np.int64(k))
                pm.Binomial(f"events_{d.name}", n=n, p=rate[i], observed=observed)
            else:
                ks = np.array([k for k, _ in d.counts])
                ns = np.array([n for _, n in d.counts])
                logp = pm.logp(pm.Binomial.dist(n=ns, p=rate[i]), ks)
                pm.Potential(f"rounded_{d.name}", pt.logsumexp(logp + np.log(d.weights)))
    return model


# --- closed forms: the independent reference for the conjugate case ----------------------------


@dataclass(frozen=True)
class BetaMixture:
    """A finite mixture of Beta distributions (the exact posterior under a Beta prior)."""

    alphas: np.ndarray
    betas: np.ndarray
    weights: np.ndarray

    def mean(self) -> float:
        return float(np.sum(self.weights * self.alphas / (self.alphas + self.betas)))

    def var(self) -> float:
        a, b, w = self.alphas, self.betas, self.weights
        m = a / (a + b)
        second = m * (a + 1) / (a + b + 1)
        return float(np.sum(w * second) - self.mean() ** 2)

    def sd(self) -> float:
        return float(np.sqrt(self.var()))

    def cdf(self, x: float) -> float:
        return float(np.sum(self.weights * stats.beta.cdf(x, self.alphas, self.betas)))

    def sf(self, x: float) -> float:
        return 1.0 - self.cdf(x)

    def ppf(self, q: float) -> float:
        from scipy.optimize import brentq

        if len(self.alphas) == 1:
            return float(stats.beta.ppf(q, self.alphas[0], self.betas[0]))
        return float(brentq(lambda x: self.cdf(x) - q, 0.0, 1.0, xtol=1e-12))


def closed_form_posterior(data: ProportionData, prior: Prior) -> BetaMixture:
    """Exact posterior of ``rate`` under a Beta(a, b) prior.

    Each consistent (k, n) contributes Beta(a + k, b + n - k) with weight proportional to its
    prior weight times the beta-binomial marginal likelihood C(n, k) B(a + k, b + n - k) / B(a, b).
    """
    if prior.dist != "Beta":
        raise ValueError("closed form needs a Beta prior")
    a, b = prior.params["alpha"], prior.params["beta"]
    ks = np.array([k for k, _ in data.counts], dtype=float)
    ns = np.array([n for _, n in data.counts], dtype=float)
    log_w = (
        np.log(data.weights)
        + special.gammaln(ns + 1)
        - special.gammaln(ks + 1)
        - special.gammaln(ns - ks + 1)
        + special.betaln(a + ks, b + ns - ks)
        - special.betaln(a, b)
    )
    w = np.exp(log_w - special.logsumexp(log_w))
    return BetaMixture(alphas=a + ks, betas=b + ns - ks, weights=w)


def rule_of_three_upper(n: int) -> float:
    """The frequentist rule-of-three approximate one-sided 95% upper bound after 0 events in n."""
    return 3.0 / n


def exact_zero_event_upper(n: int, level: float = 0.95) -> float:
    """Exact (Clopper-Pearson) one-sided upper bound after 0 events in n: 1 - (1 - level)^(1/n)."""
    return 1.0 - (1.0 - level) ** (1.0 / n)


class AggregateProportionSpec(BaseModel):
    """Spec of the ``aggregate_proportion`` family (see models/aggregate_proportions.toml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    family: Literal["aggregate_proportion"]
    description: str = ""
    evidence: str | None = Field(
        default=None, description="evidence TOML relative to the spec; default: the packaged one"
    )
    outcome: list[OutcomeSpec] = Field(min_length=1)
    priors: ProportionPriors = ProportionPriors(label="uniform_beta", rate=DEFAULT_RATE_PRIOR)
    sensitivity: list[ProportionPriors] = Field(default_factory=list)
    thresholds: list[Threshold] = Field(default_factory=list)
    sampler: SamplerSettings = SamplerSettings()

    @model_validator(mode="after")
    def _labels_unique(self):
        labels = [p.label for p in self.prior_sets()]
        if len(set(labels)) != len(labels):
            raise ValueError(f"prior labels must be unique, got {labels}")
        return self

    def prior_sets(self) -> list[ProportionPriors]:
        """The default priors first, then the sensitivity priors."""
        return [self.priors, *self.sensitivity]


@dataclass(frozen=True)
class GridPosterior:
    """A posterior of ``rate`` on a fine grid of the log-odds (for priors without a closed form)."""

    rate: np.ndarray
    weights: np.ndarray

    def mean(self) -> float:
        return float(np.sum(self.weights * self.rate))

    def sd(self) -> float:
        return float(np.sqrt(np.sum(self.weights * (self.rate - self.mean()) ** 2)))

    def cdf(self, x: float) -> float:
        return float(np.sum(self.weights[self.rate <= x]))

    def ppf(self, q: float) -> float:
        return float(np.interp(q, np.cumsum(self.weights), self.rate))


def grid_posterior(
    data: ProportionData, priors: ProportionPriors, n_grid: int = 200_001
) -> GridPosterior:
    """Posterior of ``rate`` by quadrature on an even grid of logit(rate) in [-20, 20].

    The prior density comes from the PyMC distribution itself; the likelihood is the same sum over
    consistent counts as in :func:`build_proportion_model`, computed with scipy.
    """
    x = np.linspace(-20.0, 20.0, n_grid)
    rate = special.expit(x)
    if priors.logit_rate is not None:
        log_prior = pm.logp(priors.logit_rate.dist_obj(), x).eval()
    else:  # density of rate times the Jacobian d rate / d x = rate (1 - rate)
        log_prior = pm.logp(priors.rate.dist_obj(), rate).eval() + np.log(rate) + np.log1p(-rate)
    ks = np.array([k for k, _ in data.counts])[:, None]
    ns = np.array([n for _, n in data.counts])[:, None]
    loglik = special.logsumexp(
        stats.binom.logpmf(ks, ns, rate[None, :]) + np.log(data.weights)[:, None], axis=0
    )
    log_post = log_prior + loglik
    w = np.exp(log_post - special.logsumexp(log_post))
    return GridPosterior(rate=rate, weights=w)
