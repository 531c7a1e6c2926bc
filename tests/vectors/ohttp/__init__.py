"""The RFC 9292 and RFC 9458 examples vendored beside this file (IETF Trust; see README.md here).

A missing or unreadable file is a test failure, never a skip: the vectors are the evidence that
the encodings match the RFCs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DIR = Path(__file__).resolve().parent


def load(name: str) -> dict[str, Any]:
    """One vector file, by its name without ``.json``."""
    data: dict[str, Any] = json.loads((DIR / f"{name}.json").read_text(encoding="utf-8"))
    return data


def binary(name: str, key: str) -> bytes:
    """A hex value of a vector file, as bytes."""
    return bytes.fromhex(load(name)[key])
