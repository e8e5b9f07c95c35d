"""A payload ready to store: its bytes, length and sha256, computed once outside the transaction."""

from __future__ import annotations

import hashlib

__all__ = ["PreparedPayload"]


class PreparedPayload:
    """Payload bytes with their length and raw sha256 digest, computed once outside the transaction."""

    __slots__ = ("data", "sha256", "size")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)
        self.sha256 = hashlib.sha256(data).digest()
