"""Our cards have the seed cards' sections, in the seed cards' order.

For each seed card (sentence-transformers cards of real runs) a RunInfo mirrors that run: datasets, columns,
losses, evaluator, hyperparameters and log shape, with small fake statistics. Headings are compared in order,
commented (author fill-in) headings included.

Our one extra heading is ``### Direct Usage (embtune)``, right after ``### Direct Usage (Sentence
Transformers)``; it is removed before comparing, and its position is checked separately.
Seed 002 is a flattened rendering of the same layout: HTML comments (and the headings inside them) are gone
and the text stops after "#### All Hyperparameters", so it is compared with our visible headings as a prefix.
"""

from __future__ import annotations

import pytest
import yaml
from card_helpers import parse_headings, read_seed

from embtune.cards import ColumnStats, DatasetInfo, EvalInfo, RunInfo, render_card
from embtune.losses import build_loss
from embtune.training.run_info import loss_info

EXTRA_HEADINGS = [(3, "Direct Usage (embtune)")]
ARCH = (
    "SentenceTransformer(\n"
    "  (0): Transformer({'max_seq_length': 512, 'do_lower_case': False}) with Transformer model: BertModel \n"
    "  (1): Pooling({'word_embedding_dimension': 384, 'pooling_mode_mean_tokens': True})\n"
    ")"
)


def _stats(columns: list[str], label: str | None = None, kind: str = "string") -> list[ColumnStats]:
    stats = [ColumnStats(c, kind, 2, 9.5, 65) for c in columns]
    if label:
        stats.append(ColumnStats(label, "float", 0.0, 0.64, 1.0, tokens=False))
    return stats


def _dataset(
    columns: list[str],
    loss: str,
    size: int,
    label: str | None = None,
    kind: str = "string",
    **loss_params,
) -> DatasetInfo:
    texts = [c for c in columns if c != label]
    if kind == "dict":
        samples = [{c: {"page_name": f"p{i}", "text": f"row {i} | {c}"} for c in texts} for i in range(3)]
    else:
        samples = [{c: f"{c} text {i}" for c in texts} for i in range(3)]
    if label:
        for row in samples:
            row[label] = 1.0
    return DatasetInfo(
        size=size,
        columns=columns,
        statistics=_stats(texts, label, kind),
        samples=samples,
        loss=loss_info(build_loss(loss, **loss_params)),
    )


def _logs(n: int, validation_every: int | None = None, metric: str | None = None) -> list[dict]:
    rows = []
    for i in range(1, n + 1):
        row = {"epoch": round(i / n * 3, 4), "step": i * 25, "training_loss": 2.5 / i}
        if validation_every and i % validation_every == 0:
            row["validation_loss"] = 2.0 / i
            if metric:
                row[metric] = 0.5 + i / (2 * n)
        rows.append(row)
    return rows


HYPER_ALL = {
    "per_device_train_batch_size": 16,
    "learning_rate": 2e-05,
    "num_train_epochs": 3,
    "seed": 42,
    "lr_scheduler_kwargs": {},
    "batch_sampler": "no_duplicates",
    "multi_dataset_batch_sampler": "round_robin",
}
HYPER_NON_DEFAULT = {"per_device_train_batch_size": 16, "multi_dataset_batch_sampler": "round_robin"}


def _run(**fields) -> RunInfo:
    base = dict(
        base_model="sentence-transformers/all-MiniLM-L6-v2",
        architecture=ARCH,
        max_seq_length=512,
        embedding_dim=384,
        similarity_fn_name="cosine",
        hyperparameters_all=HYPER_ALL,
        hyperparameters_non_default=HYPER_NON_DEFAULT,
        framework_versions={"Python": "3.11"},
    )
    return RunInfo(**(base | fields))


def seed_000() -> RunInfo:  # MNRL on triplets, eval dataset, validation loss in the logs
    cols = ["anchor", "positive", "negative"]
    return _run(
        base_model="intfloat/multilingual-e5-small",
        train_datasets=[_dataset(cols, "mnrl", 3838)],
        eval_datasets=[_dataset(cols, "mnrl", 960)],
        log_rows=_logs(57, validation_every=4),
    )


def seed_001() -> RunInfo:  # MNRL on labelled pairs, no logs
    return _run(
        base_model="sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2",
        train_datasets=[_dataset(["sentence_0", "sentence_1", "label"], "mnrl", 5099)],
    )


def seed_002() -> RunInfo:  # three datasets / three losses, triplet evaluator
    metrics = {
        f"test-triplet-evaluation_{k}": 0.97
        for k in [
            "cosine_accuracy",
            "dot_accuracy",
            "manhattan_accuracy",
            "euclidean_accuracy",
            "max_accuracy",
        ]
    }
    base = {k: v - 0.1 for k, v in metrics.items()}
    evaluation = EvalInfo(
        heading="Triplet",
        name="test-triplet-evaluation",
        metrics=metrics,
        metrics_base=base,
        primary_metric="test-triplet-evaluation_max_accuracy",
        evaluator_class="TripletEvaluator",
    )
    datasets = [
        _dataset(
            ["sentence_0", "sentence_1", "sentence_2"],
            "triplet",
            8000,
            distance_metric="euclidean",
            triplet_margin=5,
        ),
        _dataset(["sentence_0", "sentence_1"], "mnrl", 8000),
        _dataset(["sentence_0", "sentence_1", "label"], "cosent", 8000, label="label"),
    ]
    return _run(
        base_model="BAAI/bge-m3",
        train_datasets=datasets,
        evaluations=[evaluation],
        log_rows=_logs(6, 2, "test-triplet-evaluation_max_accuracy"),
    )


def seed_003() -> RunInfo:  # dict-record columns, CosineSimilarityLoss (no citation)
    cols = ["sentence_0", "sentence_1", "label"]
    return _run(
        train_datasets=[_dataset(cols, "cosine_similarity", 13697, label="label", kind="dict")],
        log_rows=_logs(8),
    )


def seed_004() -> RunInfo:  # ContrastiveLoss on labelled pairs
    cols = ["sentence_0", "sentence_1", "label"]
    return _run(train_datasets=[_dataset(cols, "contrastive", 38096, label="label")], log_rows=_logs(14))


MIRRORS = {"000": seed_000, "001": seed_001, "003": seed_003, "004": seed_004}


def _without_extras(headings: list[tuple[int, str]]) -> list[tuple[int, str]]:
    return [h for h in headings if h not in EXTRA_HEADINGS]


@pytest.mark.parametrize("seed", sorted(MIRRORS))
def test_headings_match_seed_in_order(seed: str) -> None:
    expected = parse_headings(read_seed(seed))
    ours = parse_headings(render_card(MIRRORS[seed]()))
    assert _without_extras(ours) == expected


def test_headings_match_flattened_seed_002_as_prefix() -> None:
    expected = parse_headings(read_seed("002"), comments=False)
    ours = _without_extras(parse_headings(render_card(seed_002()), comments=False))
    assert ours[: len(expected)] == expected
    assert ours[len(expected) :][:1] == [(3, "Training Logs")]


@pytest.mark.parametrize("seed", ["000", "001", "002", "003", "004"])
def test_extra_heading_sits_right_after_sentence_transformers_usage(seed: str) -> None:
    mirror = seed_002 if seed == "002" else MIRRORS[seed]
    ours = parse_headings(render_card(mirror()))
    i = ours.index((3, "Direct Usage (Sentence Transformers)"))
    assert ours[i + 1] == (3, "Direct Usage (embtune)")
    assert [h for h in ours if h in EXTRA_HEADINGS] == EXTRA_HEADINGS


@pytest.mark.parametrize("seed", ["000", "001", "002", "003", "004"])
def test_front_matter_tags_match_seed(seed: str) -> None:
    mirror = seed_002 if seed == "002" else MIRRORS[seed]
    seed_meta = yaml.safe_load(read_seed(seed).split("---")[1]) if seed != "002" else None
    ours = yaml.safe_load(render_card(mirror()).split("---\n")[1])
    if seed_meta is not None:
        wanted = [t for t in seed_meta["tags"] if t.startswith(("dataset_size:", "loss:"))]
        assert [t for t in ours["tags"] if t.startswith(("dataset_size:", "loss:"))] == wanted
        assert ours["base_model"] == seed_meta["base_model"]
    else:  # the flattened 002 front matter is not YAML any more; its tags are listed in the text
        assert "dataset_size:24000" in ours["tags"]
        assert [t for t in ours["tags"] if t.startswith("loss:")] == [
            "loss:TripletLoss",
            "loss:MultipleNegativesRankingLoss",
            "loss:CoSENTLoss",
        ]


def test_loss_citations_follow_the_seeds() -> None:
    card_003 = render_card(seed_003())  # CosineSimilarityLoss has no BibTeX: only Sentence Transformers
    assert "#### CosineSimilarityLoss" not in card_003
    card_002 = render_card(seed_002())
    for name in ["TripletLoss", "MultipleNegativesRankingLoss", "CoSENTLoss"]:
        assert card_002.count(f"#### {name}\n```bibtex") == 1
