"""render_card(info) -> the README.md model card; save_card(info, folder) writes it with its curve image.

The sections, their order and their formatting follow the cards sentence-transformers writes, so cards of
both libraries read alike. Additions: "### Direct Usage (embtune)" right after the Sentence Transformers
usage, a base-vs-fine-tuned table under every evaluator, and a curve image under the training logs.

Rendering never raises: every section is built under a guard, and a section that fails renders its heading
and one line saying what could not be computed and why.

>>> text = render_card({"base_model": "bundled:all-MiniLM-L6-v2"})
>>> text.splitlines()[0], "# SentenceTransformer based on sentence-transformers/all-MiniLM-L6-v2" in text
('---', True)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import logs, sections, training
from .curves import write_curves
from .front_matter import front_matter, loss_names
from .markdown import code_block, note
from .run_info import RunInfo, as_run_info

logger = logging.getLogger(__name__)

SBERT_CITATION = """@inproceedings{reimers-2019-sentence-bert,
    title = "Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks",
    author = "Reimers, Nils and Gurevych, Iryna",
    booktitle = "Proceedings of the 2019 Conference on Empirical Methods in Natural Language Processing",
    month = "11",
    year = "2019",
    publisher = "Association for Computational Linguistics",
    url = "https://arxiv.org/abs/1908.10084",
}"""


def _guard(heading: str, build: Callable[[RunInfo], str], info: RunInfo) -> str:
    try:
        return build(info)
    except Exception as err:  # a broken section must not break the card (or the save)
        logger.warning("model card: section %r failed: %s: %s", heading, type(err).__name__, err)
        return f"{heading}\n\n" + note(f"This section could not be computed: {type(err).__name__}: {err}")


def _evaluation(info: RunInfo) -> str:
    if not info.evaluations:
        return ""
    blocks = ["## Evaluation", "### Metrics"]
    for evaluation in info.evaluations:
        blocks.append(
            _guard(f"#### {evaluation.title}", lambda _i, e=evaluation: sections.evaluation_block(e), info)
        )
    return "\n\n".join(blocks)


def _training_details(info: RunInfo) -> str:
    parts = ["## Training Details"]
    if info.train_datasets:
        parts.append(
            _guard(
                "### Training Dataset",
                lambda i: training.datasets_section(i.train_datasets, "training"),
                info,
            )
        )
    else:
        parts.append("### Training Dataset\n\n" + note("The training data was not recorded."))
    if info.all_eval_datasets:
        parts.append(
            _guard(
                "### Evaluation Dataset",
                lambda i: training.datasets_section(i.all_eval_datasets, "evaluation"),
                info,
            )
        )
    parts.append(_guard("### Training Hyperparameters", training.hyperparameters, info))
    if info.log_rows:
        parts.append(_guard("### Training Logs", logs.training_logs, info))
    parts.append(_guard("### Framework Versions", training.versions, info))
    return "\n\n".join(parts)


def _citation(info: RunInfo) -> str:
    parts = [
        "## Citation",
        "### BibTeX",
        "#### Sentence Transformers\n" + code_block(SBERT_CITATION, "bibtex"),
    ]
    citations: dict[str, str] = {}
    for dataset in info.train_datasets:
        if dataset.loss_name and dataset.loss_citation:
            citations.setdefault(dataset.loss_name, dataset.loss_citation)
        for name, bibtex in dataset.inner_losses.items():
            if bibtex:
                citations.setdefault(name, bibtex)
    for name in loss_names(info):
        if name in citations:
            parts.append(f"#### {name}\n" + code_block(citations[name].strip(), "bibtex"))
    return "\n\n".join(parts)


def _closing(info: RunInfo) -> str:
    return "\n\n".join(
        [
            sections.commented("## Glossary", "*Terms used in this card, explained for every audience.*"),
            sections.commented("## Model Card Authors", "*Who wrote this model card.*"),
            sections.commented(
                "## Model Card Contact", "*How to reach the authors with updates or questions.*"
            ),
        ]
    )


def _model_details(info: RunInfo) -> str:
    return "\n\n".join(
        [
            "## Model Details",
            _guard("### Model Description", sections.model_description, info),
            _guard("### Model Sources", sections.model_sources, info),
            _guard("### Full Model Architecture", sections.architecture, info),
        ]
    )


def _usage(info: RunInfo) -> str:
    return "\n\n".join(
        [
            "## Usage",
            _guard("### Direct Usage (Sentence Transformers)", sections.direct_usage, info),
            sections.usage_placeholders(info),
        ]
    )


# (heading used when the section fails, builder), in the order of the seed cards.
SECTIONS: list[tuple[str, Callable[[RunInfo], str]]] = [
    ("---\ntags:\n- sentence-transformers\npipeline_tag: sentence-similarity\n---", front_matter),
    ("# SentenceTransformer", sections.title),
    ("", sections.description),
    ("## Model Details", _model_details),
    ("## Usage", _usage),
    ("## Evaluation", _evaluation),
    ("<!--\n## Bias, Risks and Limitations\n-->", sections.risk_placeholders),
    ("## Training Details", _training_details),
    ("## Citation", _citation),
    ("", _closing),
]


def render_card(info: RunInfo | Mapping[str, Any]) -> str:
    """The model card (README.md text) for a run; never raises.

    Args:
        info: a RunInfo, or a dict with RunInfo's field names (nested dicts for datasets and evaluations).
    """
    try:
        run = as_run_info(info)
    except Exception as err:  # even unusable input gives a (minimal) card
        logger.warning("model card: unusable run info: %s", err)
        run = RunInfo()
        problem = note(f"The run information could not be read: {type(err).__name__}: {err}")
    else:
        problem = ""
    parts = [text for heading, build in SECTIONS if (text := _guard(heading, build, run).strip())]
    if problem:
        parts.insert(2, problem)  # right below the title
    return "\n\n".join(parts) + "\n"


def save_card(info: RunInfo | Mapping[str, Any], folder: str | Path, curves: bool = True) -> Path | None:
    """Write the curve image (when there are logs) and README.md into ``folder``; never raises.

    Call it after ``model.save(folder)``. Returns the README path, or None when it could not be written.
    """
    folder = Path(folder)
    try:
        run = as_run_info(info)
        if curves and run.log_rows and run.curve_image is None:
            run = replace(run, curve_image=write_curves(run.log_rows, folder))
        text = render_card(run)
    except Exception as err:
        logger.warning("model card: %s", err)
        text = render_card(info)
    try:
        path = folder / "README.md"
        path.write_text(text, encoding="utf-8")
        return path
    except OSError as err:
        logger.warning("model card: could not write %s: %s", folder / "README.md", err)
        return None
