"""Envelope sizes come from the real sealing code; padding is what hides the kind."""

from __future__ import annotations

import pytest

from sotto.audit.leakage.sizes import (
    ROTATION_LENGTH,
    TYPING_LENGTH,
    Padding,
    SizeModel,
    receipt_length,
    text_length,
)
from sotto.wire.padding import BUCKETS


@pytest.fixture(scope="module")
def sizes() -> SizeModel:
    return SizeModel()


def test_buckets_hide_short_texts_receipts_typing_and_rotation(sizes: SizeModel) -> None:
    contents = [text_length(n) for n in (1, 40, 200)] + [receipt_length(3), TYPING_LENGTH, ROTATION_LENGTH]
    padded = {sizes.envelope(c, Padding.BUCKETS) for c in contents}
    assert len(padded) == 1
    assert padded <= set(BUCKETS)
    unpadded = {sizes.envelope(c, Padding.NONE) for c in contents}
    assert len(unpadded) >= 4


def test_sizes_grow_with_content_and_sealing_costs_bytes(sizes: SizeModel) -> None:
    small, large = text_length(10), text_length(3_000)
    for padding in Padding:
        assert sizes.envelope(large, padding) > sizes.envelope(small, padding)
    assert sizes.envelope(small, Padding.NONE) > sizes.envelope(small, Padding.IDENTIFIED)
    # Signal pads content to multiples of 160 bytes: 10 and 100 bytes of text look alike.
    assert sizes.envelope(text_length(10), Padding.SIGNAL160) == sizes.envelope(
        text_length(100), Padding.SIGNAL160
    )
    assert sizes.envelope(text_length(1_000), Padding.BUCKETS) in BUCKETS
