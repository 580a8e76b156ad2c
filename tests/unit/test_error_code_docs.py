"""The error-code reference page lists every platform code with its status."""

from __future__ import annotations

from pathlib import Path

from bastion.errors.catalog import PLATFORM_CODES

DOC = Path(__file__).parents[2] / "docs" / "reference" / "error-codes.md"


def test_every_platform_code_is_documented_with_its_status() -> None:
    text = DOC.read_text()
    missing = [
        code for code, status in PLATFORM_CODES.items() if f"| `{code}` | {status} |" not in text
    ]
    assert missing == []
