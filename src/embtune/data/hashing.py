"""Stable 64-bit text hashes: row keys for duplicate detection (prepare) and duplicate-free batches (samplers)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

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


_SLOTS_PER_KEY = 16  # bitmap slots per key: ~6 % of keys land on a used slot and get the exact check


def shared_key_rows(chunks: Callable[[], Iterable[tuple[int, np.ndarray]]], num_rows: int) -> np.ndarray:
    """Sorted indices of the rows that share a key with another row (a key repeated inside one row does not count).

    Rows outside this set can never clash with any other row, so the no-duplicates sampler and the duplicate
    count only look at the rows inside it. Memory is two bitmaps of 2 bytes per key plus the candidates, never
    a sort of all keys: pass one marks each key's slot once or twice; pass two collects the keys on slots marked
    twice and compares those exactly.

    Args:
        chunks: called twice; each call iterates ``(first_row, keys)`` over consecutive chunks of the
            (num_rows, num_columns) integer key array (``npy_io.read_chunks``, or slices of an array).
        num_rows: the number of rows.

    >>> keys = np.array([[1, 1], [2, 3], [4, 5], [5, 6]], dtype=np.uint64)
    >>> shared_key_rows(lambda: [(0, keys)], 4).tolist()
    [2, 3]
    """
    width = next((int(np.prod(c.shape[1:])) for _, c in chunks() if len(c)), 0)  # keys per row
    if width == 0 or num_rows == 0:
        return np.zeros(0, dtype=np.int64)
    bits = max(1 << 16, -(-num_rows * width * _SLOTS_PER_KEY // 8) * 8)
    once, twice = np.zeros(bits // 8, dtype=np.uint8), np.zeros(bits // 8, dtype=np.uint8)
    modulus = np.uint64(bits)  # slot = key mod bits (the keys are uniform 64-bit hashes)
    for _, chunk in chunks():
        slots, _ = _row_distinct(chunk, modulus)
        slots, counts = np.unique(slots, return_counts=True)
        byte, bit = slots >> 3, (np.uint8(1) << (slots & 7).astype(np.uint8))
        again = ((once[byte] & bit) != 0) | (counts > 1)
        np.bitwise_or.at(twice, byte[again], bit[again])
        np.bitwise_or.at(once, byte, bit)
    del once
    keys_found, rows_found = [], []
    for first, chunk in chunks():
        slots, (rows, cols) = _row_distinct(chunk, modulus)
        hit = (twice[slots >> 3] & (np.uint8(1) << (slots & 7).astype(np.uint8))) != 0
        keys_found.append(np.asarray(chunk, dtype=np.uint64)[rows[hit], cols[hit]])
        rows_found.append(rows[hit].astype(np.int64) + first)
    keys, rows = np.concatenate(keys_found), np.concatenate(rows_found)
    order = np.argsort(keys, kind="stable")
    keys, rows = keys[order], rows[order]
    repeated = np.zeros(len(keys), dtype=bool)
    same = keys[1:] == keys[:-1]  # keys are distinct inside a row, so equal neighbours are different rows
    repeated[1:] |= same
    repeated[:-1] |= same
    return np.unique(rows[repeated])


def _row_distinct(chunk: np.ndarray, bits: np.uint64) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Bitmap slots of the keys of ``chunk``, each key once per row; and the (row, column) of each."""
    keys = np.asarray(chunk, dtype=np.uint64).reshape(len(chunk), -1)
    keep = np.ones(keys.shape, dtype=bool)
    for j in range(1, keys.shape[1]):  # drop a key that already appears earlier in the same row
        keep[:, j] = (keys[:, :j] != keys[:, j : j + 1]).all(axis=1)
    rows, cols = np.nonzero(keep)
    return keys[rows, cols] % bits, (rows, cols)
