"""Pseudo-IPD: patient-level datasets consistent with every number the abstract reports.

The paper's patient data are not public. Each reconstructed dataset is a plausible cohort that
reproduces, to their printed rounding, the reported statistics under the interpretation recorded
for each (:data:`INTERPRETATIONS`), re-computed with the procedure that interpretation names.
Drawing many datasets with different seeds carries the reconstruction's own uncertainty (which
patients responded, how scores and ages are spread, which center treated whom) into the
posterior.

How each block is drawn (dataset i uses child seed i of the user's seed):

- design: 52 patients, 37 KMP, 21 of them on combination therapy, 15 non-KMP on sirolimus alone;
- centers (:class:`CenterSettings`): probabilities from a Dirichlet with the given mean shares
  and concentration, then every center gets one patient and the rest are multinomial;
- ages: gamma-shaped draws per group, transformed exactly to group means and SDs chosen so that
  the pooled t interval of (non-KMP - KMP) is 28.00 +/- 13.61 months;
- severity scores (integers 0-10): the multiset of 6- and 12-month scores is drawn uniformly from
  all count vectors on a window of four consecutive integers whose one-sample t interval prints
  as reported (a GRIM/SPRITE-style exact search); baseline scores are higher, highest in the
  combination arm (combination went to the most severe patients); scores are assigned so that
  they rarely rise;
- shrinkage (%): normal draws transformed exactly to the group mean and SD implied by each
  reported interval; the KMP values are split between arms until combination vs sirolimus alone
  has p > 0.05;
- response: the non-responders (2 at 6 months, 1 at 12 months, one of the two) are drawn with
  preference for the highest 6-month severity.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import stats

from khe_bayes.evidence import Evidence, IntervalRecord, consistent_counts, rounding_interval
from khe_bayes.freq import PROCEDURES, FreqResult
from khe_bayes.ipd import COLUMNS, validate_ipd
from khe_bayes.statistics import recompute

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


@dataclass(frozen=True)
class ReconstructionSettings:
    centers: CenterSettings = field(default_factory=CenterSettings)
    severity_interpretation: str = "mean_score_at_visit"

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
    """One pseudo-IPD dataset (validated against the IPD schema)."""
    n = evidence["n_analyzed"].events
    n_kmp = evidence["kmp_count"].events
    n_comb = evidence["combination_count"].events
    n_non = n - n_kmp
    kmp = np.r_[np.ones(n_kmp, int), np.zeros(n_non, int)]
    arm = np.array(["combination"] * n_comb + ["sirolimus"] * (n - n_comb), dtype=object)

    frame = pd.DataFrame(
        {"patient_id": [f"P{i + 1:03d}" for i in range(n)], "kmp": kmp, "arm": arm}
    )
    frame["center"] = np.array(settings.centers.names, dtype=object)[
        settings.centers.allocate(n, rng)
    ]
    frame["age_months"] = _draw_ages(evidence, n_kmp, n_non, rng)
    _add_severity(frame, evidence, rng, settings.severity_interpretation)
    frame["shrinkage_12m"] = _draw_shrinkage(evidence, frame, rng)
    _add_response(frame, evidence, rng)
    return validate_ipd(frame.loc[:, list(COLUMNS)], source="reconstruction")


def _draw_ages(evidence, n_kmp, n_non, rng) -> np.ndarray:
    ci = evidence["age_difference_ci"]
    n_eff = 1 / (1 / n_kmp + 1 / n_non)
    diff, pooled_sd = _exact_moments(ci, n_eff, n_kmp + n_non - 2)
    for _ in range(1000):
        mean_kmp = rng.uniform(4.0, 10.0)
        sd_kmp = rng.uniform(0.6, 1.0) * mean_kmp
        var_non = ((n_kmp + n_non - 2) * pooled_sd**2 - (n_kmp - 1) * sd_kmp**2) / (n_non - 1)
        if var_non <= 0:
            continue
        mean_non, sd_non = mean_kmp + diff, np.sqrt(var_non)
        ages_kmp = _exact_sample(rng.gamma((mean_kmp / sd_kmp) ** 2, size=n_kmp), mean_kmp, sd_kmp)
        ages_non = _exact_sample(rng.gamma((mean_non / sd_non) ** 2, size=n_non), mean_non, sd_non)
        ages = np.r_[ages_kmp, ages_non]
        if ages.min() >= 0.5 and ages.max() <= 216:
            return ages
    raise RuntimeError("could not draw positive ages reproducing the age CI")


def _add_severity(frame, evidence, rng, interpretation) -> None:
    n = len(frame)
    ci6, ci12 = evidence["severity_6m_ci"], evidence["severity_12m_ci"]
    severe = (frame["arm"] == "combination").to_numpy()
    kmp = frame["kmp"].to_numpy() == 1
    # baseline: 4-9, highest for combination, then other KMP, then non-KMP
    base = np.clip(np.round(rng.normal(np.where(severe, 7.0, np.where(kmp, 5.5, 4.5)), 0.9)), 4, 9)
    base = base.astype(int)
    if interpretation == "mean_score_at_visit":
        s6 = _assign_by_rank(_draw_integer_scores(ci6, n, rng), base, rng)
        s12 = _assign_by_rank(_draw_integer_scores(ci12, n, rng), s6, rng)
        base = np.maximum(base, s6)  # no score rises from baseline to 6 months
    else:  # mean change from baseline: draw the decreases; baseline must allow them
        d6 = _assign_by_rank(_draw_integer_scores(ci6, n, rng), base, rng)
        d12 = _assign_by_rank(_draw_integer_scores(ci12, n, rng), base, rng)
        base = np.maximum(base, np.maximum(d6, d12))
        s6, s12 = base - d6, base - d12
    frame["severity_0m"], frame["severity_6m"], frame["severity_12m"] = base, s6, s12


def _assign_by_rank(values: np.ndarray, reference: np.ndarray, rng) -> np.ndarray:
    """Give higher ``values`` to patients with higher ``reference`` (ties and noise random)."""
    noisy = reference + rng.normal(0, 0.75, size=reference.size)
    out = np.empty_like(values)
    out[np.argsort(noisy, kind="stable")] = np.sort(values)
    return out


def _draw_shrinkage(evidence, frame, rng) -> np.ndarray:
    kmp = frame["kmp"].to_numpy() == 1
    comb = (frame["arm"] == "combination").to_numpy()
    ci_non, ci_kmp = evidence["kmp_vs_non_kmp_response_ci"], evidence["combination_shrinkage_ci"]
    n_non, n_kmp = int((~kmp).sum()), int(kmp.sum())
    m_non, sd_non = _exact_moments(ci_non, n_non, n_non - 1)
    m_kmp, sd_kmp = _exact_moments(ci_kmp, n_kmp, n_kmp - 1)
    bound = evidence["combination_shrinkage_p"]
    out = np.empty(len(frame))
    out[~kmp] = _exact_sample(rng.normal(size=n_non), m_non, sd_non)
    values = _exact_sample(rng.normal(size=n_kmp), m_kmp, sd_kmp)
    idx_kmp = np.flatnonzero(kmp)
    for _ in range(1000):
        values = rng.permutation(values)
        res = PROCEDURES["t_two_sample_pooled"](values[comb[idx_kmp]], values[~comb[idx_kmp]])
        if bound.holds(res.p):
            out[idx_kmp] = values
            return out
    raise RuntimeError("could not split KMP shrinkage with p > 0.05")


def _add_response(frame, evidence, rng) -> None:
    n = len(frame)
    ((k6, n6),) = consistent_counts(evidence["response_6m_percent"])
    ((k12, n12),) = consistent_counts(evidence["response_12m_percent"])
    weight = np.exp(frame["severity_6m"].to_numpy(float))
    non6 = rng.choice(n, size=n6 - k6, replace=False, p=weight / weight.sum())
    non12 = rng.choice(non6, size=n12 - k12, replace=False)
    r6, r12 = np.ones(n, int), np.ones(n, int)
    r6[non6], r12[non12] = 0, 0
    frame["response_6m"], frame["response_12m"] = r6, r12


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
