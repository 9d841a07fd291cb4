"""The readable report: sections of text, tables and figures, rendered to Markdown and to one
self-contained HTML file (figures embedded as base64), from the same content."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Text:
    """A paragraph; lines starting with '- ' become list items. **bold** is kept in both."""

    text: str


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame
    caption: str = ""
    index: bool = False
    digits: int = 3


@dataclass(frozen=True)
class Figure:
    path: Path
    caption: str


@dataclass
class Section:
    title: str
    blocks: list[Text | Table | Figure] = field(default_factory=list)

    def add(self, block: Text | Table | Figure) -> Section:
        self.blocks.append(block)
        return self


def _fmt(value, digits: int) -> str:
    if isinstance(value, float | np.floating):
        if np.isnan(value):
            return ""
        if value != 0 and (abs(value) < 10 ** (-digits) or abs(value) >= 1e6):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return str(value)


def _cells(table: Table) -> tuple[list[str], list[list[str]]]:
    frame = table.frame.reset_index() if table.index else table.frame
    header = [str(c) for c in frame.columns]
    rows = [[_fmt(v, table.digits) for v in row] for row in frame.itertuples(index=False)]
    return header, rows


def _md_table(table: Table) -> str:
    header, rows = _cells(table)

    def esc(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    out = "\n".join(lines)
    return f"{out}\n\n*{table.caption}*" if table.caption else out


def render_markdown(title: str, sections: list[Section], figure_dir: Path) -> str:
    parts = [f"# {title}\n"]
    for s in sections:
        parts.append(f"## {s.title}\n")
        for b in s.blocks:
            if isinstance(b, Text):
                parts.append(b.text.strip() + "\n")
            elif isinstance(b, Table):
                parts.append(_md_table(b) + "\n")
            else:
                rel = b.path.relative_to(figure_dir) if b.path.is_absolute() else b.path
                parts.append(f"![{b.caption}]({rel.as_posix()})\n\n*{b.caption}*\n")
    return "\n".join(parts)


def _html_text(text: str) -> str:
    out, items = [], []
    for line in text.strip().splitlines():
        esc = html.escape(line)
        while "**" in esc and esc.count("**") >= 2:
            esc = esc.replace("**", "<strong>", 1).replace("**", "</strong>", 1)
        if line.startswith("- "):
            items.append(f"<li>{esc[2:]}</li>")
            continue
        if items:
            out.append("<ul>" + "".join(items) + "</ul>")
            items = []
        out.append(f"<p>{esc}</p>")
    if items:
        out.append("<ul>" + "".join(items) + "</ul>")
    return "\n".join(out)


def _html_table(table: Table) -> str:
    header, rows = _cells(table)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    cap = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_figure(fig: Figure, figure_dir: Path) -> str:
    path = fig.path if fig.path.is_absolute() else figure_dir / fig.path
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(fig.caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(fig.caption)}</figcaption></figure>"
    )


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.85em}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f2f2f2} caption{caption-side:bottom;font-style:italic;text-align:left}
img{max-width:100%} figcaption{font-style:italic;font-size:0.9em}
nav li{margin:0.1em 0}
"""

# Marks on <body> how many figures decoded, so a headless browser can check the report renders.
_IMAGE_CHECK = (
    "<script>window.addEventListener('load',()=>{const i=[...document.images];"
    "document.body.dataset.imagesTotal=i.length;"
    "document.body.dataset.imagesLoaded=i.filter(x=>x.complete&&x.naturalWidth>0).length;});"
    "</script>"
)


def render_html(title: str, sections: list[Section], figure_dir: Path) -> str:
    toc = "".join(
        f'<li><a href="#s{i}">{html.escape(s.title)}</a></li>' for i, s in enumerate(sections)
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><nav><ol>{toc}</ol></nav>",
    ]
    for i, s in enumerate(sections):
        parts.append(f'<section id="s{i}"><h2>{html.escape(s.title)}</h2>')
        for b in s.blocks:
            if isinstance(b, Text):
                parts.append(_html_text(b.text))
            elif isinstance(b, Table):
                parts.append(_html_table(b))
            else:
                parts.append(_html_figure(b, figure_dir))
        parts.append("</section>")
    parts.append(_IMAGE_CHECK)
    parts.append("</body></html>")
    return "\n".join(parts)
