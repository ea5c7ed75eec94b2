"""Turning fetched bytes into text a model can read: decoding, then main-content extraction.

Decoding follows the order browsers use: a byte-order mark, then the `charset` of
the Content-Type header, then a `<meta>` charset in the first 4 KB of an HTML page,
then detection (charset-normalizer), and UTF-8 with replacement characters last.

HTML pages go through trafilatura, which keeps the main content (the article) and
drops navigation, ads, footers and the like, as Markdown, plain text or clean HTML.
JSON and plain text pass through as they are. These are CPU-bound: the scraper calls
`read_page` in a worker thread.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import Literal, TypeAlias

from charset_normalizer import from_bytes

from tools.base import NO_SECRETS, SecretMask

__all__ = ["OutputFormat", "PageText", "decode", "read_page"]

OutputFormat: TypeAlias = Literal["markdown", "text", "html"]

BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
PRESCAN_BYTES = 4096
DETECTION_BYTES = 65_536
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
TRAFILATURA_FORMATS = {"markdown": "markdown", "text": "txt", "html": "html"}
# Below this many characters of visible text, a page that runs scripts is taken to
# be one that builds its content with JavaScript.
SCRIPT_PAGE_TEXT_MIN = 200
SCRIPT_NOTICE = (
    "The page shows almost no text without JavaScript, and the scraper does not run "
    "JavaScript: its content could not be read. Another source may have it."
)


@dataclass(frozen=True)
class PageText:
    """The readable form of a page."""

    title: str | None
    content: str
    truncated: bool
    notice: str | None = None


def decode(body: bytes, header_charset: str | None, *, html: bool) -> str:
    """The text of `body`, its encoding found as browsers find it."""
    for bom, bom_encoding in BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(bom_encoding, errors="replace")
    for candidate in (header_charset, _meta_charset(body) if html else None):
        declared = _known(candidate)
        if declared is not None:
            return body.decode(declared, errors="replace")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    return body.decode(_detected(body) or "utf-8", errors="replace")


def _detected(body: bytes) -> str | None:
    """The likeliest encoding; on a tie, windows-1252 (the web's usual legacy default)."""
    matches = from_bytes(body[:DETECTION_BYTES])
    best = matches.best()
    if best is None:
        return None
    tied = [m for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
    chosen = next((m for m in tied if m.encoding == "cp1252"), best)
    return _known(chosen.encoding)


def read_page(
    body: bytes,
    *,
    media_type: str,
    header_charset: str | None,
    output: OutputFormat,
    max_chars: int,
    truncated: bool = False,
    mask: SecretMask = NO_SECRETS,
) -> PageText:
    """The page's title and readable content, cut at `max_chars`.

    `truncated`: the body was cut by the byte cap, so its end may cut through a
    secret; the page is redacted (that end included) before it is read. The content
    is redacted whole before it is cut at `max_chars`.
    """
    is_html = media_type in HTML_TYPES or (not media_type and _looks_like_html(body))
    text = decode(body, header_charset, html=is_html)
    if truncated:
        text = mask.redact_truncated(text)
    if not is_html:
        return _cut(None, text, max_chars, mask)
    # Imported on the first page read: the extractor and its dependencies hold about
    # 20 MiB, which a service that never scrapes need not carry.
    import trafilatura
    from trafilatura.metadata import extract_title

    tree = trafilatura.load_html(text)  # parsed once, for the title and the content
    title = extract_title(tree) if tree is not None else None
    content = trafilatura.extract(
        tree if tree is not None else text,
        output_format=TRAFILATURA_FORMATS[output],
        include_comments=False,
        include_tables=True,
        include_links=output != "text",
        with_metadata=False,
        favor_recall=True,
    )
    content = (content or "").strip()
    if len(content) < SCRIPT_PAGE_TEXT_MIN:
        visible = _visible_text(text)
        if len(visible) < SCRIPT_PAGE_TEXT_MIN and _runs_scripts(text):
            return PageText(title, visible, False, SCRIPT_NOTICE)
        content = content or visible
    return _cut(title, content, max_chars, mask)


def _cut(title: str | None, content: str, max_chars: int, mask: SecretMask) -> PageText:
    kept = mask.cut(content, max_chars)
    # Masks can shorten the content: it was cut only if it still filled the limit.
    return PageText(title, kept, len(content) > max_chars and len(kept) == max_chars)


def _visible_text(text: str) -> str:
    """The body's text without scripts and styles, whitespace collapsed."""
    from lxml import html as lxml_html

    try:
        document = lxml_html.document_fromstring(text)
    except (ValueError, lxml_html.etree.ParserError):
        return ""
    for element in document.xpath("//script|//style|//noscript|//template"):
        element.drop_tree()
    body = document.find("body")
    words = (body if body is not None else document).text_content().split()
    return " ".join(words)


def _runs_scripts(text: str) -> bool:
    return "<script" in text.lower()


def _looks_like_html(body: bytes) -> bool:
    start = body[:512].lstrip().lower()
    return start.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


def _meta_charset(body: bytes) -> str | None:
    found = META_CHARSET.search(body[:PRESCAN_BYTES])
    return found.group(1).decode("ascii", errors="ignore") if found else None


def _known(name: str | None) -> str | None:
    """The Python codec of a charset label, or None when Python does not know it."""
    if not name:
        return None
    label = name.strip().lower()
    # Browsers read "iso-8859-1" and "us-ascii" as windows-1252, a superset of both.
    if label in ("iso-8859-1", "latin1", "latin-1", "us-ascii", "ascii"):
        label = "windows-1252"
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None
