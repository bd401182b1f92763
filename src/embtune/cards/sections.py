"""Card sections before Training Details: description, Model Details, Usage, Evaluation.

Each function takes a RunInfo and returns Markdown; ``card.py`` calls them under a guard.
"""

from __future__ import annotations

import json
from typing import Any

from .front_matter import (
    HUB_ID,
    as_float,
    hub_base_model,
    model_name,
    short_primary,
    strip_prefix,
    widget_examples,
)
from .markdown import code_block, escape_cell, format_delta, format_number, make_table, note
from .run_info import EvalInfo, RunInfo

SBERT_EVALUATION_DOCS = "https://sbert.net/docs/package_reference/sentence_transformer/evaluation.html"
SIMILARITY_NAMES = {
    "cosine": "Cosine Similarity",
    "dot": "Dot Product",
    "euclidean": "Euclidean Distance",
    "manhattan": "Manhattan Distance",
}
PLACEHOLDER_ID = "sentence_transformers_model_id"
DEFAULT_SENTENCES = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]


def _base_link(info: RunInfo) -> str | None:
    hub = hub_base_model(info)
    if hub:
        return f"[{hub}](https://huggingface.co/{hub})"
    return f"`{escape_cell(str(info.base_model))}`" if info.base_model else None


def title(info: RunInfo) -> str:
    return f"# {model_name(info)}"


def description(info: RunInfo) -> str:
    base = _base_link(info)
    origin = f"finetuned from {base}" if base else "trained"
    names = [d.name for d in info.train_datasets if d.name]
    on = f" on {', '.join(escape_cell(n) for n in names)}" if names else ""
    dim = info.model_fact("embedding_dim")
    space = f"a {dim}-dimensional" if dim else "a"
    return (
        f"This is a [sentence-transformers](https://www.SBERT.net) model {origin}{on} with "
        f"[embtune](https://pypi.org/project/embtune/). It maps sentences & paragraphs to {space} dense vector "
        "space and can be used for semantic textual similarity, semantic search, paraphrase mining, text "
        "classification, clustering, and more."
    )


def model_description(info: RunInfo) -> str:
    """The "### Model Description" bullet list."""
    lines = ["### Model Description", "- **Model Type:** Sentence Transformer"]
    base = _base_link(info)
    if base:
        revision = f" <!-- at revision {info.base_model_revision} -->" if info.base_model_revision else ""
        lines.append(f"- **Base model:** {base}{revision}")
    else:
        lines.append("<!-- - **Base model:** Unknown -->")
    length = info.model_fact("max_seq_length")
    lines.append(f"- **Maximum Sequence Length:** {f'{length} tokens' if length else 'not recorded'}")
    dim = info.model_fact("embedding_dim")
    lines.append(f"- **Output Dimensionality:** {f'{dim} dimensions' if dim else 'not recorded'}")
    sim = info.model_fact("similarity_fn_name")
    lines.append(
        f"- **Similarity Function:** {SIMILARITY_NAMES.get(str(sim), sim) if sim else 'not recorded'}"
    )
    names = [d.name for d in info.train_datasets if d.name]
    if names:
        lines.append(f"- **Training Dataset{'s' if len(names) > 1 else ''}:**")
        lines += [f"    - {escape_cell(n)}" for n in names]
    else:
        lines.append("<!-- - **Training Dataset:** Unknown -->")
    if info.language:
        langs = [info.language] if isinstance(info.language, str) else list(info.language)
        lines.append(f"- **Language{'s' if len(langs) > 1 else ''}:** {', '.join(map(str, langs))}")
    else:
        lines.append("<!-- - **Language:** Unknown -->")
    lines.append(f"- **License:** {info.license}" if info.license else "<!-- - **License:** Unknown -->")
    return "\n".join(lines)


def model_sources(info: RunInfo) -> str:
    return "\n".join(
        [
            "### Model Sources",
            "",
            "- **Documentation:** [Sentence Transformers Documentation](https://sbert.net)",
            "- **Repository:** [Sentence Transformers on GitHub](https://github.com/UKPLab/sentence-transformers)",
            "- **Hugging Face:** [Sentence Transformers on Hugging Face]"
            "(https://huggingface.co/models?library=sentence-transformers)",
            "- **Fine-tuned with:** [embtune](https://pypi.org/project/embtune/)",
        ]
    )


def architecture(info: RunInfo) -> str:
    arch = info.model_fact("architecture")
    body = code_block(str(arch)) if arch else note("The model architecture was not recorded.")
    return f"### Full Model Architecture\n\n{body}"


def _snippet_sentences(info: RunInfo) -> list[str]:
    try:
        examples = widget_examples(info)
    except Exception:  # fall back to generic sentences
        examples = []
    if examples:
        first = examples[0]
        texts = [first.get("source_sentence"), *list(first.get("sentences") or [])[:2]]
        texts = [t for t in texts if isinstance(t, str)]
        if len(texts) == 3:
            return texts
    return DEFAULT_SENTENCES


def _inference_code(import_line: str, load_line: str, info: RunInfo) -> str:
    sentences = _snippet_sentences(info)
    dim = info.model_fact("embedding_dim") or "embedding_dim"
    listing = "\n".join(f"    {s!r}," for s in sentences)
    return "\n".join(
        [
            import_line,
            "",
            load_line,
            "# Run inference",
            "sentences = [",
            listing,
            "]",
            "embeddings = model.encode(sentences)",
            "print(embeddings.shape)",
            f"# [{len(sentences)}, {dim}]",
            "",
            "# Get the similarity scores for the embeddings",
            "similarities = model.similarity(embeddings, embeddings)",
            "print(similarities.shape)",
            f"# [{len(sentences)}, {len(sentences)}]",
        ]
    )


def direct_usage(info: RunInfo) -> str:
    """### Direct Usage (Sentence Transformers), then our addition ### Direct Usage (embtune)."""
    model_id = info.model_id or PLACEHOLDER_ID
    on_hub = info.model_id is None or HUB_ID.match(model_id)
    where = "Download from the 🤗 Hub" if on_hub else "Load the model from its folder"
    quoted = json.dumps(model_id, ensure_ascii=False)
    st_code = _inference_code(
        "from sentence_transformers import SentenceTransformer",
        f"# {where}\nmodel = SentenceTransformer({quoted})",
        info,
    )
    et_code = _inference_code(
        "from embtune import EmbeddingModel",
        f"# {where}\nmodel = EmbeddingModel.load({quoted})",
        info,
    )
    return "\n\n".join(
        [
            "### Direct Usage (Sentence Transformers)",
            "First install the Sentence Transformers library:",
            code_block("pip install -U sentence-transformers", "bash"),
            "Then you can load this model and run inference.\n" + code_block(st_code, "python"),
            "### Direct Usage (embtune)",
            "The model also loads with embtune, the library it was fine-tuned with:",
            code_block("pip install -U embtune", "bash"),
            code_block(et_code, "python"),
        ]
    )


def commented(heading: str, body: str) -> str:
    """A section kept as an HTML comment for the author to fill in (as the seed cards do)."""
    return f"<!--\n{heading}\n\n{body}\n-->"


def usage_placeholders(info: RunInfo) -> str:
    return "\n\n".join(
        [
            commented(
                "### Direct Usage (Transformers)",
                "<details><summary>Click to see the direct usage in Transformers</summary>\n\n</details>",
            ),
            commented(
                "### Downstream Usage (Sentence Transformers)",
                "You can finetune this model on your own dataset.\n\n"
                "<details><summary>Click to expand</summary>\n\n</details>",
            ),
            commented(
                "### Out-of-Scope Use", "*Uses this model is not suited for, and how it could be misused.*"
            ),
        ]
    )


def risk_placeholders(info: RunInfo) -> str:
    return "\n\n".join(
        [
            commented(
                "## Bias, Risks and Limitations",
                "*Known or foreseeable problems of this model, including failure cases and weaknesses.*",
            ),
            commented("### Recommendations", "*How users can mitigate the issues above.*"),
        ]
    )


def _metric_rows(evaluation: EvalInfo) -> tuple[dict[str, Any], str | None]:
    return strip_prefix(evaluation, evaluation.metrics), short_primary(evaluation)


def _bold(text: str, on: bool) -> str:
    return f"**{text}**" if on else text


def metrics_table(evaluation: EvalInfo) -> str:
    metrics, primary = _metric_rows(evaluation)
    if not metrics:
        return note("No metrics were recorded.")
    rows = [
        {"Metric": _bold(escape_cell(k), k == primary), "Value": _bold(format_number(v), k == primary)}
        for k, v in metrics.items()
    ]
    return make_table(rows)


def comparison_table(evaluation: EvalInfo) -> str:
    """Base model vs fine-tuned: metric, base, fine-tuned, change."""
    if evaluation.metrics_base is None:
        return note("The base model was not evaluated with this evaluator.")
    final, primary = _metric_rows(evaluation)
    base = strip_prefix(evaluation, evaluation.metrics_base)
    rows = []
    for key in dict.fromkeys([*final, *base]):
        new, old = as_float(final.get(key)), as_float(base.get(key))
        delta = format_delta(new - old) if new is not None and old is not None else "-"
        rows.append(
            {
                "Metric": _bold(escape_cell(key), key == primary),
                "Base model": format_number(base[key]) if key in base else "-",
                "Fine-tuned": _bold(format_number(final[key]), key == primary) if key in final else "-",
                "Change": delta,
            }
        )
    return make_table(rows)


def evaluator_link(evaluation: EvalInfo) -> str:
    cls = evaluation.evaluator_class
    if not cls:
        return "an embtune evaluator"
    link = (
        f"[<code>{escape_cell(cls)}</code>]({SBERT_EVALUATION_DOCS}#sentence_transformers.evaluation.{cls})"
    )
    return f"{link} (embtune's implementation)"


def evaluation_block(evaluation: EvalInfo) -> str:
    """One "#### <Kind>" block: dataset, evaluator, metrics table, base-vs-fine-tuned table."""
    lines = [f"#### {evaluation.title}", ""]
    if evaluation.name:
        lines.append(f"* Dataset: `{escape_cell(evaluation.name)}`")
    lines.append(f"* Evaluated with {evaluator_link(evaluation)}")
    parts = [
        "\n".join(lines),
        metrics_table(evaluation),
        "* Base model vs fine-tuned:",
        comparison_table(evaluation),
    ]
    return "\n\n".join(parts)
