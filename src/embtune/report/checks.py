"""The checks of one dataset file: texts, duplicates, truncation, labels, pairs; and leakage across files."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from .duplicates import expected_false_negative_share, leaked, near_duplicate_rows, normalize
from .options import DataChecks
from .report import DatasetReport, Finding
from .text_checks import check_texts

IN_BATCH_LOSSES = {"MultipleNegativesRankingLoss", "CachedMultipleNegativesRankingLoss",
                   "MultipleNegativesSymmetricRankingLoss", "GISTEmbedLoss", "CachedGISTEmbedLoss"}
_TEXT_PROBLEMS = {
    "empty": "empty or whitespace-only texts; drop those rows",
    "short": "very short texts (< {min_chars} characters); check they are meant",
    "mojibake": "texts look like mojibake (UTF-8 read as Latin-1/cp1252/Mac Roman, e.g. 'hÃ¥nden'); "
                "repair with `embtune check-data --repair DIR` (ftfy) or fix the export",
    "replacement": "texts contain U+FFFD replacement characters (bytes lost when decoding); re-export as UTF-8",
    "control": "texts contain control characters; strip them",
    "nul": "texts contain NUL characters; strip them",
}


def _rows(indices: Sequence[int], n: int = 5) -> list[int]:
    return [int(i) + 1 for i in list(indices)[:n]]


def text_findings(report: DatasetReport, texts: dict[str, list[str]], opts: DataChecks) -> int:
    """Per column: empty, short and damaged texts. Returns the number of damaged texts."""
    damaged = 0
    for column, values in texts.items():
        found = check_texts(values, opts.min_chars)
        for key, fix in _TEXT_PROBLEMS.items():
            rows = getattr(found, key)
            if key in ("mojibake", "replacement", "control", "nul"):
                damaged += len(rows)
            if rows:
                check = {"replacement": "replacement_char", "control": "control_char"}.get(key, key)
                report.add(Finding(check, "warning", len(rows), len(values),
                                   f"column {column!r}: {len(rows)} of {len(values)} {fix.format(min_chars=opts.min_chars)}",
                                   column, _rows(rows)))
    return damaged


def duplicate_findings(report: DatasetReport, rows: list[str], texts: dict[str, list[str]], anchor: str,
                       opts: DataChecks) -> int:
    """Exact duplicates of whole rows (normalized), and near duplicates per text column. Returns the exact count.

    Near duplicates are a warning in the anchor column (the same question asked twice, reworded); in the
    other columns they are reported as information, since many anchors sharing one document is normal.
    """
    seen: dict[str, int] = {}
    exact = [i for i, key in enumerate(rows) if seen.setdefault(key, i) != i]
    if exact:
        report.add(Finding("duplicates", "warning", len(exact), len(rows),
                           f"{len(exact)} of {len(rows)} rows repeat an earlier row (ignoring case, punctuation and "
                           "spacing); drop them, they weigh those examples double", rows=_rows(exact)))
    if not opts.near_duplicates:
        return len(exact)
    for column, values in texts.items():
        near = near_duplicate_rows([normalize(t) for t in values], opts.near_threshold)
        if near is None:
            report.add(Finding("near_duplicates", "info", 0, len(rows),
                               "near duplicates not checked: install datasketch (pip install 'embtune[data]')"))
            break
        if near:
            report.add(Finding("near_duplicates", "warning" if column == anchor else "info", len(near), len(values),
                               f"column {column!r}: {len(near)} of {len(values)} texts nearly repeat an earlier one "
                               f"(MinHash Jaccard >= {opts.near_threshold}, exact copies not counted); "
                               "consider deduplicating", column, _rows(near)))
    return len(exact)


_TOKENIZE_CHUNK = 4096  # texts per tokenizer call: a call's encodings cost ~5 KB per text until freed


def token_counts(texts: Sequence[str], tokenizer: Any) -> np.ndarray:
    """Untruncated token count of each text (special tokens included), tokenized a chunk at a time so that
    only the counts outlive a call, whatever the number of texts."""
    lengths = np.zeros(len(texts), dtype=np.int64)
    for start in range(0, len(texts), _TOKENIZE_CHUNK):
        ids = tokenizer(list(texts[start : start + _TOKENIZE_CHUNK]), add_special_tokens=True, truncation=False,
                        verbose=False, return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        lengths[start : start + len(ids)] = [len(x) for x in ids]
    return lengths


def truncation_findings(report: DatasetReport, texts: dict[str, list[str]], prompts: dict[str, str],
                        tokenizer: Any, max_seq_length: int) -> int:
    """Per column: texts longer than max_seq_length tokens and the share of tokens cut. Returns the count."""
    total_cut = 0
    for column, values in texts.items():
        prompt = prompts.get(column) or ""
        lengths = token_counts([prompt + v for v in values], tokenizer)
        cut = lengths > max_seq_length
        if cut.any():
            lost = float((lengths - max_seq_length).clip(min=0).sum() / max(lengths.sum(), 1))
            total_cut += int(cut.sum())
            report.add(Finding(
                "truncation", "warning", int(cut.sum()), len(values),
                f"column {column!r}: {int(cut.sum())} of {len(values)} texts exceed max_seq_length={max_seq_length} "
                f"tokens ({lost:.1%} of the column's tokens are cut); raise model.max_seq_length if their ends matter",
                column, _rows(np.flatnonzero(cut)),
                {"tokens_lost_share": round(lost, 6), "max_tokens": int(lengths.max())},
            ))
    return total_cut


def label_findings(report: DatasetReport, labels: np.ndarray | None, loss: Any, column: str | None) -> None:
    """The label distribution, and what the loss cannot learn from (a constant label stops training)."""
    spec = getattr(loss, "label", None)
    if labels is None or spec is None or column is None:
        return
    values = np.asarray(labels, dtype=np.float64).reshape(len(labels), -1)
    distinct = np.unique(values)
    details = {"min": float(values.min()), "max": float(values.max()), "mean": round(float(values.mean()), 4),
               "distinct": int(distinct.size), "expected": spec.describe()}
    if distinct.size <= 10:
        details["counts"] = {f"{v:g}": int((values == v).sum()) for v in distinct}
    if distinct.size == 1 and values.shape[1] == 1:
        report.add(Finding("labels", "error", len(values), len(values),
                           f"column {column!r}: every label is {distinct[0]:g}; {loss.name} learns nothing from a "
                           "constant label; fix the label column", column, details=details))
        return
    message = (f"column {column!r}: labels {details['min']:g} .. {details['max']:g} (mean {details['mean']:g}, "
               f"{details['distinct']} distinct); {loss.name} expects {spec.describe()}")
    severity = "info"
    if spec.kind == "binary" and "counts" in details:
        minority = min(details["counts"].values()) / len(values)
        if minority < 0.05:
            severity, message = "warning", message + f"; only {minority:.1%} of rows are the rarer class"
    if spec.kind == "float" and spec.low == -1.0 and details["min"] >= 0.0:
        message += " (all labels >= 0: fine if 0 means unrelated)"
    report.add(Finding("labels", severity, len(values), len(values), message, column, details=details))


def pair_findings(report: DatasetReport, texts: dict[str, list[str]], roles: dict[str, str], loss: Any,
                  batch_size: int, sampler: str) -> None:
    """anchor == positive rows; in-batch negatives that duplicate the positive at the configured batch size."""
    if "positive" not in roles:
        return
    anchors = [normalize(t) for t in texts[roles["anchor"]]]
    positives = [normalize(t) for t in texts[roles["positive"]]]
    same = [i for i, (a, p) in enumerate(zip(anchors, positives, strict=True)) if a == p]
    if same:
        every = len(same) == len(anchors)
        report.add(Finding("anchor_equals_positive", "error" if every else "warning", len(same), len(anchors),
                           f"{len(same)} of {len(anchors)} rows have anchor == positive (normalized); "
                           + ("the pairs teach nothing: map a different positive column" if every
                              else "drop them, they teach nothing"), roles["positive"], _rows(same)))
    if getattr(loss, "name", "") not in IN_BATCH_LOSSES:
        return
    candidates = Counter(positives)
    for role, column in roles.items():
        if role.startswith("negative"):
            candidates.update(normalize(t) for t in texts[column])
    n = len(positives)
    copies = {k: candidates[k] for k in set(positives) if candidates[k] > 1}
    if not copies:
        return
    share = expected_false_negative_share(positives, candidates, batch_size)
    avoided = sampler == "no_duplicates"
    report.add(Finding(
        "in_batch_false_negatives", "info" if avoided else "warning", int(sum(c > 1 for c in map(candidates.get, positives))), n,
        f"{sum(copies.values())} candidate texts repeat a positive; at batch size {batch_size} about {share:.1%} of rows "
        "would see a copy of their positive as an in-batch negative"
        + (" (args.batch_sampler no_duplicates avoids exact copies)" if avoided
           else "; set args.batch_sampler: no_duplicates"),
        roles["positive"], details={"expected_share": round(share, 6), "batch_size": batch_size},
    ))


def leakage_finding(report: DatasetReport, eval_texts: dict[str, list[str]], train_texts: list[str],
                    opts: DataChecks) -> None:
    """Evaluation texts that occur in the training data, exactly or nearly (per evaluation column)."""
    threshold = opts.near_threshold if opts.near_duplicates else None
    for column, values in eval_texts.items():
        keys = [normalize(t) for t in values]
        exact, near = leaked(keys, train_texts, threshold)
        hits = exact + (near or 0)
        if not hits:
            continue
        unique = len({k for k in keys if k})
        how = f"{exact} exact" + (f", {near} near" if near is not None else ", near copies not checked")
        report.add(Finding(
            "leakage", "error" if opts.stop_on_leakage else "warning", hits, unique,
            f"leakage: {hits} of {unique} distinct {column!r} texts also occur in the training data ({how}); "
            "the evaluation overstates quality: remove them from training (or from the evaluation set)",
            column, details={"exact": exact, "near": near},
        ))
