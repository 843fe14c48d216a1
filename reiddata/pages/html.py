"""A static page: ``index.html``, its data as ``data.js``, the shared script and style.

Pages open from disk (``file://``: no server, so no ``fetch``), which is why the data
is a script setting ``window.REID_PAGE`` rather than a JSON file. Nothing from a
dataset is ever written as HTML: the data is JSON with ``<``, ``>`` and ``&`` escaped
(a value holding ``</script>`` stays a string), the title is HTML-escaped, and the
scripts put every dataset value into the page as text (``textContent``,
``setAttribute``), never as markup.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

from ..output import atomic_output, is_ours_marker

__all__ = ["MARKER", "page_json", "write_page", "written_page"]

STATIC = Path(__file__).with_name("static")
MARKER = ".reiddata-page"  # a folder with it was written here, and may be replaced by a new page
_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}

_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="page.css">
</head>
<body>
<header><h1>{title}</h1><p class="sub">{subtitle}</p></header>
<main id="app"><noscript>This page needs JavaScript to show the data.</noscript></main>
<script src="data.js"></script>
<script src="common.js"></script>
<script src="{app}.js"></script>
</body>
</html>
"""


def page_json(data: object) -> str:
    """``data`` as JSON that is safe inside a script: no ``<``, ``>``, ``&`` or non-ASCII characters left."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    for char, escape in _ESCAPES.items():
        text = text.replace(char, escape)
    return text


def written_page(folder: Path, *, title: str, subtitle: str, app: str, data: dict) -> Path:
    """Write the page files into ``folder`` (which exists); returns ``folder / "index.html"``."""
    (folder / "data.js").write_text(f"window.REID_PAGE = {page_json(data)};\n")
    for name in ("common.js", "page.css", f"{app}.js"):
        shutil.copyfile(STATIC / name, folder / name)
    page = _TEMPLATE.format(title=html.escape(title), subtitle=html.escape(subtitle), app=app)
    (folder / "index.html").write_text(page)
    (folder / MARKER).write_text("written by reiddata: a page folder, replaced when the page is built again\n")
    return folder / "index.html"


def write_page(out: Path, build, *, inputs=()) -> Path:
    """Build a page folder atomically: ``build(tmp)`` fills a hidden folder that becomes
    ``out`` only when complete. An existing ``out`` is replaced only when it is one of
    our pages (it holds ``MARKER``); anything else there is refused, untouched."""
    with atomic_output(
        Path(out), overwrite=True, inputs=tuple(inputs), is_ours=is_ours_marker(MARKER), what="a reiddata page folder"
    ) as tmp:
        build(tmp)
    return Path(out) / "index.html"
