"""The numbers a user reads in `khe-bayes reanalyze`'s CSV files, against independent references.

One short reanalysis (the session fixture ``result_dir`` in conftest.py: 2 chains x 200 draws,
2 reconstructed datasets so that pooling runs end to end) is read back from disk:

- aggregate outcomes: the abstract's counts are derived by hand here (96% of 52 -> 50/52, 98%
  -> 51/52, 37/52 with KMP, 21 of 37 on combination, 0/52 and 0/52), and under the Beta(1, 1)
  and Beta(1/2, 1/2) priors the exact posterior is Beta(a + k, b + n - k) from scipy. Means and
  threshold probabilities are compared within 4 Monte Carlo standard errors (MCSE of a mean =
  sd / sqrt(ESS_bulk); of a probability p = sqrt(p (1 - p) / ESS)), quantiles by their exact
  CDF value, within 4 SE of q (sqrt(q (1 - q) / ESS_tail), distribution-free);
  4 SE: a false failure about 6e-5 per comparison.
- frequentist columns (rule of three, exact one-sided bound, Wilson intervals) are closed forms.
- IPD outputs are checked against the posterior draws written beside them (``*.nc``) and
  the verdicts against the rule stated in ppc.py, recomputed from the row's own p-values.
"""

from __future__ import annotations

import re

import arviz as az
import numpy as np
import pandas as pd
import pytest
from scipy import stats

COUNTS = {  # hand-derived from the abstract (see module docstring)
    "response_6m": (50, 52),
    "response_12m": (51, 52),
    "kmp_prevalence": (37, 52),
    "combination_share_kmp": (21, 37),
    "toxicity_discontinuation": (0, 52),
    "drug_related_death": (0, 52),
}
BETA_PRIORS = {"uniform_beta": (1.0, 1.0), "jeffreys_beta": (0.5, 0.5)}
K = 4.0  # standard errors allowed in every Monte Carlo comparison


def exact(outcome: str, prior: str):
    k, n = COUNTS[outcome]
    a, b = BETA_PRIORS[prior]
    return stats.beta(a + k, b + n - k)


def _outcome(quantity: str) -> str:
    return quantity[quantity.index("[") + 1 : -1]


def _quantile_ok(dist, estimate: float, q: float, ess: float, factor: float = 1.0) -> bool:
    """A sample q-quantile from ESS effective draws has its exact CDF value within
    q +/- K sqrt(q (1 - q) / ESS) (order statistics: the count of draws below the true
    quantile is binomial), whatever the density there; 1e-4 covers the CSV's rounding."""
    q_se = np.sqrt(max(q, 0.025) * (1 - min(q, 0.975)) / ess)
    return abs(dist.cdf(estimate) - q) <= K * factor * q_se + 1e-4


def _exact_hdi(dist, prob: float = 0.95) -> float:
    """Lower tail probability p of the narrowest ``prob`` interval of a unimodal (or J-shaped)
    distribution: the width of [ppf(p), ppf(p + prob)] minimised on a grid of 20001 points."""
    grid = np.linspace(0, 1 - prob, 20001)
    widths = dist.ppf(grid + prob) - dist.ppf(grid)
    return float(grid[int(np.argmin(widths))])


@pytest.fixture(scope="module")
def summary(result_dir):
    return pd.read_csv(result_dir / "summary.csv")


def test_summary_means_and_intervals_match_the_exact_beta_posteriors(summary):
    rows = summary[summary["prior"].isin(BETA_PRIORS)]
    assert len(rows) == 2 * len(COUNTS)
    for _, row in rows.iterrows():
        dist = exact(_outcome(row["quantity"]), row["prior"])
        label = (row["quantity"], row["prior"])
        mcse = row["sd"] / np.sqrt(row["ess_bulk"])
        assert abs(row["mean"] - dist.mean()) <= K * mcse, label
        # the reported MCSE is an MCSE of this mean: same order as sd / sqrt(ESS)
        assert 0.5 * mcse <= row["mcse_mean"] <= 2 * mcse, label
        # SE of a sample SD: sd sqrt((kurtosis - 1) / (4 ESS)) (large for the J-shaped
        # zero-event posteriors)
        kurtosis = float(dist.stats(moments="k")) + 3
        se_sd = dist.std() * np.sqrt((kurtosis - 1) / (4 * row["ess_bulk"]))
        assert abs(row["sd"] - dist.std()) <= K * se_sd, label
        for column, q in (("eti95_lb", 0.025), ("eti95_ub", 0.975), ("median", 0.5)):
            if column == "eti95_lb" and COUNTS[_outcome(row["quantity"])][0] == 0:
                # 0 events: the J-shaped posterior's 2.5% point is within 1e-4 of 0, a tail
                # whose Monte Carlo error the tail ESS (at 5%/95%) does not measure
                assert 0 <= row[column] <= 1e-3, label
                continue
            assert _quantile_ok(dist, row[column], q, row["ess_tail"]), (label, column)
        # the HDI against the exact Beta HDI: each endpoint at its exact tail probability, with
        # the allowance doubled (an estimated HDI endpoint is noisier than a fixed quantile)
        p_lo = _exact_hdi(dist)
        for column, q in (("hdi95_lb", p_lo), ("hdi95_ub", p_lo + 0.95)):
            assert _quantile_ok(dist, row[column], q, row["ess_tail"], 2.0), (label, column)


def test_thresholds_match_the_exact_posterior_probabilities(result_dir):
    table = pd.read_csv(result_dir / "thresholds.csv")
    rows = table[table["prior"].isin(BETA_PRIORS)]
    assert len(rows) == 2 * 6
    for _, row in rows.iterrows():
        dist = exact(_outcome(row["quantity"]), row["prior"])
        truth = dist.sf(row["value"]) if row["direction"] == ">" else dist.cdf(row["value"])
        # MCSE allowance: the stated one, but at least that of 400 independent draws / 4
        se = max(row["mcse"], np.sqrt(truth * (1 - truth) / 100), 1e-3)
        assert abs(row["probability"] - truth) <= K * se, (row["statement"], truth)
        assert row["statement"] == f"P({row['quantity']} {row['direction']} {row['value']:g})"


def test_zero_event_bounds(result_dir, summary):
    table = pd.read_csv(result_dir / "zero_events.csv")
    assert set(table["outcome"]) == {"toxicity_discontinuation", "drug_related_death"}
    assert (table["n"] == 52).all() and (table["events"] == 0).all()
    assert table["rule_of_three"].to_numpy() == pytest.approx(3 / 52, rel=1e-5)
    # exact one-sided Clopper-Pearson bound for 0/n: 1 - 0.05^(1/n), also scipy's beta.ppf
    assert table["clopper_pearson_upper"].to_numpy() == pytest.approx(1 - 0.05 ** (1 / 52), 1e-5)
    assert pytest.approx(stats.beta.ppf(0.95, 1, 52), rel=1e-12) == 1 - 0.05 ** (1 / 52)
    for _, row in table[table["prior"].isin(BETA_PRIORS)].iterrows():
        dist = exact(row["outcome"], row["prior"])
        assert row["upper_closed_form"] == pytest.approx(dist.ppf(0.95), rel=1e-5)
        ess = summary.set_index(["quantity", "prior"]).loc[
            (f"rate[{row['outcome']}]", row["prior"]), "ess_tail"
        ]
        assert _quantile_ok(dist, row["upper_credible_0.95"], 0.95, ess), row.to_dict()
        assert abs(row["posterior_mean"] - dist.mean()) <= K * dist.std() / np.sqrt(ess)


def test_closed_form_check_rows_are_right_and_pass(result_dir):
    table = pd.read_csv(result_dir / "closed_form_check.csv")
    assert set(table["prior"]) == {"uniform_beta", "jeffreys_beta", "logit_normal"}
    assert (table["z"].abs() < K).all(), table.loc[table["z"].abs() >= K].to_string()
    # z re-derived from the rounded CSV columns (6 significant digits: abs error ~1e-3)
    assert table["z"].to_numpy() == pytest.approx(
        ((table["mcmc_mean"] - table["reference_mean"]) / table["mcse"]).to_numpy(), abs=0.01
    )
    for _, row in table[table["prior"].isin(BETA_PRIORS)].iterrows():
        dist = exact(row["outcome"], row["prior"])
        assert row["reference_mean"] == pytest.approx(dist.mean(), rel=1e-5)
        assert row["reference_sd"] == pytest.approx(dist.std(), rel=1e-5)


def test_side_by_side_aggregate(result_dir, summary):
    table = pd.read_csv(result_dir / "side_by_side.csv")
    default = summary[summary["prior"] == "uniform_beta"].set_index("quantity")
    for _, row in table.iterrows():
        outcome = row["quantity"].removesuffix(" (%)")
        k, n = COUNTS[outcome]
        ci = stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
        assert (row["reported_lower"], row["reported_upper"]) == pytest.approx(
            (100 * ci.low, 100 * ci.high), rel=1e-5
        )
        dist = exact(outcome, "uniform_beta")
        ess = default.loc[f"rate[{outcome}]", "ess_bulk"]
        assert abs(row["posterior_mean"] - 100 * dist.mean()) <= K * 100 * dist.std() / np.sqrt(ess)
        assert row["posterior_mean"] == pytest.approx(100 * default.loc[f"rate[{outcome}]", "mean"])


def _rule(evidence: float) -> str:
    """ppc.py's stated rule, written out: >= 0.05 consistent, < 0.005 inconsistent."""
    if not np.isfinite(evidence):
        return "not checked"
    return "consistent" if evidence >= 0.05 else "tension" if evidence >= 0.005 else "inconsistent"


_ORDER = ["consistent", "tension", "inconsistent"]


def test_ppc_verdicts_follow_the_stated_rule(result_dir):
    """ppc_reported.csv: the evidence is the smallest two-sided ppp over the printed estimate
    and CI ends (the share of replications meeting a printed p bound is a share, not a
    p-value, and is not part of it); the verdict is the worse of the rule applied to the
    evidence and to that share (ppc.py's docstring, restated here by hand)."""
    table = pd.read_csv(result_dir / "ppc_reported.csv")
    checked = table[table["verdict"] != "no replicator"]
    assert len(checked) >= 8
    with_share = 0
    for _, row in checked.iterrows():
        ppps = [row[c] for c in ("ppp_estimate", "ppp_lower", "ppp_upper")]
        ppps = [p for p in ppps if np.isfinite(p)]
        assert row["evidence"] == pytest.approx(min(ppps), abs=1e-12), row["statistic"]
        expected = [_rule(row["evidence"])]
        if np.isfinite(row["share_p_bound_met"]):
            expected.append(_rule(row["share_p_bound_met"]))
            with_share += 1
        assert row["verdict"] == max(expected, key=_ORDER.index), row.to_dict()
        for c in ("ppp_estimate", "ppp_lower", "ppp_upper", "share_p_bound_met"):
            assert not np.isfinite(row[c]) or 0 <= row[c] <= 1
    assert with_share >= 4  # the rows with a printed p bound are exercised
    assert {"consistent", "inconsistent"} <= set(checked["verdict"])


def test_ipd_summary_is_the_pooled_posterior_written_beside_it(result_dir):
    """ipd_summary.csv against the pooled draws in each model's .nc: the pooled mean (equal
    draws per dataset: the mean of the dataset means), the worst per-dataset R-hat, two
    datasets in the file; and reconstruction_variance.csv's within-dataset variance."""
    summary = pd.read_csv(result_dir / "ipd_summary.csv")
    variance = pd.read_csv(result_dir / "reconstruction_variance.csv")
    assert set(summary["model"]) == set(variance["model"])
    checked = 0
    for model, rows in summary.groupby("model"):
        path = result_dir / f"{model}.nc"
        if not path.exists():
            continue
        post = az.from_netcdf(path).posterior
        datasets = np.unique(post["dataset"].values)
        assert len(datasets) == 2
        for _, row in rows.iterrows():
            if "[" in row["quantity"]:
                continue
            draws = post[row["quantity"]]
            assert row["mean"] == pytest.approx(float(draws.mean()), rel=1e-5, abs=1e-8)
            per = [draws.isel(chain=post["dataset"].values == m) for m in datasets]
            rhat = max(float(az.rhat(d.to_dataset())[row["quantity"]]) for d in per)
            assert row["r_hat"] == pytest.approx(rhat, rel=1e-5)
            within = np.mean([float(d.var()) for d in per])
            var_row = variance[
                (variance["model"] == model) & (variance["quantity"] == row["quantity"])
            ]
            assert float(var_row["within_variance"].iloc[0]) == pytest.approx(within, rel=1e-5)
            share = float(var_row["reconstruction_share"].iloc[0])
            assert 0 <= share <= 1
            checked += 1
    assert checked >= 10


# --- the report's numbers are the CSVs' numbers ---------------------------------------------------


def _markdown_tables(text: str) -> list[pd.DataFrame]:
    """Every pipe table of a Markdown document, as strings (escaped pipes restored)."""
    tables, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if len(block) >= 3 and set(block[1]) <= set("|-: "):
            rows = [
                [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", ln)[1:-1]]
                for ln in block
            ]
            header, body = rows[0], rows[2:]
            if all(len(r) == len(header) for r in body) and len(set(header)) == len(header):
                tables.append(pd.DataFrame(body, columns=header))
        block = []
    return tables


def _tolerance(cell: str, value: float) -> float:
    """Half a unit of the last digit shown ('0.9731' -> 5e-5; '1.2e-05' -> 5e-7), plus the
    CSV's own rounding to 6 significant digits."""
    mantissa, _, exponent = cell.lower().partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    unit = 10.0 ** (-decimals + (int(exponent) if exponent else 0))
    return 0.5 * unit + 1e-5 * abs(value) + 1e-12


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip().lower() not in ("nan", "inf", "-inf")


def _numeric_column(values: pd.Series) -> bool:
    """Numbers or blanks (a CSV column read as text)."""
    return values.astype(str).map(lambda v: v == "" or _is_number(v)).all()


def _csv_tables(result_dir) -> dict[str, pd.DataFrame]:
    return {
        p.name: pd.read_csv(p, keep_default_na=False, dtype=str)
        for p in sorted(result_dir.glob("*.csv"))
    }


def test_every_number_in_the_report_tables_is_the_csv_number(result_dir):
    """Each table of report.md whose columns all appear in one CSV is matched to that CSV's rows
    by its text columns, and every number shown must equal the CSV value to the digits shown
    (within half a unit of the last shown digit, plus the CSV's own 6-significant-digit
    rounding); a blank cell must be blank in the CSV. At least the aggregate summary,
    thresholds, zero-event, closed-form, side-by-side and IPD tables must be matched, and
    hundreds of numbers compared."""
    tables = _markdown_tables((result_dir / "report.md").read_text(encoding="utf-8"))
    csvs = _csv_tables(result_dir)
    matched, compared = set(), 0
    for table in tables:
        for name, csv in csvs.items():
            if not set(table.columns) <= set(csv.columns) or len(table) > len(csv):
                continue
            numeric = [c for c in table.columns if _numeric_column(csv[c])]
            keys = [c for c in table.columns if c not in numeric]
            if not keys or not numeric:
                continue
            csv_keys = csv[keys].agg(" / ".join, axis=1)
            table_keys = table[keys].agg(" / ".join, axis=1)
            # the table's rows must each name one CSV row (other CSV rows may share keys:
            # summary.csv's summary-data rows repeat a quantity across blocks)
            unique = ~csv_keys.duplicated(keep=False)
            if not set(table_keys) <= set(csv_keys[unique]):
                continue
            lookup = csv[unique].set_index(csv_keys[unique])
            for i, key in enumerate(table_keys):
                for column in numeric:
                    cell, value = table.iloc[i][column], lookup.loc[key, column]
                    where = (name, key, column, cell, value)
                    if cell in ("", "None") or value == "":  # None: a missing object value
                        assert cell in ("", "None") and value in ("", "nan"), where
                        continue
                    value = float(value)
                    if cell.startswith(("<", ">-")):
                        # too small for the digits shown (report.py's _fixed): '<0.001' means
                        # 0 < value < 0.0005 (it would have printed 0.001 otherwise)
                        bound = float(cell.lstrip("<>-"))
                        sign = 1 if cell.startswith("<") else -1
                        assert 0 < sign * value <= bound / 2 + 1e-5 * bound, where
                    else:
                        assert abs(float(cell) - value) <= _tolerance(cell, value), where
                    compared += 1
            matched.add(name)
    assert {
        "summary.csv",
        "thresholds.csv",
        "zero_events.csv",
        "closed_form_check.csv",
        "side_by_side.csv",
        "side_by_side_ipd.csv",
    } <= matched, matched
    assert compared >= 200, compared
