"""Personal numbers in free text: phone, ID-card and bank-card numbers.

`mask_pii` is applied to everything written to logs and shown in the trainer inbox.
"""

from __future__ import annotations

import re

MOBILE = re.compile(r"(?<!\d)(?:\+?86[-\s]?)?(1[3-9]\d[-\s]?\d{4}[-\s]?\d{4})(?!\d)")
LANDLINE = re.compile(r"(?<!\d)(0\d{2,3}-?\d{7,8})(?!\d)")
SERVICE = re.compile(r"(?<!\d)(95\d{3,4}|96\d{3}|400-?\d{3}-?\d{4})(?!\d)")
BANK_CARD = re.compile(r"(?<!\d)((?:\d{4}[\s-]?){3}\d{4}(?:[\s-]?\d{1,3})?)(?!\d)")
ID_CARD = re.compile(
    r"(?<!\d)(\d{6}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:[0-2]\d|3[01])\d{3}[\dXx])(?!\d)"
)


def digits_only(value: str) -> str:
    return re.sub(r"[^\dXx]", "", value)


def mask_pii(text: str) -> str:
    """Mask phone, ID-card and bank-card numbers for logs and the trainer inbox."""

    def keep_ends(match: re.Match, head: int, tail: int) -> str:
        value = match.group(1)
        digits = digits_only(value)
        return match.group(0).replace(
            value, digits[:head] + "*" * (len(digits) - head - tail) + digits[-tail:]
        )

    text = ID_CARD.sub(lambda m: keep_ends(m, 6, 4), text)
    text = BANK_CARD.sub(lambda m: keep_ends(m, 4, 4), text)
    text = MOBILE.sub(lambda m: keep_ends(m, 3, 4), text)
    text = LANDLINE.sub(lambda m: keep_ends(m, 4, 2), text)
    return text
