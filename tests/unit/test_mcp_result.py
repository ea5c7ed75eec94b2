"""The result of an MCP tool call as the model reads it, and its size cap."""

from __future__ import annotations

import json
import random

from sidecar.redaction import Redactor
from tests.support.secrets import assert_no_piece, random_secret
from tools.mcp import call_result


def size(value: object) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode())


def test_a_small_answer_is_kept_whole() -> None:
    content = [{"type": "text", "text": "5"}]
    assert call_result(content, {"result": 5}, False) == {
        "content": content,
        "structured_content": {"result": 5},
        "is_error": False,
    }


def test_a_large_answer_keeps_the_first_blocks_and_cuts_the_one_that_overflows() -> None:
    blocks = [{"type": "text", "text": "é" * 300}, {"type": "text", "text": "b" * 5000}]
    blocks.append({"type": "image", "data": "A" * 9000, "mimeType": "image/png"})
    result = call_result(blocks, {"big": "c" * 5000}, True, max_bytes=2000)
    assert result["truncated"] is True
    assert result["is_error"] is True
    assert "structured_content" not in result
    content = result["content"]
    assert isinstance(content, list)
    assert content[0] == blocks[0]
    assert len(content) == 2
    assert size(result) <= 2000
    assert size(result) > 1900, "the cut block fills what is left"


def test_a_secret_across_the_cut_of_a_text_block_never_leaves_in_part() -> None:
    secret = random_secret(random.Random(11), 40)
    mask = Redactor([secret])
    room = 400
    for offset in range(room - 60, room + 10):
        block = {"type": "text", "text": "." * offset + secret + "." * 600}
        result = call_result([block], None, False, max_bytes=room, mask=mask)
        assert result["truncated"] is True
        assert size(result) <= room
        assert_no_piece(json.dumps(result), secret, where=f"a block cut near {offset}")
