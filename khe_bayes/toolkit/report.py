"""The readable report: sections of text, tables and figures, rendered to Markdown and to one
self-contained HTML file (figures embedded as base64), from the same content."""

from __future__ import annotations

import base64
import html
import re
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
    css_class: str = ""  # e.g. "first-screen": the summary the report opens with

    def add(self, block: Text | Table | Figure) -> Section:
        self.blocks.append(block)
        return self


# Column names whose values are counts (printed as integers) or probabilities (3 decimals).
_INTEGER = re.compile(r"^(ess|min_ess|n$|n_|events$|draws$|chains$|divergences$|dataset$|tune$)")
_PROBABILITY = re.compile(r"(^p_|^ppp|probability|share|^evidence$|weight)")
_RHAT = re.compile(r"r_hat")
_MCSE = re.compile(r"(^mcse|_mcse$|^se$|^dse$)")


def format_number(value: object, column: str = "", digits: int = 3) -> str:
    """A number as a person reads it: never ``nan``/``None`` (blank instead), never scientific
    notation. By column: counts and ESS as integers, R-hat with 3 decimals, probabilities with
    3 decimals, MCSE with 2 significant digits, anything else with ``digits`` significant
    digits (at most 4 decimals; smaller non-zero values print as ``<0.0001``)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if not isinstance(value, float | np.floating):
        text = str(value)
        return "" if text in ("nan", "None", "NaN", "<NA>") else text
    value = float(value)
    if not np.isfinite(value):
        return "" if np.isnan(value) else ("inf" if value > 0 else "-inf")
    name = column.lower()
    if _INTEGER.search(name) and not _PROBABILITY.search(name):
        return f"{value:.0f}"
    if _RHAT.search(name):
        return f"{value:.3f}"
    if _PROBABILITY.search(name):
        return _fixed(value, 3)
    sig = 2 if _MCSE.search(name) else digits
    if value.is_integer():  # a threshold of 10 or a printed 96: no invented decimals
        return f"{value:.0f}"
    magnitude = int(np.floor(np.log10(abs(value))))
    decimals = min(max(sig - 1 - magnitude, 0), 4 if sig > 2 else 5)
    return _fixed(value, decimals)


def _fixed(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    if value != 0 and float(text) == 0:  # too small for the decimals: say so, not "0.000"
        bound = f"{10.0**-decimals:.{decimals}f}"
        return f"<{bound}" if value > 0 else f">-{bound}"
    return text


def _verdict_first(frame: pd.DataFrame) -> pd.DataFrame:
    """A ``verdict`` (or ``status``) column goes next to what it judges: after the row's
    identifying text columns (``statistic``/``interpretation`` or the first column), so it stays
    in view when the numbers beside it scroll."""
    judged = [c for c in ("verdict", "status") if c in frame.columns]
    if not judged:
        return frame
    # right after the one column that names the row, so long text columns (interpretation, the
    # kind of check) cannot push it out of view
    keys = [c for c in ("statistic", "quantity", "model") if c in frame.columns]
    key = keys[0] if keys else frame.columns[0]
    rest = [c for c in frame.columns if c not in judged and c != "check"]
    at = rest.index(key) + 1 if key in rest else 1
    after = ["check"] if "check" in frame.columns and "check" not in judged else []
    return frame[[*rest[:at], *judged, *after, *rest[at:]]]


def _cells(table: Table) -> tuple[list[str], list[list[str]]]:
    frame = table.frame.reset_index() if table.index else table.frame
    frame = _verdict_first(frame)
    header = [str(c) for c in frame.columns]
    rows = [
        [format_number(v, h, table.digits) for v, h in zip(row, header, strict=True)]
        for row in frame.itertuples(index=False)
    ]
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


def _numeric(cell: str) -> bool:
    return bool(cell) and _NUMBER.fullmatch(cell) is not None


_NUMBER = re.compile(r"[<>]?-?[0-9][0-9.]*%?|-?inf")


def _esc(cell: str) -> str:
    return html.escape(cell)


def _td(cell: str) -> str:
    if _numeric(cell):
        return f'<td class="num">{html.escape(cell)}</td>'
    # long text keeps a readable width; the table scrolls instead of squeezing it
    cls = ' class="long"' if len(cell) > 40 else ""
    return f"<td{cls}>{_esc(cell)}</td>"


def _header_html(name: str) -> str:
    # long column names may break after an underscore or a dot instead of widening the table
    return html.escape(name).replace("_", "_<wbr>").replace(".", ".<wbr>")


def _html_table(table: Table) -> str:
    header, rows = _cells(table)
    head = "".join(f"<th>{_header_html(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in rows)
    cap = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    # a table wider than the page scrolls inside its own box, never the page
    return (
        f'<div class="table-wrap"><table>{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _html_figure(fig: Figure, figure_dir: Path) -> str:
    path = fig.path if fig.path.is_absolute() else figure_dir / fig.path
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(fig.caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(fig.caption)}</figcaption></figure>"
    )


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em;color:#222;
line-height:1.4}
h1{font-size:1.5em;margin:0.2em 0 0.4em} h2{margin-top:1.6em}
.table-wrap{max-width:100%;overflow-x:auto;margin:1em 0}
table{border-collapse:collapse;font-size:0.85em}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
td{max-width:30em;overflow-wrap:break-word}
td.long{min-width:14em}
td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
th{background:#f2f2f2;min-width:3em} caption{caption-side:bottom;font-style:italic;text-align:left}
img{max-width:100%;height:auto} figure{margin:1em 0} figcaption{font-style:italic;font-size:0.9em}
nav ol{list-style:none;padding:0;margin:0.3em 0 0.8em;font-size:0.9em}
nav li{display:inline-block;margin:0 1.3em 0.15em 0}
section.first-screen{border:1px solid #bcd;background:#f6f9fc;padding:0.1em 1em 0.4em;
border-radius:6px}
section.first-screen h2{margin-top:0.5em}
section.first-screen table{font-size:0.95em}
section.first-screen p,section.first-screen ul{margin:0.4em 0}
"""

# Marks on <body> how many figures decoded, so a headless browser can check the report renders.
_IMAGE_CHECK = (
    "<script>window.addEventListener('load',()=>{const i=[...document.images];"
    "document.body.dataset.imagesTotal=i.length;"
    "document.body.dataset.imagesLoaded=i.filter(x=>x.complete&&x.naturalWidth>0).length;});"
    "</script>"
)


# Marks on <body> every table or figure that runs past the text column (a table may be wider
# only inside its scrolling box), and every "verdict" column hidden in a scrolled-off part of
# its table, so a headless browser at a given window width can check the layout.
_LAYOUT_CHECK = (
    "<script>window.addEventListener('load',()=>{const b=document.body,"
    "cs=getComputedStyle(b),br=b.getBoundingClientRect(),"
    "right=br.right-parseFloat(cs.paddingRight)+1,bad=[];"
    "const de=document.documentElement;"
    "if(de.scrollWidth>de.clientWidth+1)bad.push('page:'+de.scrollWidth);"
    "document.querySelectorAll('.table-wrap,figure,img,table').forEach((e,i)=>{"
    "if(e.tagName==='TABLE'&&e.closest('.table-wrap'))return;"
    "const r=e.getBoundingClientRect();"
    "if(r.right>right)bad.push(e.tagName.toLowerCase()+i+':'+Math.round(r.right));});"
    "document.querySelectorAll('th').forEach((h,i)=>{if(h.textContent.trim()!=='verdict')return;"
    "const w=h.closest('.table-wrap');if(!w)return;"
    "if(h.getBoundingClientRect().right>w.getBoundingClientRect().right+1)"
    "bad.push('verdict'+i+':hidden');});"
    "b.dataset.layoutRight=Math.round(right);"
    "b.dataset.overflow=bad.length?bad.join(' '):'none';});</script>"
)


def render_html(title: str, sections: list[Section], figure_dir: Path) -> str:
    """One self-contained page. A leading "first-screen" section comes before the table of
    contents, so the page opens on it."""
    toc = "".join(
        f'<li><a href="#s{i}">{html.escape(s.title)}</a></li>' for i, s in enumerate(sections)
    )
    nav = f"<nav><ol>{toc}</ol></nav>"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    first = 1 if sections and sections[0].css_class == "first-screen" else 0
    for i, s in enumerate(sections):
        if i == first:
            parts.append(nav)
        cls = f' class="{html.escape(s.css_class)}"' if s.css_class else ""
        parts.append(f'<section id="s{i}"{cls}><h2>{html.escape(s.title)}</h2>')
        for b in s.blocks:
            if isinstance(b, Text):
                parts.append(_html_text(b.text))
            elif isinstance(b, Table):
                parts.append(_html_table(b))
            else:
                parts.append(_html_figure(b, figure_dir))
        parts.append("</section>")
    if len(sections) <= first:
        parts.append(nav)
    parts.append(_IMAGE_CHECK)
    parts.append(_LAYOUT_CHECK)
    parts.append("</body></html>")
    return "\n".join(parts)
