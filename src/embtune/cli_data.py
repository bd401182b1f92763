"""`embtune mine` and `embtune check-data`: the data commands (parse, call the API, print briefly)."""

from __future__ import annotations

import argparse
import json


def add_data_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mine", help="mine hard negatives for (anchor, positive) pairs")
    p.add_argument("model", help="the model that ranks candidates (folder, Hub id, bundled:all-MiniLM-L6-v2)")
    p.add_argument("--data", required=True, help="pairs: .csv/.tsv/.jsonl/.parquet")
    p.add_argument("--anchor", default="anchor", help="anchor column (default: anchor)")
    p.add_argument("--positive", default="positive", help="positive column (default: positive)")
    p.add_argument("--corpus", help="candidate documents (.txt one per line, or a table file); default: the positives")
    p.add_argument("--corpus-column", default="text", help="text column of --corpus (default: text)")
    p.add_argument("--output", required=True, help="where to write the rows (.jsonl, .csv or .parquet)")
    p.add_argument("--num", type=int, default=3, help="negatives per pair (default 3)")
    p.add_argument("--range-min", type=int, default=0, help="skip the top ranks (default 0)")
    p.add_argument("--range-max", type=int, help="consider ranks below this (default: from num and filters)")
    p.add_argument("--margin", type=float, help="drop candidates scoring above positive - margin")
    p.add_argument("--max-score-ratio", type=float, help="drop candidates scoring above ratio * positive (e.g. 0.95)")
    p.add_argument("--max-score", type=float, help="drop candidates scoring above this")
    p.add_argument("--min-score", type=float, help="drop candidates scoring below this")
    p.add_argument("--cross-encoder", help="cross-encoder folder that rescores candidates before filtering")
    p.add_argument("--format", default="triplet", choices=["triplet", "n-tuple"], dest="output_format")
    p.add_argument("--scores", action="store_true", help="add a scores column (positive first), e.g. for MarginMSE")
    p.add_argument("--query-prompt", help="prompt for the anchors, e.g. 'query: '")
    p.add_argument("--corpus-prompt", help="prompt for the candidates, e.g. 'passage: '")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--faiss", action=argparse.BooleanOptionalAction, default=None, help="force faiss on/off")
    p.add_argument("--max-rows", type=int, help="use only the first rows of --data")
    p.add_argument("--json", action="store_true", help="print the mining statistics as JSON")

    p = sub.add_parser("check-data", help="data report: duplicates, leakage, truncation, encoding damage, labels")
    p.add_argument("recipe", help="a recipe (checks every dataset and evaluator file)")
    p.add_argument("overrides", nargs="*", metavar="key.path=value", help="override recipe values")
    p.add_argument("--output", help="where to write the full JSON report (default: <output_dir>/data_report.json)")
    p.add_argument("--repair", metavar="FOLDER", help="write ftfy-repaired copies of files with encoding damage here")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")


def cmd_mine(args) -> int:
    from .mining import MineOptions, mine_hard_negatives
    from .mining.files import read_corpus, read_pairs, write_rows

    options = MineOptions(
        model=args.model, num=args.num, range_min=args.range_min, range_max=args.range_max, margin=args.margin,
        max_score_ratio=args.max_score_ratio, max_score=args.max_score, min_score=args.min_score,
        cross_encoder=args.cross_encoder, output_format=args.output_format, scores=args.scores,
        query_prompt=args.query_prompt, corpus_prompt=args.corpus_prompt, batch_size=args.batch_size,
        use_faiss=args.faiss,
    )
    anchors, positives = read_pairs(args.data, args.anchor, args.positive, args.max_rows)
    corpus = read_corpus(args.corpus, args.corpus_column) if args.corpus else None
    result = mine_hard_negatives(anchors, positives, args.model, options, corpus=corpus)
    path = write_rows(args.output, result.columns)
    if args.json:
        print(json.dumps(result.stats, indent=2))
    else:
        s = result.stats
        neg = s["mean_negative_score"]
        print(f"{s['rows']} rows -> {path} ({s['queries']} anchors, corpus {s['corpus']}, {s['seconds']:.1f}s; "
              f"mean score positive {s['mean_positive_score']:.3f}, negative {neg if neg is None else round(neg, 3)}; "
              f"{s['missing_negatives']} negatives not found)")
    return 0


def cmd_check_data(args) -> int:
    from .report import check_recipe_data

    report = check_recipe_data(args.recipe, args.overrides, output=args.output, repair_to=args.repair)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.brief())
    return 0


DATA_COMMANDS = {"mine": cmd_mine, "check-data": cmd_check_data}
