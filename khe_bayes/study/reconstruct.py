"""Pseudo-IPD: patient-level datasets consistent with every number the abstract reports.

The paper's patient data are not public. Each reconstructed dataset is a plausible cohort that
reproduces, to their printed rounding, the reported statistics under the interpretation recorded
for each (:data:`INTERPRETATIONS`), re-computed with the procedure that interpretation names.
Drawing many datasets with different seeds carries the reconstruction's own uncertainty (which
patients responded, how scores and ages are spread, which center treated whom) into the
posterior.

Everything the abstract does NOT give is a generator parameter with a stated prior
(:data:`DEFAULT_ASSUMPTIONS`), drawn afresh for every dataset, overridable from TOML
(:func:`load_assumptions`) or the command line (``--assume NAME=VALUE``), and listed in the
report's Assumptions table. The drawn values are kept in ``frame.attrs["assumptions"]``. A draw
that misses a published bound is rejected whole, so across datasets the parameters follow their
prior conditioned on the published numbers.

How each block is drawn (dataset i uses child seed i of the user's seed):

- design: 52 patients, 37 KMP, 21 of them on combination therapy, 15 non-KMP on sirolimus alone;
- centers (:class:`CenterSettings`): probabilities from a Dirichlet with the given mean shares
  and concentration, then every center gets one patient and the rest are multinomial; each
  center gets a true effect ``u_c ~ Normal(0, center_heterogeneity)`` that shifts its patients'
  outcomes (below), so the IPD models have real between-center variation to find;
- ages: gamma-shaped draws per group, transformed exactly to group means and SDs so that the
  pooled t interval of (non-KMP - KMP) is 28.00 +/- 13.61 months; the KMP mean age and CV are
  parameters;
- severity scores (integers 0-10): the multiset of 6- and 12-month scores is drawn uniformly from
  all count vectors on a window of four consecutive integers whose one-sample t interval prints
  as reported (a GRIM/SPRITE-style exact search); baseline scores are Normal(group mean,
  baseline_sd) rounded and clipped to 4-9, with the group means parameters (combination highest:
  it went to the most severe patients); follow-up scores are assigned by rank of the earlier
  score + u_c + noise (``severity_tracking_noise``), so they rarely rise;
- shrinkage (%): normal draws transformed exactly to the group mean and SD implied by each
  reported interval, assigned by rank of a latent score with a combination shift, a baseline
  severity slope and u_c; the draw is rejected unless combination vs alone has p > 0.05;
- response: the non-responders (2 at 6 months, 1 at 12 months, one of the two) are drawn with
  log-weight ``a * severity_6m + b * kmp - u_c`` (a, b parameters).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import stats

from khe_bayes.study.evidence import Evidence, IntervalRecord, consistent_counts, rounding_interval
from khe_bayes.study.ipd import COLUMNS, validate_ipd
from khe_bayes.study.statistics import recompute
from khe_bayes.toolkit.errors import InputError
from khe_bayes.toolkit.freq import PROCEDURES, FreqResult
from khe_bayes.toolkit.priors import Prior, prior
from khe_bayes.toolkit.tomlio import read_toml

DEFAULT_CENTERS = (
    "West China Hospital of Sichuan University",
    "Children's Hospital of Fudan University",
    "West China Second University Hospital",
    "Chengdu Women and Children's Central Hospital",
    "Chengdu Shangjin Nanhu Hospital",
    "Shanghai Children's Hospital",
)

# statistic -> interpretation the reconstruction reproduces by default
INTERPRETATIONS = {
    "age_difference_kmp": "mean_difference_months_pooled_t",
    "severity_6m": "mean_score_at_visit",
    "severity_12m": "mean_score_at_visit",
    "kmp_vs_non_kmp_response": "mean_shrinkage_non_kmp",
    "combination_vs_alone_shrinkage": "mean_shrinkage_kmp",
}
SEVERITY_INTERPRETATIONS = ("mean_score_at_visit", "mean_change_from_baseline")


@dataclass(frozen=True)
class CenterSettings:
    """How patients are allocated to centers.

    ``shares`` are the expected shares (default equal); ``concentration`` is the Dirichlet
    concentration (sum of its parameters): large means allocations close to the shares, small
    means very unequal centers. Default 6 centers, equal shares, concentration 6 (each center's
    share has a Beta(1, 5) marginal, so a 1-to-5 spread in size is common).
    """

    names: tuple[str, ...] = DEFAULT_CENTERS
    shares: tuple[float, ...] | None = None
    concentration: float = 6.0

    def __post_init__(self):
        if len(self.names) < 2:
            raise ValueError("need at least 2 centers")
        if self.shares is not None and (
            len(self.shares) != len(self.names) or min(self.shares) <= 0
        ):
            raise ValueError("give one positive share per center")
        if self.concentration <= 0:
            raise ValueError("concentration must be > 0")

    @classmethod
    def with_count(cls, n_centers: int, concentration: float = 6.0) -> CenterSettings:
        if n_centers <= len(DEFAULT_CENTERS):
            names = DEFAULT_CENTERS[:n_centers]
        else:
            names = tuple(f"center_{i + 1:02d}" for i in range(n_centers))
        return cls(names=names, concentration=concentration)

    def allocate(self, n: int, rng: np.random.Generator) -> np.ndarray:
        k = len(self.names)
        shares = np.array(self.shares or [1.0] * k, dtype=float)
        probs = rng.dirichlet(self.concentration * shares / shares.sum())
        counts = 1 + rng.multinomial(n - k, probs)
        return rng.permutation(np.repeat(np.arange(k), counts))


# --- assumptions: every quantity the abstract does not give ---------------------------------


class Assumption(BaseModel):
    """One generator parameter the abstract does not report: a prior (drawn afresh for every
    dataset) or a fixed ``value`` (a point-mass prior, e.g. for a sensitivity analysis)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str
    prior: Prior | None = None
    value: float | None = None
    earlier_constant: str = ""  # what the reconstruction used before this was a parameter

    @model_validator(mode="after")
    def _one_of(self):
        if (self.prior is None) == (self.value is None):
            raise ValueError("give either a prior or a fixed value")
        return self

    def draw(self, rng: np.random.Generator) -> float:
        if self.value is not None:
            return float(self.value)
        return draw_prior(self.prior, rng)

    def label(self) -> str:
        return f"fixed at {self.value:g}" if self.value is not None else self.prior.label()


def draw_prior(p: Prior, rng: np.random.Generator) -> float:
    """One numpy draw from a :class:`Prior` (no PyTensor graph: the generator is pure numpy)."""
    k = p.params
    makers = {
        "Normal": lambda: stats.norm(k.get("mu"), k.get("sigma")),
        "StudentT": lambda: stats.t(k.get("nu"), k.get("mu"), k.get("sigma")),
        "Cauchy": lambda: stats.cauchy(k.get("alpha"), k.get("beta")),
        "Logistic": lambda: stats.logistic(k.get("mu"), k.get("s")),
        "Uniform": lambda: stats.uniform(k.get("lower"), k.get("upper", 0) - k.get("lower", 0)),
        "Beta": lambda: stats.beta(k.get("alpha"), k.get("beta")),
        "HalfNormal": lambda: stats.halfnorm(0, k.get("sigma")),
        "HalfCauchy": lambda: stats.halfcauchy(0, k.get("beta")),
        "HalfStudentT": lambda: stats.t(k.get("nu"), 0, k.get("sigma")),
        "Exponential": lambda: stats.expon(0, 1 / k.get("lam", 1)),
        "Gamma": lambda: stats.gamma(k.get("alpha"), scale=1 / k.get("beta", 1)),
        "InverseGamma": lambda: stats.invgamma(k.get("alpha"), scale=k.get("beta")),
        "LogNormal": lambda: stats.lognorm(k.get("sigma"), scale=np.exp(k.get("mu", 0))),
    }
    x = float(makers[p.dist]().rvs(random_state=rng))
    return abs(x) if p.dist == "HalfStudentT" else x


# Defaults and why (each was a constant of the reconstruction before issue 15; the priors are
# wide around those constants and stay within what the abstract's words allow).
DEFAULT_ASSUMPTIONS: dict[str, Assumption] = {
    "baseline_mean_non_kmp": Assumption(
        description="Mean baseline severity score (0-10) of non-KMP patients; the abstract "
        "gives only the 6- and 12-month intervals",
        prior=prior("Uniform", lower=3.5, upper=6.5),
        earlier_constant="4.5",
    ),
    "baseline_shift_kmp": Assumption(
        description="Baseline severity, KMP on sirolimus alone minus non-KMP (score points)",
        prior=prior("Uniform", lower=0.0, upper=2.0),
        earlier_constant="1.0",
    ),
    "baseline_shift_combination": Assumption(
        description="Baseline severity, combination minus KMP on sirolimus alone (points; "
        "positive because combination went to 'KMP patients with severe symptoms')",
        prior=prior("Uniform", lower=0.5, upper=3.0),
        earlier_constant="1.5",
    ),
    "baseline_sd": Assumption(
        description="Within-group SD of the baseline severity score (before rounding to "
        "integers and clipping to 4-9)",
        prior=prior("Uniform", lower=0.5, upper=1.5),
        earlier_constant="0.9",
    ),
    "severity_tracking_noise": Assumption(
        description="How loosely follow-up scores follow the earlier score: SD of the noise "
        "added to the earlier score before ranking (0 = scores keep their rank)",
        prior=prior("Uniform", lower=0.25, upper=1.5),
        earlier_constant="0.75",
    ),
    "nonresponse_severity_log_odds": Assumption(
        description="Who fails to respond: log-odds of being a non-responder per point of "
        "6-month severity score",
        prior=prior("Uniform", lower=0.0, upper=1.5),
        earlier_constant="1.0",
    ),
    "nonresponse_kmp_log_odds": Assumption(
        description="Who fails to respond: log-odds of being a non-responder, KMP vs non-KMP "
        "(at equal severity)",
        prior=prior("Normal", mu=0.0, sigma=1.0),
        earlier_constant="0 (no relation)",
    ),
    "kmp_mean_age_months": Assumption(
        description="Mean age of KMP patients (months); only the difference to non-KMP "
        "patients is reported",
        prior=prior("Uniform", lower=2.0, upper=14.0),
        earlier_constant="Uniform(4, 10)",
    ),
    "kmp_age_cv": Assumption(
        description="Coefficient of variation of the KMP patients' ages",
        prior=prior("Uniform", lower=0.6, upper=1.0),
        earlier_constant="Uniform(0.6, 1.0)",
    ),
    "shrinkage_combination_shift": Assumption(
        description="Shrinkage's relation to arm: shift of the combination arm on the latent "
        "scale that orders the KMP shrinkage values (SD units); the published p > 0.05 is "
        "then enforced by redrawing",
        prior=prior("Normal", mu=0.0, sigma=0.5),
        earlier_constant="0 (random permutation)",
    ),
    "shrinkage_severity_slope": Assumption(
        description="Shrinkage's relation to baseline severity: latent shift per SD of "
        "baseline severity (SD units)",
        prior=prior("Normal", mu=0.0, sigma=0.5),
        earlier_constant="0",
    ),
    "center_heterogeneity": Assumption(
        description="True between-center SD: each center gets an effect u_c ~ Normal(0, this); "
        "it shifts the log-odds of non-response (-u_c), the 6- and 12-month score ranking "
        "(+u_c points) and the shrinkage ranking (+u_c SD units)",
        prior=prior("HalfNormal", sigma=0.5),
        earlier_constant="0 (centers independent of outcomes)",
    ),
}


class Assumptions(BaseModel):
    """The generator parameters by name (defaults: :data:`DEFAULT_ASSUMPTIONS`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    parameters: dict[str, Assumption] = Field(default_factory=lambda: dict(DEFAULT_ASSUMPTIONS))

    def draw(self, rng: np.random.Generator) -> dict[str, float]:
        return {name: a.draw(rng) for name, a in self.parameters.items()}

    def with_overrides(self, overrides: dict[str, Assumption | Prior | float]) -> Assumptions:
        """Replace some parameters: a number fixes it, a Prior replaces its prior."""
        params = dict(self.parameters)
        for name, new in overrides.items():
            if name not in params:
                known = ", ".join(sorted(params))
                raise ValueError(f"unknown assumption {name!r}; known: {known}")
            old = params[name]
            if isinstance(new, Assumption):
                params[name] = new
            elif isinstance(new, Prior):
                params[name] = old.model_copy(update={"prior": new, "value": None})
            else:
                params[name] = old.model_copy(update={"prior": None, "value": float(new)})
        return Assumptions(parameters=params)

    def table(self, centers: CenterSettings | None = None) -> pd.DataFrame:
        rows = [
            {
                "assumption": name,
                "prior": a.label(),
                "before_issue_15": a.earlier_constant,
                "description": a.description,
            }
            for name, a in self.parameters.items()
        ]
        if centers is not None:
            shares = centers.shares or (1.0,) * len(centers.names)
            rows.append(
                {
                    "assumption": "center_sizes",
                    "prior": f"1 + DirichletMultinomial(n - K, {centers.concentration:g} x "
                    f"shares), K = {len(centers.names)}, shares "
                    + ",".join(f"{s:g}" for s in shares),
                    "before_issue_15": "same",
                    "description": "Patients per center (the abstract gives neither the number "
                    "of centers nor their sizes; K from the affiliations)",
                }
            )
        return pd.DataFrame(rows)


def parse_assumption_value(text: str) -> Prior | float:
    """``"0.9"`` -> 0.9 (fixed); ``"Uniform(lower=1, upper=2)"`` -> that prior."""
    text = text.strip()
    match = re.fullmatch(r"([A-Za-z]+)\((.*)\)", text)
    if match is None:
        return float(text)
    params = {}
    for part in filter(None, (x.strip() for x in match.group(2).split(","))):
        key, _, value = part.partition("=")
        params[key.strip()] = float(value)
    return Prior(dist=match.group(1), **params)


def load_assumptions(path: str | Path, base: Assumptions | None = None) -> Assumptions:
    """A TOML file of overrides, one table per parameter::

    [baseline_sd]
    value = 0.9                       # fixed
    [nonresponse_kmp_log_odds]
    prior = { dist = "Normal", mu = 0.5, sigma = 0.5 }
    """
    raw = read_toml(Path(path))
    base = base or Assumptions()
    overrides: dict[str, Prior | float] = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict) or set(entry) - {"value", "prior"} or len(entry) != 1:
            raise InputError(
                "each assumption is a table with exactly one of 'value' or 'prior'",
                file=path,
                key=name,
            )
        try:
            overrides[name] = float(entry["value"]) if "value" in entry else Prior(**entry["prior"])
        except (TypeError, ValueError) as exc:
            raise InputError(str(exc).splitlines()[0], file=path, key=name) from None
    try:
        return base.with_overrides(overrides)
    except ValueError as exc:
        raise InputError(str(exc), file=path) from None


@dataclass(frozen=True)
class ReconstructionSettings:
    centers: CenterSettings = field(default_factory=CenterSettings)
    severity_interpretation: str = "mean_score_at_visit"
    assumptions: Assumptions = field(default_factory=Assumptions)

    def __post_init__(self):
        if self.severity_interpretation not in SEVERITY_INTERPRETATIONS:
            raise ValueError(f"severity interpretation must be one of {SEVERITY_INTERPRETATIONS}")

    def interpretations(self) -> dict[str, str]:
        return {
            **INTERPRETATIONS,
            "severity_6m": self.severity_interpretation,
            "severity_12m": self.severity_interpretation,
        }


# --- exact targets ------------------------------------------------------------------------------


def _exact_moments(ci: IntervalRecord, n_eff: float, df: float) -> tuple[float, float]:
    """Mean and SD that reproduce a t interval exactly at its printed midpoint and half-width.

    ``n_eff`` turns the SE into an SD (n for one sample; 1 / (1/n1 + 1/n2) for two)."""
    se = ci.half_width / stats.t.ppf(0.975, df)
    return ci.midpoint, se * np.sqrt(n_eff)


def _exact_sample(z: np.ndarray, mean: float, sd: float) -> np.ndarray:
    z = (z - z.mean()) / z.std(ddof=1)
    return mean + sd * z


def interval_prints_as(result: FreqResult, ci: IntervalRecord) -> bool:
    lo = rounding_interval(ci.lower, ci.decimals)
    hi = rounding_interval(ci.upper, ci.decimals)
    tol = 1e-9
    return (lo[0] - tol <= result.lower <= lo[1] + tol) and (
        hi[0] - tol <= result.upper <= hi[1] + tol
    )


@lru_cache(maxsize=16)
def integer_score_multisets(
    n: int, lower: float, upper: float, decimals: int, window: tuple[int, ...]
) -> tuple[tuple[int, ...], ...]:
    """Every count vector over the integer scores ``window`` (n patients) whose one-sample t
    interval prints as [lower, upper] (exact enumeration; a GRIM/SPRITE-style search)."""
    k = len(window)
    cuts = np.array(list(itertools.combinations(range(n + k - 1), k - 1)))
    bounds = np.column_stack([np.full(len(cuts), -1), cuts, np.full(len(cuts), n + k - 1)])
    counts = np.diff(bounds, axis=1) - 1  # stars and bars: all compositions of n into k parts
    values = np.array(window, dtype=float)
    mean = counts @ values / n
    var = (counts @ values**2 - n * mean**2) / (n - 1)
    half = stats.t.ppf(0.975, n - 1) * np.sqrt(np.clip(var, 0, None) / n)
    (lo_min, lo_max), (hi_min, hi_max) = (
        rounding_interval(lower, decimals),
        rounding_interval(upper, decimals),
    )
    tol = 1e-9
    ok = (
        (var > 0)
        & (mean - half >= lo_min - tol)
        & (mean - half <= lo_max + tol)
        & (mean + half >= hi_min - tol)
        & (mean + half <= hi_max + tol)
    )
    return tuple(tuple(int(c) for c in row) for row in counts[ok])


def _score_window(ci: IntervalRecord) -> tuple[int, ...]:
    low = max(0, int(np.floor(ci.midpoint)) - 1)
    return tuple(range(low, low + 4))


def _draw_integer_scores(ci: IntervalRecord, n: int, rng: np.random.Generator) -> np.ndarray:
    window = _score_window(ci)
    options = integer_score_multisets(n, ci.lower, ci.upper, ci.decimals, window)
    if not options:
        raise ValueError(f"no integer scores in {window} reproduce {ci.id}")
    counts = options[rng.integers(len(options))]
    return rng.permutation(np.repeat(window, counts))


# --- one dataset --------------------------------------------------------------------------------


def reconstruct_one(
    evidence: Evidence, rng: np.random.Generator, settings: ReconstructionSettings
) -> pd.DataFrame:
    """One pseudo-IPD dataset (validated against the IPD schema). The generator parameters
    drawn for it (one value per assumption, plus the true center effects) are in
    ``frame.attrs["assumptions"]`` and ``frame.attrs["center_effects"]``."""
    for _ in range(MAX_ATTEMPTS):
        try:
            return _attempt(evidence, rng, settings)
        except _Rejected:
            continue
    raise RuntimeError(
        f"no dataset reproducing the published p-value bound in {MAX_ATTEMPTS} attempts: "
        "the assumptions' priors are far from what the published numbers allow"
    )


MAX_ATTEMPTS = 500


class _Rejected(Exception):
    """This draw of the generator does not reproduce a published bound: draw everything anew
    (rejection sampling, so the generator parameters are conditioned on the published
    numbers: their distribution over accepted datasets is prior x P(published | parameters))."""


def _attempt(
    evidence: Evidence, rng: np.random.Generator, settings: ReconstructionSettings
) -> pd.DataFrame:
    n = evidence["n_analyzed"].events
    n_kmp = evidence["kmp_count"].events
    n_comb = evidence["combination_count"].events
    n_non = n - n_kmp
    g = settings.assumptions.draw(rng)
    kmp = np.r_[np.ones(n_kmp, int), np.zeros(n_non, int)]
    arm = np.array(["combination"] * n_comb + ["sirolimus"] * (n - n_comb), dtype=object)

    frame = pd.DataFrame(
        {"patient_id": [f"P{i + 1:03d}" for i in range(n)], "kmp": kmp, "arm": arm}
    )
    names = settings.centers.names
    center = settings.centers.allocate(n, rng)
    effects = g["center_heterogeneity"] * rng.normal(size=len(names))
    u = effects[center]  # each patient's true center effect
    frame["center"] = np.array(names, dtype=object)[center]
    frame["age_months"] = _draw_ages(evidence, n_kmp, n_non, rng, g)
    _add_severity(frame, evidence, rng, settings.severity_interpretation, g, u)
    frame["shrinkage_12m"] = _draw_shrinkage(evidence, frame, rng, g, u)
    _add_response(frame, evidence, rng, g, u)
    out = validate_ipd(frame.loc[:, list(COLUMNS)], source="reconstruction")
    out.attrs["assumptions"] = g
    out.attrs["center_effects"] = dict(zip(names, effects.tolist(), strict=True))
    return out


def _draw_ages(evidence, n_kmp, n_non, rng, g) -> np.ndarray:
    ci = evidence["age_difference_ci"]
    n_eff = 1 / (1 / n_kmp + 1 / n_non)
    diff, pooled_sd = _exact_moments(ci, n_eff, n_kmp + n_non - 2)
    for _ in range(1000):
        mean_kmp = g["kmp_mean_age_months"]
        sd_kmp = g["kmp_age_cv"] * mean_kmp
        var_non = ((n_kmp + n_non - 2) * pooled_sd**2 - (n_kmp - 1) * sd_kmp**2) / (n_non - 1)
        if var_non <= 0 or mean_kmp <= 0 or sd_kmp <= 0:
            raise _Rejected  # these ages cannot reproduce the age interval
        mean_non, sd_non = mean_kmp + diff, np.sqrt(var_non)
        ages_kmp = _exact_sample(rng.gamma((mean_kmp / sd_kmp) ** 2, size=n_kmp), mean_kmp, sd_kmp)
        ages_non = _exact_sample(rng.gamma((mean_non / sd_non) ** 2, size=n_non), mean_non, sd_non)
        ages = np.r_[ages_kmp, ages_non]
        if ages.min() >= 0.5 and ages.max() <= 216:
            return ages
    raise RuntimeError("could not draw positive ages reproducing the age CI")


def _add_severity(frame, evidence, rng, interpretation, g, u) -> None:
    n = len(frame)
    ci6, ci12 = evidence["severity_6m_ci"], evidence["severity_12m_ci"]
    severe = (frame["arm"] == "combination").to_numpy()
    kmp = frame["kmp"].to_numpy() == 1
    # baseline: 4-9; group means and SD are generator parameters (see DEFAULT_ASSUMPTIONS)
    mean_non = g["baseline_mean_non_kmp"]
    mean_kmp = mean_non + g["baseline_shift_kmp"]
    mean = np.where(
        severe, mean_kmp + g["baseline_shift_combination"], np.where(kmp, mean_kmp, mean_non)
    )
    base = np.clip(np.round(rng.normal(mean, g["baseline_sd"])), 4, 9).astype(int)
    noise = g["severity_tracking_noise"]
    if interpretation == "mean_score_at_visit":
        s6 = _assign_by_rank(_draw_integer_scores(ci6, n, rng), base + u, rng, noise)
        s12 = _assign_by_rank(_draw_integer_scores(ci12, n, rng), s6 + u, rng, noise)
        base = np.maximum(base, s6)  # no score rises from baseline to 6 months
    else:  # mean change from baseline: draw the decreases; baseline must allow them
        d6 = _assign_by_rank(_draw_integer_scores(ci6, n, rng), base - u, rng, noise)
        d12 = _assign_by_rank(_draw_integer_scores(ci12, n, rng), base - u, rng, noise)
        base = np.maximum(base, np.maximum(d6, d12))
        s6, s12 = base - d6, base - d12
    frame["severity_0m"], frame["severity_6m"], frame["severity_12m"] = base, s6, s12


def _assign_by_rank(values: np.ndarray, reference: np.ndarray, rng, noise: float) -> np.ndarray:
    """Give higher ``values`` to patients with higher ``reference`` (ties and noise random)."""
    noisy = reference + rng.normal(0, noise, size=reference.size)
    out = np.empty_like(values)
    out[np.argsort(noisy, kind="stable")] = np.sort(values)
    return out


def _standardize(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else x * 0.0


def _draw_shrinkage(evidence, frame, rng, g, u) -> np.ndarray:
    """Group means and SDs are exact; which patient gets which value follows a latent score:
    non-KMP ``u_c + noise``; KMP ``shift * combination + slope * z(baseline) + u_c + noise``
    (noise SD 1). If combination vs alone misses the published p > 0.05 the whole draw is
    rejected (:class:`_Rejected`)."""
    kmp = frame["kmp"].to_numpy() == 1
    comb = (frame["arm"] == "combination").to_numpy()
    ci_non, ci_kmp = evidence["kmp_vs_non_kmp_response_ci"], evidence["combination_shrinkage_ci"]
    n_non, n_kmp = int((~kmp).sum()), int(kmp.sum())
    m_non, sd_non = _exact_moments(ci_non, n_non, n_non - 1)
    m_kmp, sd_kmp = _exact_moments(ci_kmp, n_kmp, n_kmp - 1)
    bound = evidence["combination_shrinkage_p"]
    out = np.empty(len(frame))
    values_non = _exact_sample(rng.normal(size=n_non), m_non, sd_non)
    out[~kmp] = _assign_by_rank(values_non, u[~kmp], rng, 1.0)
    values = _exact_sample(rng.normal(size=n_kmp), m_kmp, sd_kmp)
    idx_kmp = np.flatnonzero(kmp)
    comb_kmp = comb[idx_kmp]
    severity = _standardize(frame["severity_0m"].to_numpy(float)[idx_kmp])
    latent = (
        g["shrinkage_combination_shift"] * comb_kmp
        + g["shrinkage_severity_slope"] * severity
        + u[idx_kmp]
    )
    assigned = _assign_by_rank(values, latent, rng, 1.0)
    res = PROCEDURES["t_two_sample_pooled"](assigned[comb_kmp], assigned[~comb_kmp])
    if not bound.holds(res.p):
        raise _Rejected
    out[idx_kmp] = assigned
    return out


def _add_response(frame, evidence, rng, g, u) -> None:
    """Non-responders: drawn with log-weight ``a * severity_6m + b * kmp - u_c``; the 12-month
    non-responders are among the 6-month ones."""
    n = len(frame)
    ((k6, n6),) = consistent_counts(evidence["response_6m_percent"])
    ((k12, n12),) = consistent_counts(evidence["response_12m_percent"])
    log_w = (
        g["nonresponse_severity_log_odds"] * frame["severity_6m"].to_numpy(float)
        + g["nonresponse_kmp_log_odds"] * frame["kmp"].to_numpy(float)
        - u
    )
    weight = np.exp(log_w - log_w.max())
    non6 = rng.choice(n, size=n6 - k6, replace=False, p=weight / weight.sum())
    # 12-month non-responders: first among the 6-month ones; any beyond those by the same weights
    non12 = rng.choice(non6, size=min(n12 - k12, len(non6)), replace=False)
    extra = n12 - k12 - len(non12)
    if extra > 0:
        rest = np.setdiff1d(np.arange(n), non6)
        w = weight[rest] / weight[rest].sum()
        non12 = np.r_[non12, rng.choice(rest, size=extra, replace=False, p=w)]
    r6, r12 = np.ones(n, int), np.ones(n, int)
    r6[non6], r12[non12] = 0, 0
    frame["response_6m"], frame["response_12m"] = r6, r12


def assumption_draws(datasets: list[pd.DataFrame]) -> pd.DataFrame:
    """One row per reconstructed dataset: the generator parameters drawn for it."""
    return pd.DataFrame([d.attrs.get("assumptions", {}) for d in datasets]).rename_axis("dataset")


def reconstruct_datasets(
    evidence: Evidence,
    n_datasets: int,
    seed: int,
    settings: ReconstructionSettings | None = None,
) -> list[pd.DataFrame]:
    """``n_datasets`` pseudo-IPD datasets; dataset i uses child i of ``SeedSequence(seed)``."""
    settings = settings or ReconstructionSettings()
    children = np.random.SeedSequence(seed).spawn(n_datasets)
    return [reconstruct_one(evidence, np.random.default_rng(c), settings) for c in children]


def verify(ipd: pd.DataFrame, evidence: Evidence, interpretations: dict[str, str]) -> pd.DataFrame:
    """For each reported interval: does the dataset reproduce it (to its printed decimals) and
    meet its p-value bound, under the interpretation the reconstruction claims?"""
    bounds = {r.statistic: r for r in evidence.of_kind("p_bound")}
    rows = []
    for ci in evidence.of_kind("ci95"):
        interp = interpretations[ci.statistic]
        got = recompute(ipd, [(ci.statistic, interp)]).iloc[0]
        result = FreqResult(got["estimate"], got["lower"], got["upper"], got["p"])
        bound = bounds.get(ci.statistic)
        rows.append(
            {
                "statistic": ci.statistic,
                "interpretation": interp,
                "lower": result.lower,
                "upper": result.upper,
                "p": result.p,
                "reproduces_ci": interval_prints_as(result, ci),
                "meets_p_bound": bound.holds(result.p) if bound else True,
            }
        )
    for key in ("response_6m_percent", "response_12m_percent", "kmp_percent"):
        record = evidence[key]
        got = recompute(ipd, [(record.statistic, "of_all_analyzed")]).iloc[0]
        lo, hi = rounding_interval(record.percent, record.decimals)
        rows.append(
            {
                "statistic": record.statistic,
                "interpretation": "of_all_analyzed",
                "lower": np.nan,
                "upper": np.nan,
                "p": np.nan,
                "reproduces_ci": bool(lo - 1e-9 <= got["estimate"] <= hi + 1e-9),
                "meets_p_bound": True,
            }
        )
    return pd.DataFrame(rows)
