"""The main job behind `make demo`: load the bundled model, embed a few sentences, show what is similar."""

from __future__ import annotations

from pathlib import Path

SENTENCES = [
    "A man is playing a guitar on stage.",
    "Someone performs music with a guitar.",
    "The stock market fell sharply today.",
    "Shares dropped a lot on the exchange this morning.",
    "A child is riding a bicycle in the park.",
]


def run_demo(output: Path) -> None:
    """Encode SENTENCES with the bundled all-MiniLM-L6-v2, print the best match of each, save the model."""
    from .models.bundled import BUNDLED_ID
    from .models.embedding_model import EmbeddingModel

    model = EmbeddingModel.load(BUNDLED_ID)
    emb = model.encode(SENTENCES)
    scores = model.similarity(emb, emb)
    scores.fill_diagonal_(-1.0)
    print(f"model: all-MiniLM-L6-v2 ({model.embedding_dim} dimensions, {model.similarity_fn_name})")
    for i, text in enumerate(SENTENCES):
        j = int(scores[i].argmax())
        print(f"  {text!r:48} ~ {SENTENCES[j]!r} ({float(scores[i, j]):.3f})")
    model.save(output)
    print(f"saved the model to {output}")
