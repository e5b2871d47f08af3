"""A static copy of a results folder to browse without Jupyter: ``<results>/html/``.

`export_html` renders every executed notebook with nbconvert, the Markdown reports (``REPORT.md``,
``BENCH.md``) with mistune, and writes ``index.html`` linking them and showing every figure (the PNGs
stay in ``figures/`` and are linked, not copied). The JupyterLab CSS that nbconvert inlines into every
notebook page is written once, to ``notebook.css``, which the pages link instead. The folder is replaced
as a unit, so a failed export leaves the previous copy. The runner calls it after every successful run.

Example:
    >>> export_html(Path("results"))  # doctest: +SKIP
    PosixPath('results/html/index.html')
"""

from __future__ import annotations

import html
import re
from itertools import takewhile
from pathlib import Path

import mistune
from nbconvert import HTMLExporter

from lsa_utils.infra.cache import atomic_dir

REPORTS = ("REPORT.md", "BENCH.md")
SHEET = "notebook.css"
STYLE = re.compile(r'<style(?: type="text/css")?>(.*?)</style>', re.DOTALL)
PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body {{font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem;
line-height: 1.45}} table {{border-collapse: collapse}} td, th {{border: 1px solid #ccc; padding: 0.2rem 0.5rem}}
img {{max-width: 100%}} figure {{margin: 1.5rem 0}} code {{background: #f4f4f4}}</style></head>
<body>
{body}
</body></html>
"""


def export_html(results_dir: Path) -> Path:
    """Write ``results_dir/html/`` (see the module docstring) and return its index page."""
    results_dir = Path(results_dir)
    with atomic_dir(results_dir / "html") as folder:
        notebooks = _notebook_pages(sorted((results_dir / "executed").glob("*.ipynb")), folder)
        reports = [_report_page(results_dir / name, folder) for name in REPORTS if (results_dir / name).exists()]
        figures = sorted((results_dir / "figures").glob("*.png"))
        tables = sorted((results_dir / "tables").glob("*.csv"))
        (folder / "index.html").write_text(_index(results_dir.name, notebooks, reports, figures, tables),
                                           encoding="utf-8")
    return results_dir / "html" / "index.html"


def _notebook_pages(notebooks: list[Path], folder: Path) -> list[str]:
    """Render `notebooks` with nbconvert's lab template into `folder`, sharing their CSS; return the page names."""
    bodies = _share_css([HTMLExporter(template_name="lab").from_filename(str(nb))[0] for nb in notebooks],
                        folder / SHEET)
    pages = [f"{notebook.stem}.html" for notebook in notebooks]
    for page, body in zip(pages, bodies):
        (folder / page).write_text(body, encoding="utf-8")
    return pages


def _share_css(pages: list[str], sheet: Path) -> list[str]:
    """Move the leading head ``<style>`` blocks common to all `pages` into `sheet`; return the pages linking it.

    nbconvert can only inline its CSS (the lab template's ``resources.include_css``), ~260 kB a page. The link
    takes the place of the blocks it replaces, so the cascade is unchanged; blocks that differ stay inline.
    """
    runs = [_head_styles(page) for page in pages]
    shared = len(list(takewhile(lambda blocks: len({b.group(0) for b in blocks}) == 1, zip(*runs))))
    if not shared:
        return pages
    sheet.write_text("\n".join(block.group(1) for block in runs[0][:shared]), encoding="utf-8")
    link = f'<link rel="stylesheet" href="{sheet.name}">'
    return [page[:run[0].start()] + link + page[run[shared - 1].end():] for page, run in zip(pages, runs)]


def _head_styles(page: str) -> list[re.Match[str]]:
    """The first run of ``<style>`` blocks in the page's head with only whitespace between them."""
    head = page[:page.index("</head>")]
    run: list[re.Match[str]] = []
    for block in STYLE.finditer(head):
        if run and head[run[-1].end():block.start()].strip():
            break
        run.append(block)
    return run


def _report_page(report: Path, folder: Path) -> str:
    page = f"{report.stem}.html"
    body = mistune.html(report.read_text(encoding="utf-8"))
    (folder / page).write_text(PAGE.format(title=report.name, body=body), encoding="utf-8")
    return page


def _index(name: str, notebooks: list[str], reports: list[str], figures: list[Path], tables: list[Path]) -> str:
    def links(pages: list[str]) -> str:
        return "<ul>" + "".join(f'<li><a href="{html.escape(p)}">{html.escape(p)}</a></li>' for p in pages) + "</ul>"

    shown = "".join(f'<figure><img src="../figures/{html.escape(f.name)}" alt="{html.escape(f.stem)}">'
                    f"<figcaption>{html.escape(f.name)}</figcaption></figure>" for f in figures)
    body = (f"<h1>Results: {html.escape(name)}</h1>"
            f"<h2>Reports</h2>{links(reports)}<h2>Executed notebooks</h2>{links(notebooks)}"
            f"<h2>Tables (CSV)</h2>{links(['../tables/' + t.name for t in tables])}<h2>Figures</h2>{shown}")
    return PAGE.format(title=f"Results: {name}", body=body)
