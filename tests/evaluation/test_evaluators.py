"""Evaluators on hand-made embeddings (a lookup-table model), loaders, registry and error messages. No model download."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from embtune.errors import EmbtuneError
from embtune.evaluation import (
    EVALUATORS,
    BinaryClassificationEvaluator,
    EmbeddingSimilarityEvaluator,
    Evaluator,
    InformationRetrievalEvaluator,
    TripletEvaluator,
    build_evaluator,
    load_beir,
    load_retrieval_pairs,
    run_evaluators,
)


class LookupModel:
    """Embeds each text as a fixed vector from a table; records the prompts it was called with."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table
        self.calls: list[tuple[int, str | None]] = []

    def encode(
        self,
        texts: list[str],
        batch_size: int = 32,
        prompt: str | None = None,
        show_progress_bar: bool = False,
    ) -> np.ndarray:
        self.calls.append((len(texts), prompt))
        return np.array([self.table[t] for t in texts], dtype=np.float32)


# ---------------------------------------------------------------------------------------------------------
# triplet
# ---------------------------------------------------------------------------------------------------------


def test_triplet_accuracy_per_similarity_and_max() -> None:
    # t1: positive in the same direction, negative orthogonal -> correct for all functions.
    # t2: positive is a long vector at 45 degrees, negative a short one at 90 degrees: cosine and dot say
    #     positive, euclidean and manhattan say negative (the long vector is far away).
    model = LookupModel(
        {"a1": [1, 0], "p1": [1, 0], "n1": [0, 1], "a2": [1, 0], "p2": [10, 10], "n2": [0, 0.5]}
    )
    ev = TripletEvaluator(["a1", "a2"], ["p1", "p2"], ["n1", "n2"], name="dev")
    out = ev(model)
    assert list(out) == [
        "dev_cosine_accuracy",
        "dev_dot_accuracy",
        "dev_manhattan_accuracy",
        "dev_euclidean_accuracy",
        "dev_max_accuracy",
    ]
    assert out["dev_cosine_accuracy"] == 1.0 and out["dev_dot_accuracy"] == 1.0
    assert out["dev_euclidean_accuracy"] == 0.5 and out["dev_manhattan_accuracy"] == 0.5
    assert out["dev_max_accuracy"] == 1.0
    assert ev.primary_metric == "dev_max_accuracy" and ev.greater_is_better
    assert isinstance(ev, Evaluator)


def test_triplet_margin_and_single_function_primary_metric() -> None:
    model = LookupModel({"a": [1, 0], "p": [1, 0.2], "n": [1, 0.3]})  # cos(a,p)-cos(a,n) ~ 0.023
    no_margin = TripletEvaluator(["a"], ["p"], ["n"], similarity_fn_names=["cos_sim"])
    assert no_margin(model) == {"cosine_accuracy": 1.0}
    assert no_margin.primary_metric == "cosine_accuracy"
    with_margin = TripletEvaluator(
        ["a"], ["p"], ["n"], similarity_fn_names=["cosine"], margin={"cosine": 0.1}
    )
    assert with_margin(model) == {"cosine_accuracy": 0.0}


def test_triplet_uses_query_and_document_prompts() -> None:
    model = LookupModel({"a": [1, 0], "p": [1, 0], "n": [0, 1]})
    TripletEvaluator(["a"], ["p"], ["n"], query_prompt="query: ", document_prompt="passage: ")(model)
    assert [prompt for _, prompt in model.calls] == ["query: ", "passage: ", "passage: "]


def test_triplet_errors_say_how_to_fix() -> None:
    with pytest.raises(EmbtuneError, match=r"lengths differ \(anchors=2, positives=1, negatives=2\)"):
        TripletEvaluator(["a", "b"], ["p"], ["n", "m"])
    with pytest.raises(EmbtuneError, match="anchors is empty"):
        TripletEvaluator([], [], [])
    with pytest.raises(EmbtuneError, match="unknown similarity function 'cosin'"):
        TripletEvaluator(["a"], ["p"], ["n"], similarity_fn_names=["cosin"])
    with pytest.raises(EmbtuneError, match="not in similarity_fn_names"):
        TripletEvaluator(["a"], ["p"], ["n"], similarity_fn_names=["cosine"], margin={"dot": 1.0})
    with pytest.raises(EmbtuneError, match="anchors\\[1\\] is NoneType"):
        TripletEvaluator(["a", None], ["p", "q"], ["n", "m"])  # type: ignore[list-item]


# ---------------------------------------------------------------------------------------------------------
# sts
# ---------------------------------------------------------------------------------------------------------


def test_sts_keys_and_perfect_rank_correlation() -> None:
    angles = [0.0, 0.3, 0.6, 0.9, 1.2]
    table = {"x": [1.0, 0.0]} | {f"s{i}": [math.cos(a), math.sin(a)] for i, a in enumerate(angles)}
    model = LookupModel(table)
    gold = [5.0, 4.0, 3.0, 2.0, 1.0]  # decreasing with the angle -> cosine ranks them perfectly
    ev = EmbeddingSimilarityEvaluator(["x"] * 5, [f"s{i}" for i in range(5)], gold, name="sts-dev")
    out = ev(model)
    for fn in ("cosine", "dot", "euclidean", "manhattan"):
        assert out[f"sts-dev_spearman_{fn}"] == pytest.approx(1.0)
        assert f"sts-dev_pearson_{fn}" in out
    assert out["sts-dev_spearman_max"] == pytest.approx(1.0)
    assert ev.primary_metric == "sts-dev_spearman_max"
    single = EmbeddingSimilarityEvaluator(
        ["x"] * 5, [f"s{i}" for i in range(5)], gold, main_similarity="cosine"
    )
    assert single.primary_metric == "spearman_cosine"


def test_sts_rejects_constant_or_missing_gold_scores() -> None:
    with pytest.raises(EmbtuneError, match="all gold scores are equal"):
        EmbeddingSimilarityEvaluator(["a", "b"], ["c", "d"], [1.0, 1.0])
    with pytest.raises(EmbtuneError, match=r"scores\[1\] is nan"):
        EmbeddingSimilarityEvaluator(["a", "b"], ["c", "d"], [1.0, float("nan")])
    with pytest.raises(EmbtuneError, match="scores=3"):
        EmbeddingSimilarityEvaluator(["a", "b"], ["c", "d"], [1.0, 2.0, 3.0])


# ---------------------------------------------------------------------------------------------------------
# binary
# ---------------------------------------------------------------------------------------------------------


def test_binary_keys_values_and_distance_thresholds() -> None:
    table = {"x": [1.0, 0.0], "near": [0.9, 0.1], "mid": [0.6, 0.6], "far": [0.0, 1.0]}
    model = LookupModel(table)
    ev = BinaryClassificationEvaluator(["x", "x", "x"], ["near", "mid", "far"], [1, 1, 0], name="pairs")
    out = ev(model)
    for fn in ("cosine", "dot", "manhattan", "euclidean", "max"):
        for metric in (
            "accuracy",
            "accuracy_threshold",
            "f1",
            "f1_threshold",
            "precision",
            "recall",
            "ap",
            "mcc",
        ):
            assert f"pairs_{fn}_{metric}" in out
    assert out["pairs_cosine_accuracy"] == 1.0 and out["pairs_cosine_ap"] == 1.0
    # euclidean thresholds are distances: between |x-mid| = 0.721 and |x-far| = 1.414
    assert out["pairs_euclidean_accuracy_threshold"] == pytest.approx(
        (math.hypot(0.4, 0.6) + math.sqrt(2)) / 2
    )
    assert ev.primary_metric == "pairs_max_ap"
    # every distinct text is embedded once, in one call
    assert model.calls == [(4, None)]


def test_binary_rejects_bad_labels() -> None:
    with pytest.raises(EmbtuneError, match="0 \\(dissimilar\\) or 1"):
        BinaryClassificationEvaluator(["a", "b"], ["c", "d"], [0, 2])
    with pytest.raises(EmbtuneError, match="needs both similar and dissimilar"):
        BinaryClassificationEvaluator(["a", "b"], ["c", "d"], [1, 1])


# ---------------------------------------------------------------------------------------------------------
# retrieval
# ---------------------------------------------------------------------------------------------------------


def _retrieval_setup() -> tuple[LookupModel, dict, dict, dict]:
    table = {
        "q-east": [1.0, 0.0],
        "q-north": [0.0, 1.0],
        "q-none": [1.0, 1.0],
        "east": [1.0, 0.05],
        "north-east": [0.7, 0.7],
        "north": [0.05, 1.0],
        "west": [-1.0, 0.0],
    }
    queries = {"qa": "q-east", "qb": "q-north", "qc": "q-none"}
    corpus = {"d1": "east", "d2": "north-east", "d3": "north", "d4": "west"}
    relevant = {"qa": {"d1", "d2"}, "qb": {"d2"}}  # qc has no relevant doc -> left out
    return LookupModel(table), queries, corpus, relevant


def test_retrieval_hand_values() -> None:
    model, queries, corpus, relevant = _retrieval_setup()
    ev = InformationRetrievalEvaluator(queries, corpus, relevant, name="ir", accuracy_at_k=[1, 3])
    assert ev.query_ids == ["qa", "qb"]
    out = ev(model)
    # qa ranks d1, d2, d3, d4 (both relevant on top); qb ranks d3, d2, d1, d4 (relevant second)
    assert out["ir_cosine_accuracy@1"] == 0.5
    assert out["ir_cosine_accuracy@3"] == 1.0
    assert out["ir_cosine_precision@1"] == 0.5
    assert out["ir_cosine_recall@3"] == 1.0
    assert out["ir_cosine_mrr@10"] == pytest.approx((1 + 1 / 2) / 2)
    assert out["ir_cosine_ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert out["ir_cosine_map@100"] == pytest.approx((1 + 1 / 2) / 2)
    assert ev.primary_metric == "ir_cosine_ndcg@10"
    assert list(out)[:4] == [
        "ir_cosine_accuracy@1",
        "ir_cosine_accuracy@3",
        "ir_cosine_precision@1",
        "ir_cosine_precision@3",
    ]


def test_retrieval_ranking_does_not_depend_on_chunk_size_even_with_ties() -> None:
    # 30 documents, most of them identical (exact score ties): ties must rank by ascending corpus id.
    rng = np.random.default_rng(0)
    table = {f"text{i}": ([1.0, 0.0, 0.0] if i % 3 else rng.normal(size=3).tolist()) for i in range(30)}
    table |= {f"query{i}": rng.normal(size=3).tolist() for i in range(5)}
    corpus = {f"doc{i:02d}": f"text{i}" for i in reversed(range(30))}  # insertion order != id order
    queries = {f"q{i}": f"query{i}" for i in range(5)}
    relevant = {f"q{i}": {f"doc{(7 * i) % 30:02d}", f"doc{(11 * i + 1) % 30:02d}"} for i in range(5)}
    model = LookupModel(table)
    results = []
    for chunk in (1, 4, 7, 30, 1000):
        ev = InformationRetrievalEvaluator(
            queries,
            corpus,
            relevant,
            similarity_fn_names=["cosine", "dot"],
            corpus_chunk_size=chunk,
            map_at_k=[20],
        )
        ranked = ev.rank(model)
        results.append(({fn: idx.tolist() for fn, idx in ranked.items()}, ev(model)))
    for ranking, metrics in results[1:]:
        assert ranking == results[0][0]
        assert metrics == results[0][1]
    # the reference order: sort all documents by (-score, id) in plain Python
    q = np.array(table["query0"], dtype=np.float32)
    ids = list(corpus)
    emb = np.array([table[corpus[i]] for i in ids], dtype=np.float32)
    scores = (emb / np.linalg.norm(emb, axis=1, keepdims=True)) @ (q / np.linalg.norm(q))
    expected = sorted(range(30), key=lambda j: (-round(float(scores[j]), 5), ids[j]))[:20]
    assert [ids[j] for j in results[0][0]["cosine"][0]] == [ids[j] for j in expected]


def test_retrieval_errors() -> None:
    model, queries, corpus, _ = _retrieval_setup()
    with pytest.raises(EmbtuneError, match="none of the 3 queries has a relevant document"):
        InformationRetrievalEvaluator(queries, corpus, {1: {"d1"}})
    with pytest.raises(EmbtuneError, match="ndcg_at_k must be"):
        InformationRetrievalEvaluator(queries, corpus, {"qa": {"d1"}}, ndcg_at_k=[0])
    with pytest.raises(EmbtuneError, match="corpus is empty"):
        InformationRetrievalEvaluator(queries, {}, {"qa": {"d1"}})


def test_load_beir_reads_corpus_queries_and_qrels(tmp_path: Path) -> None:
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text(
        json.dumps({"_id": "d1", "title": "Oslo", "text": "The capital."})
        + "\n"
        + json.dumps({"_id": "d2", "title": "", "text": "No title."})
        + "\n",
        encoding="utf-8",
    )
    (tmp_path / "queries.jsonl").write_text(
        "\n".join(
            json.dumps({"_id": q, "text": t}) for q, t in [("q1", "capital?"), ("q2", "x"), ("q3", "y")]
        ),
        encoding="utf-8",
    )
    (tmp_path / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t0\nq3\td2\t2\n", encoding="utf-8"
    )
    data = load_beir(tmp_path)
    assert data.corpus == {"d1": "Oslo The capital.", "d2": "No title."}
    assert data.queries == {"q1": "capital?", "q3": "y"}  # q2's only judgement has score 0
    assert data.relevant_docs == {"q1": {"d1"}, "q3": {"d2"}}
    with pytest.raises(EmbtuneError, match=r"available splits: \['test'\]"):
        load_beir(tmp_path, split="dev")


def test_load_retrieval_pairs_from_csv_and_jsonl(tmp_path: Path) -> None:
    csv_file = tmp_path / "pairs.csv"
    csv_file.write_text("question,answer\nwho?,Ann\nwho?,Bob\nwhere?,Oslo\n", encoding="utf-8")
    data = load_retrieval_pairs(csv_file, query_column="question", positive_column="answer")
    assert data.queries == {"q0": "who?", "q1": "where?"}
    assert data.corpus == {"d0": "Ann", "d1": "Bob", "d2": "Oslo"}
    assert data.relevant_docs == {"q0": {"d0", "d1"}, "q1": {"d2"}}
    jsonl_file = tmp_path / "pairs.jsonl"
    jsonl_file.write_text('{"query": "who?", "positive": "Ann"}\n', encoding="utf-8")
    assert load_retrieval_pairs(jsonl_file).relevant_docs == {"q0": {"d0"}}
    with pytest.raises(
        EmbtuneError,
        match=r"missing column\(s\) \['query', 'positive'\]; columns found: \['question', 'answer'\]",
    ):
        load_retrieval_pairs(csv_file)
    ev = InformationRetrievalEvaluator.from_data(data, name="pairs")
    assert ev.primary_metric == "pairs_cosine_ndcg@10"


# ---------------------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------------------


def test_build_evaluator_builds_each_registered_kind() -> None:
    assert set(EVALUATORS) == {"triplet", "sts", "retrieval", "binary"}
    ev = build_evaluator("sts", sentences1=["a", "b"], sentences2=["c", "d"], scores=[0, 1], name="s")
    assert isinstance(ev, EmbeddingSimilarityEvaluator)
    ev = build_evaluator("retrieval", queries={"q": "a"}, corpus={"d": "b"}, relevant_docs={"q": ["d"]})
    assert isinstance(ev, InformationRetrievalEvaluator)


def test_build_evaluator_suggests_names() -> None:
    with pytest.raises(EmbtuneError, match="unknown evaluator 'triplets' \\(did you mean 'triplet'\\?\\)"):
        build_evaluator("triplets")
    with pytest.raises(EmbtuneError, match="no parameter 'anchor' \\(did you mean 'anchors'\\?\\)"):
        build_evaluator("triplet", anchor=["a"], positives=["b"], negatives=["c"])
    with pytest.raises(EmbtuneError, match=r"needs parameter\(s\) \['labels'\]"):
        build_evaluator("binary", sentences1=["a"], sentences2=["b"])


def test_run_evaluators_merges_and_rejects_clashing_names() -> None:
    model = LookupModel({"a": [1, 0], "p": [1, 0], "n": [0, 1]})
    one = TripletEvaluator(["a"], ["p"], ["n"], name="one", similarity_fn_names=["cosine"])
    two = TripletEvaluator(["a"], ["n"], ["p"], name="two", similarity_fn_names=["cosine"])
    assert run_evaluators(model, [one, two]) == {"one_cosine_accuracy": 1.0, "two_cosine_accuracy": 0.0}
    with pytest.raises(EmbtuneError, match="distinct name"):
        run_evaluators(model, [one, one])
