"""Batch embedding on Ray Data (the ``[ray]`` extra): a callable class for ``Dataset.map_batches``.

    import ray
    from embtune.integrations.ray import EmbtuneEncoder

    ds = ray.data.read_parquet("corpus/")                       # columns: id, text
    ds = ds.map_batches(
        EmbtuneEncoder,
        fn_constructor_kwargs={"model": "output/my-model", "text_column": "text"},
        batch_size=256,
        concurrency=4,                                          # 4 actors, each loads the model once
    )
    ds.write_parquet("embeddings/")                             # columns: id, text, embedding

Ray creates one ``EmbtuneEncoder`` per actor (the model loads once per actor) and calls it on batches in
Ray's default "numpy" format (a dict of column -> numpy array) or as pandas DataFrames
(``batch_format="pandas"``). The embeddings are exactly ``EmbeddingModel.encode``'s for the same batch.
This module does not import ray: the class is a plain callable, so it also serves Spark or Dask.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class EmbtuneEncoder:
    """Embeds one column of each batch and adds an ``embedding`` column.

    Args:
        model: a model folder, Hub id or ``bundled:all-MiniLM-L6-v2`` (loaded with ``EmbeddingModel.load``).
        text_column: the column holding the texts.
        output_column: the column the embeddings go to (one (D,) float32 array per row).
        keep_columns: None keeps every input column; a list keeps only those (plus ``output_column``).
        batch_size / precision / normalize / prompt / prompt_name / truncate_dim: passed to ``encode``.
        threads: torch intra-op threads per actor (None: torch's default); with N actors on a C-core
            machine, ``C // N`` avoids oversubscription.
    """

    def __init__(
        self,
        model: str,
        text_column: str = "text",
        output_column: str = "embedding",
        keep_columns: list[str] | None = None,
        batch_size: int | None = None,
        precision: str = "auto",
        normalize: bool = False,
        prompt: str | None = None,
        prompt_name: str | None = None,
        truncate_dim: int | None = None,
        threads: int | None = None,
    ) -> None:
        import torch

        from ..models.embedding_model import EmbeddingModel

        if threads is not None:
            torch.set_num_threads(int(threads))
        self.model = EmbeddingModel.load(model)
        self.text_column = text_column
        self.output_column = output_column
        self.keep_columns = keep_columns
        self.options = {"batch_size": batch_size, "precision": precision, "normalize": normalize, "prompt": prompt,
                        "prompt_name": prompt_name, "truncate_dim": truncate_dim, "show_progress_bar": False}

    def __call__(self, batch: Any) -> Any:
        """A dict of numpy arrays (Ray's default) or a pandas DataFrame -> the same kind, plus embeddings."""
        from ..errors import EmbtuneError

        if self.text_column not in batch:
            names = list(batch.keys() if isinstance(batch, dict) else batch.columns)
            raise EmbtuneError(f"EmbtuneEncoder: no column {self.text_column!r} in the batch; columns: {names}; "
                               "set text_column")
        texts = [str(t) for t in list(batch[self.text_column])]
        emb = self.model.encode(texts, **self.options)
        if isinstance(batch, dict):
            out = {k: v for k, v in batch.items() if self.keep_columns is None or k in self.keep_columns}
            out[self.output_column] = np.asarray(emb)
            return out
        out = batch if self.keep_columns is None else batch[list(self.keep_columns)].copy()
        out[self.output_column] = list(np.asarray(emb))
        return out
