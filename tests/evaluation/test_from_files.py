"""Evaluators built from CSV/TSV/JSONL/BEIR files give the same metrics as the classes called on the same lists."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from embtune import evaluate
from embtune.errors import EmbtuneError
from embtune.evaluation import (
    BinaryClassificationEvaluator,
    EmbeddingSimilarityEvaluator,
    InformationRetrievalEvaluator,
    TripletEvaluator,
    evaluator_from_file,
)
from embtune.models.embedding_model import EmbeddingModel
from embtune.training.build import build_evaluators
from embtune.training.config import EvaluatorCfg

S1 = ["the cat is on the road", "a dog runs in the city", "the sun is hot", "a man reads a book",
      "the girl sings", "a bus goes fast"]
S2 = ["a cat on a road", "the moon is cold", "the sun is hot today", "a woman eats food",
      "the girl sings a song", "the train is slow"]
SCORES = [4.5, 0.5, 4.8, 1.0, 4.0, 2.0]  # STS-B-like 0-5 scale
LABELS = [1, 0, 1, 0, 1, 0]
NEGATIVES = ["the tree is green", "a fish in the lake", "the river is big", "a doctor sees a child",
             "the dog eats", "the plane is old"]


@pytest.fixture(scope="module")
def model(tiny_bert_dir, tmp_path_factory) -> EmbeddingModel:
    folder = EmbeddingModel.from_transformer(tiny_bert_dir, normalize=True).save(tmp_path_factory.mktemp("ev") / "m")
    return EmbeddingModel.load(folder)


def write_table(path: Path, columns: dict[str, list]) -> Path:
    rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(columns), delimiter="\t" if path.suffix == ".tsv" else ",")
            writer.writeheader()
            writer.writerows(rows)
    return path


def write_beir(folder: Path, corpus: dict, queries: dict, qrels: dict[str, dict[str, list[str]]]) -> Path:
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in corpus.items()), encoding="utf-8"
    )
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in queries.items()), encoding="utf-8"
    )
    for split, rel in qrels.items():
        lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t1" for q, docs in rel.items() for d in docs]
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


# --- each kind equals the class on the same lists -----------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_sts_from_file_equals_the_class(model, tmp_path, suffix):
    path = write_table(tmp_path / f"sts{suffix}", {"sentence1": S1, "sentence2": S2, "score": SCORES})
    got = evaluator_from_file("sts", path, name="dev")(model)
    assert got == EmbeddingSimilarityEvaluator(S1, S2, SCORES, name="dev")(model)
    assert got["dev_spearman_cosine"] == pytest.approx(
        EmbeddingSimilarityEvaluator(S1, S2, [s / 5 for s in SCORES], name="dev")(model)["dev_spearman_cosine"]
    )  # no rescaling needed: correlations ignore the 0-5 scale


def test_columns_map_inputs_to_other_names_and_max_rows_keeps_the_first(model, tmp_path):
    path = write_table(tmp_path / "pairs.tsv", {"a": S1, "b": S2, "sim": SCORES, "extra": LABELS})
    ev = evaluator_from_file("sts", path, columns={"sentences1": "a", "sentences2": "b", "scores": "sim"}, max_rows=4)
    assert ev(model) == EmbeddingSimilarityEvaluator(S1[:4], S2[:4], SCORES[:4])(model)


def test_triplet_from_jsonl_equals_the_class(model, tmp_path):
    path = write_table(tmp_path / "t.jsonl", {"anchor": S1, "positive": S2, "negative": NEGATIVES})
    ev = evaluator_from_file("triplet", path, name="tri", params={"batch_size": 2, "margin": 0.1})
    assert ev(model) == TripletEvaluator(S1, S2, NEGATIVES, name="tri", margin=0.1)(model)


def test_binary_from_csv_equals_the_class(model, tmp_path):
    path = write_table(tmp_path / "b.csv", {"sentence1": S1, "sentence2": S2, "label": LABELS})
    assert evaluator_from_file("binary", path)(model) == BinaryClassificationEvaluator(S1, S2, LABELS)(model)


def test_retrieval_from_pairs_file_equals_the_class(model, tmp_path):
    path = write_table(tmp_path / "r.csv", {"question": S1[:4] + [S1[0]], "passage": S2[:4] + [NEGATIVES[0]]})
    ev = evaluator_from_file("retrieval", path, columns={"query": "question", "positive": "passage"})
    queries = {f"q{i}": t for i, t in enumerate(S1[:4])}
    corpus = {f"d{i}": t for i, t in enumerate(S2[:4] + [NEGATIVES[0]])}
    relevant = {"q0": {"d0", "d4"}, "q1": {"d1"}, "q2": {"d2"}, "q3": {"d3"}}
    assert ev(model) == InformationRetrievalEvaluator(queries, corpus, relevant)(model)


def test_retrieval_from_beir_folder_split_and_max_rows(model, tmp_path):
    corpus = {f"doc{i}": t for i, t in enumerate(S2 + NEGATIVES)}
    queries = {f"qa{i}": t for i, t in enumerate(S1)}
    test = {f"qa{i}": [f"doc{i}"] for i in range(4)}
    dev = {"qa4": ["doc4"], "qa5": ["doc5", "doc6"]}
    folder = write_beir(tmp_path / "beir", corpus, queries, {"test": test, "dev": dev})

    expected = InformationRetrievalEvaluator(
        {q: queries[q] for q in test}, corpus, {q: set(d) for q, d in test.items()}, name="b"
    )(model)
    assert evaluator_from_file("retrieval", folder, name="b")(model) == expected

    dev_ev = evaluator_from_file("retrieval", f"{folder}:dev")
    assert dev_ev(model) == InformationRetrievalEvaluator(
        {q: queries[q] for q in dev}, corpus, {q: set(d) for q, d in dev.items()}
    )(model)
    assert evaluator_from_file("retrieval", folder, split="dev").queries == dev_ev.queries

    subset = evaluator_from_file("retrieval", folder, max_rows=2)
    assert subset.queries == [queries["qa0"], queries["qa1"]] and len(subset.corpus) == len(corpus)


def test_recipe_build_evaluators_goes_through_evaluator_from_file(model, tmp_path):
    path = write_table(tmp_path / "sts.csv", {"s1": S1, "s2": S2, "score": SCORES})
    cfg = EvaluatorCfg(kind="sts", path=str(path), name="dev", columns={"sentences1": "s1", "sentences2": "s2"},
                       params={"main_similarity": "dot"}, max_rows=5)
    [ev] = build_evaluators([cfg], tmp_path / "cache", batch_size=3)
    direct = evaluator_from_file("sts", path, columns=cfg.columns, name="dev", params=cfg.params, max_rows=5)
    assert ev.batch_size == 3 and ev.primary_metric == "dev_spearman_dot"
    assert ev(model) == direct(model)


def test_a_cache_dir_keeps_the_parsed_table_as_training_does(model, tmp_path):
    path = write_table(tmp_path / "sts.jsonl", {"sentence1": S1, "sentence2": S2, "score": SCORES})
    cached = evaluator_from_file("sts", path, cache_dir=tmp_path / "cache", max_rows=4)
    assert len(cached.sentences1) == 4 and len(list((tmp_path / "cache" / "tables").glob("sts-*.arrow"))) == 1
    assert cached(model) == evaluator_from_file("sts", path, max_rows=4)(model)


# --- evaluate(): the Python entry point of `embtune eval` ---------------------------------------------------


def test_evaluate_with_a_path_or_a_model_gives_the_same_metrics(model, tmp_path):
    folder = model.save(tmp_path / "saved")
    path = write_table(tmp_path / "b.jsonl", {"sentence1": S1, "sentence2": S2, "label": LABELS})
    by_path = evaluate(folder, path, evaluator="binary", name="x", batch_size=2)  # precision auto, as the class
    assert by_path == BinaryClassificationEvaluator(S1, S2, LABELS, name="x", batch_size=2)(model)
    fp32 = evaluate(model, path, evaluator="binary", name="x", batch_size=2, precision="fp32")
    assert fp32 == evaluate(folder, path, evaluator="binary", name="x", batch_size=2, precision="fp32")
    assert fp32 == pytest.approx(by_path, abs=1e-2)


def test_evaluate_checks_the_data_before_loading_the_model(tmp_path):
    path = write_table(tmp_path / "s.csv", {"sentence1": S1, "sentence2": S2, "similarity": SCORES})
    with pytest.raises(EmbtuneError, match="no column 'score'.*available columns: sentence1, sentence2, similarity"):
        evaluate(tmp_path / "no-model-here", path, evaluator="sts")


def test_precision_needs_an_embtune_model(tmp_path):
    class Other:
        def encode(self, texts, batch_size=32, prompt=None, show_progress_bar=False):
            raise AssertionError("not reached")

    path = write_table(tmp_path / "s.csv", {"sentence1": S1, "sentence2": S2, "score": SCORES})
    with pytest.raises(EmbtuneError, match="EmbeddingModel only"):
        evaluate(Other(), path, precision="bf16")


# --- errors -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": "triplett"}, "unknown evaluator 'triplett' (did you mean 'triplet'?)"),
        ({"kind": "sts", "columns": {"score": "x"}}, "no input 'score' (did you mean 'scores'?)"),
        ({"kind": "sts", "params": {"scores": [1.0]}}, "come from the data file"),
        ({"kind": "sts", "params": {"main_similarity": "cosinus"}}, "cosinus"),
        ({"kind": "sts", "max_rows": 0}, "max_rows must be a positive integer"),
        ({"kind": "binary"}, "no column 'label' for the binary evaluator's 'labels'; available columns: "
                             "sentence1, sentence2, score"),
    ],
)
def test_bad_arguments_name_the_fix(tmp_path, kwargs, message):
    path = write_table(tmp_path / "sts.csv", {"sentence1": S1, "sentence2": S2, "score": SCORES})
    kind = kwargs.pop("kind")
    with pytest.raises(EmbtuneError) as err:
        evaluator_from_file(kind, path, **kwargs)
    assert message in str(err.value)


def test_retrieval_errors(tmp_path):
    folder = write_beir(tmp_path / "beir", {"d": "the cat"}, {"q": "a cat"}, {"test": {"q": ["d"]}})
    with pytest.raises(EmbtuneError, match="fixed fields"):
        evaluator_from_file("retrieval", folder, columns={"query": "question"})
    with pytest.raises(EmbtuneError, match="available splits: \\['test'\\]"):
        evaluator_from_file("retrieval", folder, split="dev")
    pairs = write_table(tmp_path / "p.csv", {"question": ["a"], "answer": ["b"]})
    with pytest.raises(EmbtuneError, match="missing column.*'query', 'positive'.*columns found"):
        evaluator_from_file("retrieval", pairs)
    with pytest.raises(EmbtuneError, match="not found"):
        evaluator_from_file("retrieval", tmp_path / "missing.jsonl")


# --- real data (skipped when ../shared/data is absent) ------------------------------------------------------


@pytest.mark.slow
def test_norquad_retrieval_loads_as_beir(model, shared_data):
    folder = shared_data / "norquad" / "retrieval"
    if not (folder / "corpus.jsonl").is_file():
        pytest.skip(f"no NorQuAD retrieval set at {folder}")
    ev = evaluator_from_file("retrieval", folder, name="norquad-test", max_rows=16, params={"batch_size": 64})
    assert len(ev.queries) == 16 and len(ev.corpus) == 481  # SOURCE.md: 481 passages, test+dev
    metrics = ev(model)
    assert ev.primary_metric == "norquad-test_cosine_ndcg@10"
    assert 0.0 <= metrics[ev.primary_metric] <= 1.0
    assert len(evaluator_from_file("retrieval", f"{folder}:dev").queries) == 472
