"""Stable 64-bit text hashes: row keys for duplicate detection (prepare) and duplicate-free batches (samplers)."""

from __future__ import annotations

import hashlib

import numpy as np


def hash_texts(texts: list[str]) -> np.ndarray:
    """Hash texts to uint64 keys that are identical in every process and on every run.

    Uses xxhash (xxh3, 64 bits) when it is installed, else blake2b with an 8-byte digest. Python's
    ``hash()`` is salted per process and would give each DDP rank a different batch plan. The two
    functions give different values, but the sampler only compares keys for equality, so its plan is
    the same either way (barring a 64-bit collision).

    Args:
        texts: the texts of one column, one per row.

    Returns:
        (len(texts),) uint64 array; stack the columns into (num_rows, num_columns) for the sampler.

    >>> bool(hash_texts(["a", "b", "a"])[0] == hash_texts(["a"])[0])
    True
    """
    try:
        import xxhash

        digest = xxhash.xxh3_64_intdigest
    except ImportError:

        def digest(data: bytes) -> int:
            return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")

    return np.fromiter((digest(t.encode("utf-8")) for t in texts), dtype=np.uint64, count=len(texts))
