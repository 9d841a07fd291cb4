"""`khe-bayes reanalyze` end to end, as a user runs it (short chains)."""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest
from conftest import CHROMIUM_FLAGS, FAST, run_cli

OUTCOMES = {
    "response_6m",
    "response_12m",
    "kmp_prevalence",
    "combination_share_kmp",
    "toxicity_discontinuation",
    "drug_related_death",
}


def test_writes_every_output(result_dir):
    names = {p.relative_to(result_dir).as_posix() for p in result_dir.rglob("*") if p.is_file()}
    for expected in [
        "summary.csv",
        "thresholds.csv",
        "zero_events.csv",
        "diagnostics.csv",
        "closed_form_check.csv",
        "ipd_summary.csv",
        "reconstruction_variance.csv",
        "side_by_side.csv",
        "side_by_side_ipd.csv",
        "ppc_reported.csv",
        "audit.csv",
        "evidence.csv",
        "report.md",
        "report.html",
        "manifest.json",
        "aggregate_proportions__uniform_beta.nc",
        "figures/aggregate_rates.png",
    ]:
        assert expected in names
    manifest = json.loads((result_dir / "manifest.json").read_text())
    assert set(manifest["outputs"]) == names
    assert manifest["settings"]["sampler"]["seed"] == 5
    assert manifest["versions"]["pymc"].startswith("6.")
    assert len(manifest["inputs_sha256"]["evidence"]) == 64


def test_assumptions_and_identification_are_reported(result_dir):
    """Issue 15: the assumptions table and the identification labels are in the default report,
    the CSVs and the manifest; the response model's center_sd is set by assumptions."""
    report = (result_dir / "report.md").read_text()
    assert "## Assumptions of the reconstruction" in report
    assert "center_heterogeneity" in report and "Identification rule" in report
    assert "## Estimands set by assumptions" in report
    ident = pd.read_csv(result_dir / "identification.csv")
    row = ident[(ident["model"] == "response") & (ident["quantity"] == "center_sd")]
    assert row["label"].iloc[0] == "set by assumptions"
    assert set(pd.read_csv(result_dir / "assumptions.csv")["assumption"]) >= {
        "baseline_mean_non_kmp",
        "nonresponse_kmp_log_odds",
        "center_heterogeneity",
        "center_sizes",
    }
    manifest = json.loads((result_dir / "manifest.json").read_text())
    assert "center_heterogeneity" in manifest["settings"]["assumptions"]
    assert manifest["settings"]["identification"]["response/center_sd"] == "set by assumptions"


def test_summary_has_arviz_layout_and_descriptions(result_dir):
    summary = pd.read_csv(result_dir / "summary.csv")
    for col in [
        "quantity",
        "description",
        "mean",
        "sd",
        "hdi95_lb",
        "hdi95_ub",
        "median",
        "eti95_lb",
        "eti95_ub",
        "mcse_mean",
        "mcse_sd",
        "ess_bulk",
        "ess_tail",
        "r_hat",
        "flag",
    ]:
        assert col in summary.columns
    assert summary["model"].iloc[0] == "summary_data"  # the headline analysis comes first
    summary = summary[summary["model"] == "aggregate_proportions"]
    assert set(summary["prior"]) == {"uniform_beta", "jeffreys_beta", "logit_normal"}
    labels = {q[len("rate[") : -1] for q in summary["quantity"]}
    assert labels == OUTCOMES
    assert summary["description"].str.len().min() > 10


COMPARISONS = {
    "age_difference_kmp",
    "severity_6m",
    "severity_12m",
    "kmp_vs_non_kmp_response",
    "combination_vs_alone_shrinkage",
}


def test_report_leads_with_the_summary_data_model_and_its_reading_weights(result_dir):
    """Issue 14: the reading weights of the four comparisons, the design-effect sensitivity and
    the summary-data model's predictive checks are in the default report."""
    md = (result_dir / "report.md").read_text()
    assert md.index("Headline: the reported comparisons") < md.index("Consistency audit")
    for title in [
        "Readings of the ambiguous statements: posterior weights",
        "Design effect: sensitivity to the between-center ICC",
        "Predictive checks of the summary-data model",
    ]:
        assert title in md
    assert "reconstruction-fidelity check" in md
    weights = pd.read_csv(result_dir / "summary_data_reading_weights.csv")
    assert set(weights["statistic"]) == COMPARISONS
    for statistic, group in weights.groupby("statistic"):
        # the csv prints 6 significant digits
        assert group["posterior_weight"].sum() == pytest.approx(1.0, abs=1e-5), statistic
        assert statistic in md
    by_reading = weights.set_index("reading")["posterior_weight"]
    assert by_reading["shrinkage_difference"] == 0.0  # its own test contradicts p > 0.05
    assert {"group_means_months", "group_means_shrinkage"} <= set(by_reading.index)
    sens = pd.read_csv(result_dir / "summary_data_icc_sensitivity.csv")
    assert sens["icc"].nunique() >= 3
    checks = pd.read_csv(result_dir / "summary_data_checks.csv")
    assert set(checks["statistic"]) == COMPARISONS
    assert "model-averaged" in set(checks["check"])


def test_posterior_file_carries_its_spec(result_dir):
    from khe_bayes.toolkit.datatree import load

    idata = load(result_dir / "aggregate_proportions__logit_normal.nc")
    spec = json.loads(idata.posterior.attrs["spec"])
    assert spec["family"] == "aggregate_proportion"
    assert idata.posterior.attrs["prior_set"] == "logit_normal"
    assert {"posterior_predictive", "log_likelihood", "observed_data"} <= set(idata.children)


def test_every_reported_statistic_is_checked(result_dir):
    from khe_bayes.study.evidence import load_evidence

    ppc = pd.read_csv(result_dir / "ppc_reported.csv")
    evidence = load_evidence()
    reported = {r.statistic for r in evidence.record if r.kind in ("ci95", "percentage")}
    assert set(ppc["statistic"]) == reported
    defaults = ppc[
        ppc["interpretation"].isin(
            [
                "of_all_analyzed",
                "mean_difference_months_pooled_t",
                "mean_score_at_visit",
                "mean_shrinkage_non_kmp",
                "mean_shrinkage_kmp",
            ]
        )
    ]
    assert (defaults["verdict"] != "no replicator").all()
    ipd = pd.read_csv(result_dir / "ipd_summary.csv")
    assert {"combination_effect", "age_difference_months", "severity_change_12m"} <= set(
        ipd["quantity"]
    )


def test_same_seed_gives_identical_summary(result_dir, same_seed_rerun):
    """The same command twice (two processes, two directories): byte-identical tables."""
    for name in [
        "summary.csv",
        "thresholds.csv",
        "zero_events.csv",
        "ipd_summary.csv",
        "ppc_reported.csv",
        "diagnostics.csv",
        "summary_data_reading_weights.csv",
        "summary_data_joint_readings.csv",
        "summary_data_checks.csv",
        "audit.csv",
    ]:
        assert (same_seed_rerun / name).read_bytes() == (result_dir / name).read_bytes(), name


def test_existing_output_is_not_overwritten(result_dir):
    before = (result_dir / "summary.csv").read_bytes()
    proc = run_cli("reanalyze", "--out", str(result_dir), *FAST)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--overwrite" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (result_dir / "summary.csv").read_bytes() == before


def test_user_ipd_runs_and_bad_ipd_writes_nothing(tmp_path):
    from khe_bayes.study.evidence import load_evidence
    from khe_bayes.study.ipd import write_ipd
    from khe_bayes.study.reconstruct import reconstruct_datasets

    good = tmp_path / "ipd.csv"
    write_ipd(reconstruct_datasets(load_evidence(), 1, seed=4)[0], good)
    bad = tmp_path / "bad.csv"
    bad.write_text(good.read_text().replace(",combination,", ",steroids,", 1))
    proc = run_cli("reanalyze", "--out", str(tmp_path / "r"), "--ipd", str(bad), *FAST)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{bad}, row 2, column 'arm'" in proc.stderr
    assert not (tmp_path / "r").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_bad_sampler_argument_is_a_one_line_error(tmp_path):
    proc = run_cli("reanalyze", "--out", str(tmp_path / "x"), "--draws", "0")
    assert proc.returncode == 2 and "--draws" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "x").exists()


def test_strict_turns_poor_convergence_into_nonzero_exit(strict_run):
    """20 draws after 5 tuning steps (the fixture checks the exit code, EXIT_STRICT = 3): the
    report is still written and says why."""
    report = (strict_run / "report.md").read_text()
    assert "WARNING: poor convergence" in report


def test_html_report_renders_in_headless_chromium_with_every_figure(result_dir, tmp_path):
    import re
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Debian chromium is not installed (.ci/run installs it)")
    report = result_dir / "report.html"
    proc = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", report.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    dom = proc.stdout
    total = re.search(r'data-images-total="(\d+)"', dom)
    loaded = re.search(r'data-images-loaded="(\d+)"', dom)
    assert total and loaded, dom[:500]
    n_figures = len(list((result_dir / "figures").glob("*.png")))
    assert int(total.group(1)) == n_figures >= 3
    assert int(loaded.group(1)) == n_figures
    assert "Posterior summaries" in dom
    # no table or figure runs past the text column (at headless Chromium's default window)
    assert 'data-overflow="none"' in dom, re.search(r"data-overflow=\"[^\"]*\"", dom)


def test_reanalyze_with_ipd_compares_the_severity_models_by_loo(ipd_run):
    """A successful `reanalyze --ipd` end to end: patient-level fits on the user's data (here a
    file in the IPD schema), and the PSIS-LOO comparison of the two severity models in
    model_comparison.csv and in the report. LOO is checked for consistency, not for a winner:
    elpd differences are relative to the best model (which has 0), weights sum to 1, and every
    patient has a Pareto k."""
    out = ipd_run  # conftest.BACKGROUND: a reconstructed dataset written as an IPD file
    loo = pd.read_csv(out / "model_comparison.csv").set_index("model")
    assert set(loo.index) == {"severity_ordinal", "severity_gaussian"}
    assert loo["elpd_diff"].max() == 0.0 and (loo["elpd_diff"] <= 0).all()  # 0 = the best
    assert loo["weight"].sum() == pytest.approx(1.0, abs=1e-6)
    assert (loo["n_patients"] == 52).all() and loo["pareto_k_max"].notna().all()
    assert "PSIS-LOO" in (out / "report.md").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert "model_comparison.csv" in manifest["outputs"]


def test_csvs_and_manifest_say_what_was_run(result_dir):
    """ipd_summary.csv has summary.csv's layout; the manifest gives each model's actual sampler
    settings (the IPD models adapt longer than requested); a predictive-check row without
    replications says why."""
    from khe_bayes.study.reanalysis import TUNE_IPD
    from khe_bayes.toolkit.settings import QUICK_TUNE
    from khe_bayes.toolkit.summary import DIAGNOSTIC_COLUMNS, STAT_COLUMNS

    layout = ["description", *STAT_COLUMNS, *DIAGNOSTIC_COLUMNS, "flag"]
    for name in ("summary.csv", "ipd_summary.csv"):
        columns = list(pd.read_csv(result_dir / name).columns)
        assert [c for c in columns if c in layout] == layout, name
    models = json.loads((result_dir / "manifest.json").read_text())["settings"]["models"]
    assert models["aggregate_proportions (uniform_beta)"]["tune"] == 200
    # each dataset's fit tries the quick warm-up first; the manifest's count of fits that kept
    # it must agree with the per-fit record in diagnostics.csv
    diag = pd.read_csv(result_dir / "diagnostics.csv", keep_default_na=False)
    response = diag[diag["model"] == "response"]
    assert len(response) == 2 and response["warmup"].str.match(r"(quick|full): ").all()
    n_quick = int(response["warmup"].str.startswith("quick").sum())
    tune = models["response"]["tune"]
    if n_quick == 0:
        assert tune == TUNE_IPD
    else:
        assert str(tune).startswith(f"{QUICK_TUNE} (quick) in {n_quick} fits")
        assert (f"{TUNE_IPD} in {2 - n_quick}" in tune) == (n_quick < 2)
    assert models["response"]["chains"] == 2
    report = (result_dir / "report.md").read_text()
    assert f"| response | 2 | 200 | {tune} |" in report
    ppc = pd.read_csv(result_dir / "ppc_reported.csv", keep_default_na=False)
    empty = ppc[ppc["n_replications"] == 0]
    assert len(empty) and empty["note"].str.startswith("not replicated").all()
