"""Card content: front matter, tables, escaping of every user-provided name."""

from __future__ import annotations

import yaml
from card_helpers import parse_headings

from embtune.cards import ColumnStats, DatasetInfo, EvalInfo, LossInfo, RunInfo, render_card
from embtune.cards.markdown import MAX_SAMPLE_CHARS, sample_cell, table


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def _evaluated_run(**fields) -> RunInfo:
    evaluation = EvalInfo(
        heading="Semantic Similarity",
        name="sts-dev",
        metrics={"sts-dev_pearson_cosine": 0.81, "sts-dev_spearman_cosine": 0.8234567},
        metrics_base={"sts-dev_pearson_cosine": 0.70, "sts-dev_spearman_cosine": 0.72},
        primary_metric="sts-dev_spearman_cosine",
        evaluator_class="EmbeddingSimilarityEvaluator",
    )
    dataset = DatasetInfo(
        size=1234,
        columns=["s1", "s2", "score"],
        loss=LossInfo("CoSENTLoss", {"scale": 20.0}),
        samples=[{"s1": "a cat", "s2": "a dog", "score": 0.5}],
    )
    return RunInfo(
        base_model="bundled:all-MiniLM-L6-v2",
        train_datasets=[dataset],
        evaluations=[evaluation],
        language=["en"],
        license="apache-2.0",
        **fields,
    )


def test_front_matter_parses_with_tags_widget_and_model_index() -> None:
    meta = _front_matter(render_card(_evaluated_run(tags=["my-tag"])))
    assert meta["tags"][:3] == ["sentence-transformers", "sentence-similarity", "feature-extraction"]
    assert {"dataset_size:1234", "loss:CoSENTLoss", "my-tag"} <= set(meta["tags"])
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert meta["language"] == ["en"] and meta["license"] == "apache-2.0"
    assert meta["pipeline_tag"] == "sentence-similarity" and meta["library_name"] == "sentence-transformers"
    assert meta["widget"] == [{"source_sentence": "a cat", "sentences": ["a dog"]}]
    assert meta["metrics"] == ["pearson_cosine", "spearman_cosine"]
    (result,) = meta["model-index"][0]["results"]
    assert result["task"] == {"type": "semantic-similarity", "name": "Semantic Similarity"}
    assert result["dataset"] == {"name": "sts dev", "type": "sts-dev"}
    assert result["metrics"][1] == {"type": "spearman_cosine", "value": 0.8234567, "name": "Spearman Cosine"}


def test_no_model_index_and_no_evaluation_section_without_evaluations() -> None:
    card = render_card(RunInfo(base_model="org/model"))
    meta = _front_matter(card)
    assert "model-index" not in meta and "metrics" not in meta
    assert (2, "Evaluation") not in parse_headings(card)


def test_evaluation_tables_bold_the_primary_metric_and_compare_with_base() -> None:
    card = render_card(_evaluated_run())
    assert "| **spearman_cosine** | **0.8235** |" in card
    assert "* Base model vs fine-tuned:" in card
    comparison = next(
        line for line in card.splitlines() if line.startswith("| pearson_cosine") and "+0.1100" in line
    )
    assert "0.7" in comparison and "0.81" in comparison
    assert "#sentence_transformers.evaluation.EmbeddingSimilarityEvaluator" in card


def test_base_model_not_evaluated_says_so() -> None:
    run = _evaluated_run()
    run.evaluations[0].metrics_base = None
    assert "*The base model was not evaluated with this evaluator.*" in render_card(run)


def test_training_and_evaluation_datasets_get_their_sections() -> None:
    card = render_card(
        RunInfo(
            base_model="org/base",
            max_seq_length=128,
            train_datasets=[
                DatasetInfo(size=10, columns=["a", "b"], loss=LossInfo("MultipleNegativesRankingLoss"))
            ],
            eval_datasets=[DatasetInfo(size=4, columns=["a", "b"])],
            evaluations=[EvalInfo(heading="Triplet", metrics={"cosine_accuracy": 0.9})],
            log_rows=[{"epoch": 1.0, "step": 5, "loss": 0.5}],
        )
    )
    headings = parse_headings(card)
    assert (3, "Training Dataset") in headings and (3, "Evaluation Dataset") in headings
    assert (4, "Triplet") in headings
    assert "- **Maximum Sequence Length:** 128 tokens" in card
    assert "* Size: 4 evaluation samples" in card
    assert "loss:MultipleNegativesRankingLoss" in _front_matter(card)["tags"]


def test_sample_cells_are_escaped_and_truncated() -> None:
    nasty = "pipe | here\nnew line `tick` <b>html</b>\r\nend"
    cell = sample_cell(nasty)
    assert cell == ("<code>pipe \\| here<br>new line &#96;tick&#96; &lt;b&gt;html&lt;/b&gt;<br>end</code>")
    long = sample_cell("x" * (MAX_SAMPLE_CHARS + 50))
    assert long == f"<code>{'x' * MAX_SAMPLE_CHARS}...</code>"
    assert sample_cell(list(range(8))) == "<code>[0, 1, 2, 3, 4, ...]</code>"


def test_escaped_samples_keep_the_table_shape() -> None:
    dataset = DatasetInfo(
        columns=["q|uery", "doc"], samples=[{"q|uery": "a | b\nc", "doc": "<script>x</script>"}]
    )
    card = render_card(RunInfo(train_datasets=[dataset]))
    lines = card.split("* Samples:\n")[1].splitlines()[:3]
    # every row has the same number of unescaped cell separators
    counts = {line.replace("\\|", "").count("|") for line in lines}
    assert counts == {3}
    table = card.split("* Samples:\n")[1].split("* Loss")[0]
    assert "<script>" not in table and "&lt;script&gt;x&lt;/script&gt;" in table


def test_dict_columns_get_token_statistics() -> None:
    stats = [
        ColumnStats("record", "dict", 3, 12.25, 40),
        ColumnStats("label", "float", 0.0, 0.5, 1.0, tokens=False),
    ]
    dataset = DatasetInfo(
        size=50,
        columns=["record", "label"],
        statistics=stats,
        samples=[{"record": {"title": "T", "text": "body"}, "label": 1.0}],
    )
    card = render_card(RunInfo(train_datasets=[dataset]))
    assert "<ul><li>min: 3 tokens</li><li>mean: 12.25 tokens</li><li>max: 40 tokens</li></ul>" in card
    assert "<ul><li>min: 0.0</li><li>mean: 0.5</li><li>max: 1.0</li></ul>" in card
    assert "based on the first 50 samples" in card
    assert "<code>{'title': 'T', 'text': 'body'}</code>" in card


def test_training_logs_order_columns_and_bold_the_saved_step() -> None:
    rows = [
        {"step": 10, "epoch": 0.5, "sts-dev_spearman_cosine": 0.5, "loss": 1.23456},
        {
            "step": 20,
            "epoch": 1.0,
            "validation_loss": 0.9,
            "training_loss": 0.8,
            "sts-dev_spearman_cosine": 0.7,
        },
    ]
    card = render_card(RunInfo(log_rows=rows, best_step=20))
    logs = card.split("### Training Logs\n")[1]
    header = logs.splitlines()[0]
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "Epoch",
        "Step",
        "Training Loss",
        "Validation Loss",
        "sts-dev_spearman_cosine",
    ]
    assert "1.2346" in logs.splitlines()[2] and " - " in logs.splitlines()[2]
    assert "**20**" in logs.splitlines()[3]
    assert "* The bold row denotes the saved checkpoint." in logs
    assert "![" not in card  # no curve image: the table carries the numbers


def test_tables_are_padded_like_sentence_transformers() -> None:
    assert table(["Metric", "Value"], [["a", "0.5"]]).splitlines() == [
        "| Metric | Value |",
        "|:-------|:------|",
        "| a      | 0.5   |",
    ]
    centered = table(["Epoch", "Step"], [["1.0", "5"]], center=True)
    assert centered.splitlines()[1] == "|:-----:|:----:|"


def test_trainer_style_logs_merge_by_step_and_drop_optimizer_columns() -> None:
    rows = [
        {"epoch": 0.5, "step": 10, "loss": 1.5, "learning_rate": 2e-5, "grad_norm": 3.2},
        {
            "epoch": 0.5,
            "step": 10,
            "eval_loss": 1.4,
            "eval_nli_loss": 1.3,
            "eval_dev_max_accuracy": 0.6,
            "eval_runtime": 1.2,
        },
        {"epoch": 1.0, "step": 20, "loss": 0.9, "learning_rate": 1e-5, "grad_norm": 2.0},
        {"epoch": 1.0, "step": 20, "eval_loss": 1.1, "eval_nli_loss": 1.0, "eval_dev_max_accuracy": 0.8},
    ]
    evaluation = EvalInfo(name="dev", metrics={"dev_max_accuracy": 0.8}, primary_metric="dev_max_accuracy")
    card = render_card(RunInfo(log_rows=rows, evaluations=[evaluation]))
    table = card.split("### Training Logs\n")[1].split("\n\n")[0].splitlines()
    assert [c.strip() for c in table[0].strip("|").split("|")] == [
        "Epoch",
        "Step",
        "Training Loss",
        "Validation Loss",
        "nli loss",
        "dev_max_accuracy",
    ]
    assert len(table) == 4  # header, rule, one row per step
    assert [c.strip() for c in table[3].strip("|").split("|")] == [
        "**1.0**",
        "**20**",
        "**0.9**",
        "**1.1**",
        "**1.0**",
        "**0.8**",
    ]
    assert "* The bold row has the best `dev_max_accuracy`." in card
    assert "learning_rate" not in card.split("### Training Logs")[1].split("###")[0]


NASTY = "a|b</details><script>"


def _tables(text: str) -> list[list[str]]:
    """Consecutive lines that start with "|" (after indentation)."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.strip().startswith("|"):
            current.append(line.strip())
        elif current:
            tables.append(current)
            current = []
    return tables


def test_user_provided_names_are_escaped_everywhere() -> None:
    def dataset(i: int) -> DatasetInfo:
        return DatasetInfo(
            name=f"{NASTY}{i}",
            size=3,
            columns=[NASTY, "doc"],
            statistics=[ColumnStats(NASTY, "string", 1, 2.0, 3), ColumnStats("doc", "string", 1, 2.0, 3)],
            samples=[{NASTY: "x", "doc": "y"}],
            loss=LossInfo(NASTY, {"p": 1}),
        )

    evaluation = EvalInfo(
        heading=NASTY,
        name=NASTY,
        metrics={f"{NASTY}_acc": 0.5},
        metrics_base={f"{NASTY}_acc": 0.4},
        primary_metric=f"{NASTY}_acc",
    )
    log_rows = [  # the loop logs per-dataset validation losses and evaluator metrics under these names
        {"epoch": 0.5, "step": 1, "loss": 0.9},
        {"epoch": 0.5, "step": 1, f"eval_{NASTY}0_loss": 0.8, f"eval_{NASTY}_acc": 0.5},
    ]
    run = RunInfo(
        base_model=NASTY,
        train_datasets=[dataset(i) for i in range(4)],  # more than 3: each folds into <details>
        eval_datasets=[dataset(9)],
        evaluations=[evaluation],
        log_rows=log_rows,
        hyperparameters_all={NASTY: NASTY},
        hyperparameters_non_default={NASTY: NASTY},
        language=[NASTY],
        license=NASTY,
        tags=[NASTY],
        framework_versions={NASTY: NASTY},
    )
    card = render_card(run)
    meta = _front_matter(card)
    assert NASTY in meta["tags"] and meta["license"] == NASTY
    assert meta["model-index"][0]["results"][0]["dataset"]["type"] == NASTY
    body = card.split("\n---\n", 1)[1]
    assert "<script>" not in body and NASTY not in body
    assert body.count("<details>") == body.count("</details>") == 3 + 4  # our 3 (2 in comments), 4 datasets
    for lines in _tables(body):
        assert len({line.replace("\\|", "").count("|") for line in lines}) == 1, lines
    logs = body.split("### Training Logs\n")[1].split("\n\n")[0].splitlines()
    assert [c.strip() for c in logs[0].replace("\\|", "¦").strip("|").split("|")] == [
        "Epoch",
        "Step",
        "Training Loss",
        "a¦b&lt;/details&gt;&lt;script&gt;0 loss",
        "a¦b&lt;/details&gt;&lt;script&gt;_acc",
    ]
    escaped = "a\\|b&lt;/details&gt;&lt;script&gt;"
    assert f"<details><summary>{escaped}0</summary>" in body
    assert f"#### {escaped}9\n\n* Dataset: {escaped}9" in body
    assert f"- `{escaped}`: {escaped}" in body
