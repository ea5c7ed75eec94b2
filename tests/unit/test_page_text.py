"""Decoding and reading fetched pages: the charset order, pass-through, the JavaScript notice."""

from __future__ import annotations

import codecs
import random

import pytest

from sidecar.redaction import Redactor
from tests.support.pages import ARTICLE_SENTENCES, BOILERPLATE, article_html
from tests.support.secrets import assert_no_piece, random_secret
from tools.page_text import decode, read_page

TEXT = "Grüße aus Köln, sagte Zoë"


def test_a_byte_order_mark_wins_over_the_header() -> None:
    body = codecs.BOM_UTF8 + TEXT.encode("utf-8")
    assert decode(body, "iso-8859-1", html=False) == TEXT


def test_the_header_charset_wins_over_the_meta_tag() -> None:
    body = b'<meta charset="utf-8">' + TEXT.encode("windows-1252")
    assert decode(body, "windows-1252", html=True).endswith(TEXT)


def test_the_meta_tag_is_read_when_the_header_has_no_charset() -> None:
    body = b'<html><head><meta http-equiv="Content-Type" content="text/html; charset=iso-8859-15">'
    body += "<p>Prix: 5 €</p>".encode("iso-8859-15")
    assert "5 €" in decode(body, None, html=True)


def test_utf8_without_any_label_is_utf8() -> None:
    assert decode(TEXT.encode("utf-8"), None, html=True) == TEXT


def test_an_unknown_label_falls_back_to_detection() -> None:
    assert decode(TEXT.encode("utf-8"), "x-no-such-charset", html=False) == TEXT


def test_a_utf16_page_with_its_bom_is_decoded() -> None:
    body = codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le")
    assert decode(body, None, html=True) == TEXT


def test_html_without_a_content_type_is_recognised_and_extracted() -> None:
    page = read_page(
        article_html().encode(),
        media_type="",
        header_charset=None,
        output="markdown",
        max_chars=10_000,
    )
    assert page.title == "Rivers rise in the valley"
    assert ARTICLE_SENTENCES[0] in page.content
    assert BOILERPLATE[2] not in page.content


@pytest.mark.parametrize("media_type", ["application/json", "text/plain", "text/csv"])
def test_non_html_text_passes_through_unchanged(media_type: str) -> None:
    body = b'{"a": [1, 2]}\n<p>not html</p>'
    page = read_page(
        body, media_type=media_type, header_charset="utf-8", output="markdown", max_chars=100
    )
    assert page.content == body.decode()
    assert page.title is None


def test_a_short_page_without_scripts_keeps_its_text_and_no_notice() -> None:
    body = b"<html><body><p>Closed on Sundays.</p></body></html>"
    page = read_page(
        body, media_type="text/html", header_charset=None, output="text", max_chars=100
    )
    assert page.content == "Closed on Sundays."
    assert page.notice is None


@pytest.mark.parametrize("media_type", ["text/plain", "text/html"])
def test_a_page_cut_by_the_byte_cap_never_ends_in_a_piece_of_a_secret(media_type: str) -> None:
    secret = "wörd-" + random_secret(random.Random(12), 30)
    mask = Redactor([secret])
    page = f"<html><body><p>{'Rivers rise. ' * 30}{secret} and more text.</p></body></html>"
    data = page.encode()
    start = data.index(secret.encode())
    for end in range(start, start + len(secret.encode()) + 2):
        text = read_page(
            data[:end],
            media_type=media_type,
            header_charset="utf-8",
            output="text",
            max_chars=10_000,
            truncated=True,
            mask=mask,
        )
        assert_no_piece(text.content, secret, where=f"a page cut at byte {end}")


def test_content_is_redacted_whole_before_it_is_cut_at_max_chars() -> None:
    secret = random_secret(random.Random(13), 32)
    mask = Redactor([secret])
    for offset in range(40, 80):
        body = ("." * offset + secret + "." * 50).encode()
        text = read_page(
            body,
            media_type="text/plain",
            header_charset=None,
            output="text",
            max_chars=60,
            mask=mask,
        )
        assert len(text.content) <= 60
        assert text.truncated is (len(mask.redact(body.decode())) > 60)
        assert_no_piece(text.content, secret, where=f"content cut with the secret at {offset}")
