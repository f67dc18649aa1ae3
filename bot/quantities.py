"""Kubernetes memory quantities as a responder types them: `512Mi`, `2Gi`, `1500M`.

The grammar is deliberately narrower than Kubernetes' own: a whole number and a unit
suffix, always. A bare number means bytes to the API server, and `512` bytes is
never what someone raising a memory limit meant; `2Gb`, `1.5Gi`, `1e9` and `-1Mi`
are refused rather than guessed at. `format_memory` writes the shortest exact form,
which `parse_memory` reads back, so a limit is stored and shown the way Kubernetes
itself canonicalises it (`1024Mi` is `1Gi`).
"""

from __future__ import annotations

import re

_QUANTITY = re.compile(r"^([0-9]{1,15})(Ki|Mi|Gi|Ti|k|M|G|T)$")
_BINARY = (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))
_DECIMAL = (("T", 10**12), ("G", 10**9), ("M", 10**6), ("k", 10**3))
_FACTORS = dict(_BINARY + _DECIMAL)


def parse_memory(text: str) -> int:
    """Bytes in `512Mi`-style text; ValueError with a readable message otherwise."""
    match = _QUANTITY.match(text.strip())
    if match is None:
        raise ValueError(
            f"`{text}` is not a memory quantity; use a whole number and a unit, "
            "like 512Mi or 2Gi (Ki, Mi, Gi, Ti, or k, M, G, T)"
        )
    amount = int(match[1]) * _FACTORS[match[2]]
    if amount <= 0:
        raise ValueError(f"`{text}` must be more than zero")
    return amount


def format_memory(amount: int) -> str:
    """The shortest exact quantity for `amount` bytes (`1Gi`, `1500M`; a binary unit wins
    a tie), else plain bytes, which the API server also takes."""
    exact = [
        f"{amount // factor}{suffix}"
        for suffix, factor in (*_BINARY, *_DECIMAL)
        if amount and amount % factor == 0
    ]
    return min(exact, key=len, default=str(amount))
