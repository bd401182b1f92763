"""Run the data report over a training run's datasets and evaluators: before ``train`` and in ``check-data``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..data.render import for_role
from ..errors import EmbtuneError
from ..teachers.targets import rendered_texts
from . import checks
from .duplicates import normalize
from .options import DataChecks
from .report import DataReport, DatasetReport

REPORT_FILE = "data_report.json"


def _texts_by_column(prepared: Any, cfg: Any, cache_dir: Path, limit: int | None) -> dict[str, list[str]]:
    by_role = rendered_texts(prepared, cfg.template, cfg.format, cache_dir, max_rows=limit)
    return {prepared.columns[role]: texts for role, texts in by_role.items()}


def _dataset_report(d: Any, prepared: Any, split: str, args: Any, opts: DataChecks, tokenizer: Any,
                    cache_dir: Path) -> tuple[DatasetReport, list[str], dict[str, int]]:
    """The findings of one prepared file; also its normalized texts (for leakage) and counts (for thresholds)."""
    texts = _texts_by_column(prepared, d.cfg, cache_dir, opts.max_rows)
    n = len(next(iter(texts.values())))
    report = DatasetReport(prepared.name, split, str(prepared.path), n)
    roles = {role: prepared.columns[role] for role in prepared.roles}
    prompts = {prepared.columns[r]: for_role(d.cfg.prompt, r) or "" for r in prepared.roles}
    damaged = checks.text_findings(report, texts, opts)
    label_column = prepared.columns.get("label")
    rows = [" || ".join(normalize(texts[c][i]) for c in texts) for i in range(n)]
    if label_column is not None and prepared.labels is not None:
        rows = [f"{r} || {prepared.labels[i].tolist()}" for i, r in enumerate(rows)]
    duplicates = checks.duplicate_findings(report, rows, texts, prepared.columns["anchor"], opts)
    cut = checks.truncation_findings(report, texts, prompts, tokenizer, prepared.max_seq_length)
    labels = None if prepared.labels is None or label_column is None else prepared.labels[:n]
    checks.label_findings(report, labels, d.loss, label_column)
    checks.pair_findings(report, texts, roles, d.loss, args.per_device_train_batch_size, args.batch_sampler)
    n_texts = n * len(texts)
    counts = {"rows": n, "texts": n_texts, "duplicates": duplicates, "truncated": cut, "damaged": damaged}
    normalized = [normalize(t) for values in texts.values() for t in values]
    return report, normalized, counts


def evaluator_texts(evaluator: Any) -> dict[str, list[str]]:
    """The texts an evaluator scores, by input: retrieval queries and their relevant documents, pairs, triplets."""
    if hasattr(evaluator, "relevant_docs"):
        relevant = {doc for docs in evaluator.relevant_docs.values() for doc in docs}
        docs = [t for cid, t in zip(evaluator.corpus_ids, evaluator.corpus, strict=True) if cid in relevant]
        return {"queries": list(evaluator.queries), "relevant documents": docs}
    names = ("sentences1", "sentences2", "anchors", "positives", "negatives")
    return {name: list(getattr(evaluator, name)) for name in names if isinstance(getattr(evaluator, name, None), list)}


def build_report(data: list[Any], evaluators: list[Any], args: Any, opts: DataChecks, tokenizer: Any,
                 cache_dir: str | os.PathLike[str]) -> tuple[DataReport, list[str]]:
    """The report of every training dataset, validation file and evaluator; and the reasons to stop, if any."""
    cache_dir = Path(cache_dir)
    report, train_texts, stops = DataReport(), [], []
    for d in data:
        part, normalized, counts = _dataset_report(d, d.train, "train", args, opts, tokenizer, cache_dir)
        report.datasets.append(part)
        train_texts.extend(normalized)
        stops += _threshold_stops(part, counts, opts)
    train_set = sorted(set(train_texts))
    for d in data:
        if d.eval is not None:
            part, _, _ = _dataset_report(d, d.eval, "eval", args, opts, tokenizer, cache_dir)
            texts = _texts_by_column(d.eval, d.cfg, cache_dir, opts.max_rows)
            checks.leakage_finding(part, texts, train_set, opts)
            report.datasets.append(part)
    for ev in evaluators:
        texts = {k: v[: opts.max_rows] for k, v in evaluator_texts(ev).items()}
        part = DatasetReport(getattr(ev, "name", "") or type(ev).__name__, "evaluator", type(ev).__name__,
                             max((len(v) for v in texts.values()), default=0))
        checks.text_findings(part, texts, opts)
        checks.leakage_finding(part, texts, train_set, opts)
        report.datasets.append(part)
    stops += [f"{d.name}: {f.message}" for d, f in report.findings("error")]
    return report, stops


def _threshold_stops(part: DatasetReport, counts: dict[str, int], opts: DataChecks) -> list[str]:
    out = []
    for key, count, total in (("max_duplicate_share", counts["duplicates"], counts["rows"]),
                              ("max_truncated_share", counts["truncated"], counts["texts"]),
                              ("max_damaged_share", counts["damaged"], counts["texts"])):
        limit = getattr(opts, key)
        if limit is not None and total and count / total > limit:
            out.append(f"{part.name}: {count / total:.1%} > checks.{key}={limit}")
    return out


def report_before_training(data: list[Any], evaluators: list[Any], config: Any, tokenizer: Any,
                           cache_dir: Path, output_dir: Path) -> DataReport | None:
    """Run the report (unless ``checks.enabled`` is false), print it briefly, write the JSON, maybe stop.

    Under DDP rank 0 builds the report and every rank stops on its verdict (no rank waits for a dead one).
    """
    from ..utils import distributed as dist

    opts = config.checks
    if not opts.enabled:
        return None
    report, stop = None, None
    if dist.is_main():
        report, stops = build_report(data, evaluators, config.args, opts, tokenizer, cache_dir)
        report.write(output_dir / REPORT_FILE)
        print(report.brief())
        if stops:
            stop = (f"the data report stops training: {stops[0]}"
                    + (f" (and {len(stops) - 1} more)" if len(stops) > 1 else "")
                    + f"; see {report.path}, fix the data or relax the `checks` thresholds in the recipe")
    stop = dist.broadcast_object(stop)
    if stop:
        error = EmbtuneError(stop)
        error.keep_files = (REPORT_FILE,)  # the rollback of a failed start keeps the report the message names
        raise error
    return report


def check_recipe_data(recipe: str, overrides: list[str] | None = None, output: str | None = None,
                      repair_to: str | None = None) -> DataReport:
    """``embtune check-data``: prepare the recipe's data as ``train`` would (cached), report, write the JSON."""
    from ..training.build import build_evaluators, build_model, prepare_data
    from ..training.recipe import load_recipe

    config = load_recipe(recipe, overrides or [])
    args = config.args
    cache_dir = args.resolved_cache_dir()
    model = build_model(config.model)
    data = prepare_data(config.datasets, model, cache_dir, args.per_device_train_batch_size)
    evaluators = build_evaluators(config.eval.evaluators, cache_dir, args.per_device_eval_batch_size)
    report, _ = build_report(data, evaluators, args, config.checks, model.tokenizer, cache_dir)
    report.write(output or Path(args.output_dir) / REPORT_FILE)
    if repair_to:
        from .repair import repair_files

        for line in repair_files(report, Path(repair_to)):
            print(line)
    return report
