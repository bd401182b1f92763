"""Exact top-k search by inner product: chunked matrix products in torch, or faiss for large corpora."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import EmbtuneError

FAISS_MIN_CORPUS = 100_000
_CHUNK_ROWS = 4096  # queries per matmul: bounds memory at chunk x corpus floats


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def top_k(
    queries: np.ndarray, corpus: np.ndarray, k: int, use_faiss: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` highest inner products of each query: (scores (Q, k) float32, indices (Q, k) int64).

    Rows are sorted by descending score. When the corpus is smaller than ``k`` the rest is padded with
    score -inf and index -1. ``use_faiss`` None: faiss when installed and the corpus has >= 100,000 rows.
    """
    n = len(corpus)
    if use_faiss is None:
        use_faiss = n >= FAISS_MIN_CORPUS and faiss_available()
    if use_faiss and not faiss_available():
        raise EmbtuneError("use_faiss needs faiss: pip install 'embtune[faiss]' (faiss-cpu), or set use_faiss: false")
    kk = min(k, n)
    if use_faiss:
        import faiss

        index = faiss.IndexFlatIP(corpus.shape[1])
        index.add(np.ascontiguousarray(corpus, dtype=np.float32))
        scores, indices = index.search(np.ascontiguousarray(queries, dtype=np.float32), kk)
        indices = indices.astype(np.int64)
    else:
        corpus_t = torch.from_numpy(np.ascontiguousarray(corpus, dtype=np.float32))
        parts_s, parts_i = [], []
        for start in range(0, len(queries), _CHUNK_ROWS):
            chunk = torch.from_numpy(np.ascontiguousarray(queries[start : start + _CHUNK_ROWS], dtype=np.float32))
            s, i = torch.topk(chunk @ corpus_t.T, k=kk, dim=1)
            parts_s.append(s.numpy())
            parts_i.append(i.numpy())
        scores = np.concatenate(parts_s) if parts_s else np.zeros((0, kk), np.float32)
        indices = np.concatenate(parts_i) if parts_i else np.zeros((0, kk), np.int64)
    if kk < k:
        pad = k - kk
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        indices = np.pad(indices, ((0, 0), (0, pad)), constant_values=-1)
    return scores.astype(np.float32), indices
