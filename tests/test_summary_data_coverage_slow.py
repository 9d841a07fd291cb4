"""Frequentist coverage of the summary-data model's interval for a mean difference (issue 14).

Each simulated study draws two normal groups of the study's sizes (KMP 37, non-KMP 15; true
means 14 and 41 months, common SD 20), prints the pooled-t 95% CI of the difference (non-KMP
minus KMP) rounded to whole months (coarse on purpose, so the interval-censoring matters), and
fits the summary-data model under that reading (ICC fixed at 0: the simulation has no
centers). Over ``STUDIES`` studies the posterior 95% interval must cover the true difference at
the nominal rate: with 120 studies the binomial SD of the coverage at 0.95 is 0.020, so the
acceptance band [0.89, 1) is 3 SDs below (a correct method fails it with probability ~0.2%, and
the upper end only when every study covers, probability 0.95^120 = 0.2%).

Run: ``.venv/bin/python -m pytest -m slow tests/test_summary_data_coverage_slow.py``; the
result is recorded in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from khe_bayes.study.evidence import IntervalRecord, load_evidence
from khe_bayes.study.summary_data import (
    Block,
    ModelOptions,
    Statement,
    SummaryPriors,
    build_block_model,
    group_sizes,
)
from khe_bayes.toolkit.sampling import SamplerSettings, fit

STUDIES = 120
TRUE_MEANS = {"kmp": 14.0, "non_kmp": 41.0}
TRUE_SD = 20.0
DECIMALS = 0


def _interval(lower: float, upper: float, decimals: int) -> IntervalRecord:
    return IntervalRecord(
        id="age_difference_ci",
        statistic="age_difference_kmp",
        quote="simulated interval for the coverage study",
        population="simulated",
        description="simulated",
        kind="ci95",
        lower=lower,
        upper=upper,
        decimals=decimals,
    )


@pytest.mark.slow
def test_interval_for_mean_difference_covers_truth_at_nominal_rate():
    evidence = load_evidence()
    sizes = group_sizes(evidence)
    reading = evidence["age_difference_ci"].interpretation("mean_difference_months_pooled_t")
    reading = reading.model_copy(update={"p_test": "same"})
    rng = np.random.default_rng(20261125)
    truth = TRUE_MEANS["non_kmp"] - TRUE_MEANS["kmp"]
    covered = []
    for i in range(STUDIES):
        x = {g: rng.normal(m, TRUE_SD, sizes[g]) for g, m in TRUE_MEANS.items()}
        n1, n2 = sizes["non_kmp"], sizes["kmp"]
        d = x["non_kmp"].mean() - x["kmp"].mean()
        sp = math.sqrt(
            ((n1 - 1) * x["non_kmp"].var(ddof=1) + (n2 - 1) * x["kmp"].var(ddof=1)) / (n1 + n2 - 2)
        )
        half = stats.t.ppf(0.975, n1 + n2 - 2) * sp * math.sqrt(1 / n1 + 1 / n2)
        ci = _interval(round(d - half, DECIMALS), round(d + half, DECIMALS), DECIMALS)
        statement = Statement("age_difference_kmp", ci, None, (reading,), {reading.id: 1.0})
        block = Block("age", (statement,), sizes)
        model = build_block_model(
            block, {"age_difference_kmp": reading.id}, SummaryPriors(), ModelOptions(icc=0.0)
        )
        settings = SamplerSettings(draws=1000, tune=1000, chains=2, seed=i, target_accept=0.95)
        # compiled once: the printed values are pm.Data, so every study swaps its data in
        idata = fit(model, settings, compiled_as="summary_data_coverage", log_likelihood=False)
        draws = idata.posterior["age_difference_months"].values.reshape(-1)
        lo, hi = np.quantile(draws, [0.025, 0.975])
        covered.append(lo <= truth <= hi)
    coverage = float(np.mean(covered))
    print(f"coverage of the 95% interval over {STUDIES} studies: {coverage:.3f}")
    assert 0.89 <= coverage < 1.0
