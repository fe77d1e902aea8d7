"""The short key of an example's content hash, which the database indexes instead of the text.

A 64-character hex hash in an index made each entry about 100 bytes, and a million-line import
wrote every page of two such indexes (random keys) again with each batch; an 8-byte integer
makes the entries a fraction of that. Two different examples share a key by chance with a
probability of about n² / 2⁶⁵ (1 in 40 million for a project of a million examples): such a
pair would count as one example and its copy.
"""

from __future__ import annotations

import hashlib

_SIGN = 1 << 63


def hash_key(content_hash: str) -> int:
    """The first 8 bytes of the hex digest as a signed 64-bit integer (SQLite's INTEGER)."""
    try:
        value = int(content_hash[:16], 16)
    except ValueError:  # not a hex digest: a row written by hand (a test, a tool)
        value = int.from_bytes(hashlib.blake2b(content_hash.encode(), digest_size=8).digest())
    return value - 2 * _SIGN if value >= _SIGN else value
