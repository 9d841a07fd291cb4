"""The report's assumptions and set-by-assumptions sections (issue 15), on a hand-built result:
the assumptions table is shown, estimands set by assumptions leave the headline table for their
own section, and the center forest plot follows center_sd's label."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from khe_bayes.study.identification import DETERMINED, SET
from khe_bayes.study.reconstruct import Assumptions, CenterSettings
from khe_bayes.study.report_sections import (
    _center_figure_set,
    assumptions_section,
    ipd_section,
    set_by_assumptions_section,
)
from khe_bayes.toolkit.report import Figure, render_markdown


def _result(center_label: str):
    quantities = ["response_rate[12m]", "center_sd", "kmp_effect"]
    labels = [DETERMINED, center_label, SET]
    summary = pd.DataFrame(
        {
            "model": "response",
            "identification": labels,
            "description": ["rate", "center SD", "kmp"],
            "mean": [0.95, 0.8, 0.2],
            "sd": [0.03, 0.6, 1.0],
            "hdi95_lb": [0.9, 0.0, -1.8],
            "hdi95_ub": [0.99, 1.9, 2.1],
            "mcse_mean": [0.001, 0.01, 0.3],
            "mc_error_ratio": [0.03, 0.02, 0.3],
            "ess_bulk": [1000.0] * 3,
            "r_hat": [1.0] * 3,
            "flag": [""] * 3,
        },
        index=pd.Index(quantities, name="quantity"),
    )
    ident = pd.DataFrame(
        {
            "model": "response",
            "quantity": quantities,
            "prior_sd": [0.25, 0.6, 1.0],
            "posterior_sd": [0.03, 0.6, 1.0],
            "contraction": [0.98, 0.0, 0.0],
            "reconstruction_share": [0.01, 0.0, 0.6],
            "spread_across_datasets_sd": [0.001, 0.0, 0.8],
            "label": labels,
            "reason": ["", "", ""],
        }
    )
    ipd = SimpleNamespace(
        source="reconstruction",
        datasets=[None],
        summary=summary,
        identification=ident,
        variance_share=None,
        loo=None,
    )
    return SimpleNamespace(
        ipd=ipd,
        assumptions=Assumptions().table(CenterSettings()),
        assumption_draws=pd.DataFrame({"baseline_sd": [0.7, 1.1]}),
        side_by_side_ipd=pd.DataFrame({"label": []}),
        dataset_growth={},
    )


def test_sections(tmp_path):
    result = _result(SET)
    forest = Figure(Path(tmp_path / "center_forest.png"), "forest")
    assert _center_figure_set(result, forest)
    assert not _center_figure_set(_result(DETERMINED), forest)
    md = render_markdown(
        "T",
        [
            assumptions_section(result),
            ipd_section(result, []),
            set_by_assumptions_section(result, []),
        ],
        tmp_path,
    )
    assumptions, rest = md.split("## Hierarchical models on patient data")
    headline, set_section = rest.split("## Estimands set by assumptions")
    assert "center_heterogeneity" in assumptions and "HalfNormal(sigma=0.5)" in assumptions
    assert "baseline_sd" in assumptions
    ident_table, head_table = headline.split("*Identification of each")
    head_table = head_table.split("*Headline posterior summaries")[0]
    assert "| response | response_rate[12m] | determined" in head_table
    assert "kmp_effect" not in head_table and "center_sd" not in head_table
    assert "kmp_effect" in ident_table and "response_rate[12m]" in ident_table
    assert "kmp_effect" in set_section and "center_sd" in set_section
