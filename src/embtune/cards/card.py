"""render_card(info) -> the model card (README.md) from ``template.md.j2``; save_card(info, folder) writes it.

The sections, their order and their formatting follow the cards sentence-transformers writes, so cards of both
libraries read alike. Additions: "### Direct Usage (embtune)" after the Sentence Transformers usage and a
base-vs-fine-tuned table under every evaluator.

Every value the template prints is escaped (the environment's ``finalize``): a dataset, column, evaluator or
metric name cannot break a table or inject HTML. Helpers that build markup escape their inputs and return
``Markup``, which the template prints as is.

>>> text = render_card(RunInfo(base_model="bundled:all-MiniLM-L6-v2"))
>>> text.splitlines()[0], "# SentenceTransformer based on sentence-transformers/all-MiniLM-L6-v2" in text
('---', True)
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import jinja2
import yaml
from huggingface_hub import EvalResult
from huggingface_hub.repocard_data import eval_results_to_model_index
from markupsafe import Markup

from ..losses import LOSSES
from ..models.bundled import HUB_ID as BUNDLED_HUB_ID
from ..utils.atomic import atomic_write_text
from . import markdown as md
from .dataset_stats import STATISTICS_ROWS
from .log_table import training_logs
from .run_info import DatasetInfo, EvalInfo, RunInfo

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
PLACEHOLDER_ID = "sentence_transformers_model_id"
DEFAULT_SENTENCES = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
WIDGET_EXAMPLES = 5
SIMILARITY_NAMES = {"cosine": "Cosine Similarity", "dot": "Dot Product", "euclidean": "Euclidean Distance",
                    "manhattan": "Manhattan Distance"}
SBERT_DOCS = "https://sbert.net/docs/package_reference/sentence_transformer"
SNIPPET = """{import_line}

# {where}
model = {load}
# Run inference
sentences = [
{sentences}
]
embeddings = model.encode(sentences)
print(embeddings.shape)
# [{n}, {dim}]

# Get the similarity scores for the embeddings
similarities = model.similarity(embeddings, embeddings)
print(similarities.shape)
# [{n}, {n}]"""
SBERT_CITATION = """@inproceedings{reimers-2019-sentence-bert,
    title = "Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks",
    author = "Reimers, Nils and Gurevych, Iryna",
    booktitle = "Proceedings of the 2019 Conference on Empirical Methods in Natural Language Processing",
    month = "11",
    year = "2019",
    publisher = "Association for Computational Linguistics",
    url = "https://arxiv.org/abs/1908.10084",
}"""


def hub_base_model(base: str | None) -> str | None:
    """The base model as a Hub id (the bundled model maps to its Hub id); None for local paths."""
    if base and base.startswith("bundled:"):
        return BUNDLED_HUB_ID
    return base if base and HUB_ID.match(base) else None


def model_name(info: RunInfo) -> str:
    """The card title (and model-index name), in the seed cards' wording."""
    base = hub_base_model(info.base_model) or (Path(info.base_model).name if info.base_model else None)
    return f"SentenceTransformer based on {base}" if base else "SentenceTransformer"


def base_link(info: RunInfo) -> Markup | None:
    if hub := hub_base_model(info.base_model):
        return Markup(f"[{md.escape(hub)}](https://huggingface.co/{md.escape(hub)})")
    return Markup(f"`{md.escape(info.base_model)}`") if info.base_model else None


def widget_examples(info: RunInfo) -> list[dict[str, Any]]:
    """From the training samples: a row's first text as ``source_sentence``, its other texts (then the next
    rows' second text) as ``sentences``, up to three."""
    examples: list[dict[str, Any]] = []
    for dataset in info.train_datasets:
        texts = [[v for v in row.values() if isinstance(v, str) and v.strip()] for row in dataset.samples]
        texts = [t for t in texts if len(t) >= 2]
        for i, row_texts in enumerate(texts):
            sentences = row_texts[1:]
            for other in texts[i + 1:] + texts[:i]:
                if len(sentences) >= 3:
                    break
                sentences.append(other[1])
            if all(e["source_sentence"] != row_texts[0] for e in examples):
                examples.append({"source_sentence": row_texts[0], "sentences": sentences[:3]})
            if len(examples) >= WIDGET_EXAMPLES:
                return examples
    return examples


def shown_metrics(evaluation: EvalInfo, metrics: dict[str, float]) -> dict[str, float]:
    """Metric keys without the ``{name}_`` prefix (when every key has it), as the seed cards show them."""
    prefix = f"{evaluation.name}_" if evaluation.name else ""
    if prefix and metrics and all(k.startswith(prefix) for k in metrics):
        return {k[len(prefix):]: v for k, v in metrics.items()}
    return dict(metrics)


def shown_primary(evaluation: EvalInfo) -> str | None:
    primary, prefix = evaluation.primary_metric, f"{evaluation.name}_"
    if primary and evaluation.name and primary not in shown_metrics(evaluation, evaluation.metrics):
        return primary.removeprefix(prefix)
    return primary


def front_matter(info: RunInfo) -> str:
    """The YAML between the card's ``---`` lines: tags, base model, widget, metrics and model-index."""
    data: dict[str, Any] = {}
    if info.language:
        data["language"] = list(info.language)
    if info.license:
        data["license"] = info.license
    tags = ["sentence-transformers", "sentence-similarity", "feature-extraction", "embtune"]
    sizes = [d.size for d in info.train_datasets if d.size is not None]
    tags += [f"dataset_size:{sum(sizes)}"] if sizes else []
    data["tags"] = list(dict.fromkeys(tags + [f"loss:{loss.name}" for loss in info.losses()] + info.tags))
    if base := hub_base_model(info.base_model):
        data["base_model"] = base
    if widget := widget_examples(info):
        data["widget"] = widget
    data["pipeline_tag"] = "sentence-similarity"
    data["library_name"] = "sentence-transformers"
    results = [
        EvalResult(task_type=e.heading.lower().replace(" ", "-"), task_name=e.heading,
                   dataset_type=e.name or "unknown",
                   dataset_name=e.name.replace("_", " ").replace("-", " ") if e.name else "Unknown",
                   metric_type=key, metric_value=value, metric_name=key.replace("_", " ").title())
        for e in info.evaluations for key, value in shown_metrics(e, e.metrics).items() if not math.isnan(value)
    ]
    if results:
        data["metrics"] = list(dict.fromkeys(r.metric_type for r in results))
        data["model-index"] = eval_results_to_model_index(model_name(info), results)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def inference_code(info: RunInfo, import_line: str, loader: str) -> Markup:
    """The usage snippet: load the model with ``loader`` (e.g. ``SentenceTransformer``) and embed 3 sentences."""
    model_id = info.model_id or PLACEHOLDER_ID
    hub = info.model_id is None or HUB_ID.match(model_id)
    examples = widget_examples(info)
    sentences = [examples[0]["source_sentence"], *examples[0]["sentences"][:2]] if examples else []
    sentences = sentences if len(sentences) == 3 else DEFAULT_SENTENCES
    code = SNIPPET.format(
        import_line=import_line,
        where="Download from the 🤗 Hub" if hub else "Load the model from its folder",
        load=f"{loader}({json.dumps(model_id, ensure_ascii=False)})",
        sentences="\n".join(f"    {s!r}," for s in sentences),
        n=len(sentences),
        dim=info.embedding_dim or "embedding_dim",
    )
    return md.code_block(code, "python")


def metrics_table(evaluation: EvalInfo) -> Markup:
    metrics, primary = shown_metrics(evaluation, evaluation.metrics), shown_primary(evaluation)
    if not metrics:
        return Markup("*No metrics were recorded.*")
    rows = [[md.bold(k, k == primary), md.bold(md.number(v), k == primary)] for k, v in metrics.items()]
    return md.table(["Metric", "Value"], rows)


def comparison_table(evaluation: EvalInfo) -> Markup:
    """Base model vs fine-tuned: metric, base, fine-tuned, change."""
    if evaluation.metrics_base is None:
        return Markup("*The base model was not evaluated with this evaluator.*")
    final, primary = shown_metrics(evaluation, evaluation.metrics), shown_primary(evaluation)
    base = shown_metrics(evaluation, evaluation.metrics_base)
    rows = []
    for key in dict.fromkeys([*final, *base]):
        change = f"{final[key] - base[key]:+.4f}" if key in final and key in base else "-"
        rows.append([md.bold(key, key == primary), md.number(base[key]) if key in base else "-",
                     md.bold(md.number(final[key]), key == primary) if key in final else "-", change])
    return md.table(["Metric", "Base model", "Fine-tuned", "Change"], rows)


def evaluator_link(evaluation: EvalInfo) -> Markup:
    cls = evaluation.evaluator_class
    if not cls:
        return Markup("an embtune evaluator")
    url = f"{SBERT_DOCS}/evaluation.html#sentence_transformers.evaluation.{md.escape(cls)}"
    return Markup(f"[{md.code(cls)}]({url}) (embtune's implementation)")


def statistics_table(dataset: DatasetInfo) -> Markup:
    if not dataset.statistics:
        return Markup("*Statistics were not recorded.*")
    details = []
    for s in dataset.statistics:
        unit = " tokens" if s.tokens else ""
        items = [f"<li>{key}: {md.number(value)}{unit}</li>"
                 for key, value in (("min", s.min), ("mean", s.mean), ("max", s.max)) if value is not None]
        details.append(Markup(f"<ul>{''.join(items) or '<li></li>'}</ul>"))
    rows = [["type", *(s.kind for s in dataset.statistics)], ["details", *details]]
    return md.indent(md.table(["", *(s.column for s in dataset.statistics)], rows))


def samples_table(dataset: DatasetInfo) -> Markup:
    if not dataset.samples:
        return Markup("*No samples were recorded.*")
    columns = list(dict.fromkeys([*(c for c in dataset.columns if any(c in r for r in dataset.samples)),
                                  *(k for r in dataset.samples for k in r)]))
    rows = [[md.sample_cell(r[c]) if c in r else "" for c in columns] for r in dataset.samples]
    return md.indent(md.table(columns, rows))


def loss_line(dataset: DatasetInfo) -> Markup:
    if dataset.loss is None:
        return Markup("* Loss: *not recorded*")
    name = dataset.loss.name
    label = md.code(name)
    known = {getattr(cls, "name", None) for cls in LOSSES.values()}
    link = f"[{label}]({SBERT_DOCS}/losses.html#{md.escape(name.lower())})" if name in known else label
    if dataset.loss.config is None:
        return Markup(f"* Loss: {link}")
    config = json.dumps(dataset.loss.config, indent=4, default=str)
    return Markup(f"* Loss: {link} with these parameters:\n{md.indent(md.code_block(config, 'json'))}")


_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent),
    autoescape=True,  # with _finalize: every printed value is escaped for Markdown and HTML unless Markup
    finalize=md.escape,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)
_ENV.filters.update(
    md=md.escape, code_block=md.code_block, code_list=lambda names: md.join_names([md.code(n) for n in names]),
    metrics_table=metrics_table,
    comparison_table=comparison_table, evaluator_link=evaluator_link, statistics_table=statistics_table,
    samples_table=samples_table, loss_line=loss_line,
)


def render_card(info: RunInfo) -> str:
    """The model card (README.md text) for a run."""
    logs, why = training_logs(info)
    return _ENV.get_template("template.md.j2").render(
        info=info, front_matter=Markup(front_matter(info)), title=model_name(info), base_link=base_link(info),
        similarity=SIMILARITY_NAMES.get(info.similarity_fn_name or "", info.similarity_fn_name),
        st_code=inference_code(info, "from sentence_transformers import SentenceTransformer", "SentenceTransformer"),
        embtune_code=inference_code(info, "from embtune import EmbeddingModel", "EmbeddingModel.load"),
        logs=logs, logs_why=why, sbert_citation=SBERT_CITATION, statistics_rows=STATISTICS_ROWS,
    )


def save_card(info: RunInfo, folder: str | Path) -> Path:
    """Write ``folder/README.md`` (atomically) and return its path; call it after ``model.save(folder)``."""
    path = Path(folder) / "README.md"
    atomic_write_text(path, render_card(info))
    return path
