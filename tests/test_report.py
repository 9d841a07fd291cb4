"""Report rendering: the same sections to Markdown and self-contained HTML."""

from __future__ import annotations

import base64

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from khe_bayes.report import Figure, Section, Table, Text, render_html, render_markdown


def test_markdown_and_html_carry_the_same_content(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    fig.savefig(tmp_path / "f.png")
    plt.close(fig)
    frame = pd.DataFrame({"quantity": ["rate[a|b]"], "mean": [0.123456], "n": [3]})
    sections = [
        Section("Results")
        .add(Text("Intro with **bold**\n- item one\n- item two"))
        .add(Table(frame, caption="cap"))
        .add(Figure(tmp_path / "f.png", "a figure")),
    ]
    md = render_markdown("T", sections, tmp_path)
    assert "| quantity | mean | n |" in md
    assert "rate[a\\|b]" in md and "0.123" in md
    assert "![a figure](f.png)" in md
    html = render_html("T", sections, tmp_path)
    assert "<strong>bold</strong>" in html and "<li>item one</li>" in html
    payload = base64.b64encode((tmp_path / "f.png").read_bytes()).decode()
    assert f"data:image/png;base64,{payload}" in html
    assert "<td>rate[a|b]</td>" in html
