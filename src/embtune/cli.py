"""The `embtune` command line: parse arguments, call the Python API, print results.

Every user-facing error is one line on stderr and exit code 2; no traceback unless EMBTUNE_DEBUG=1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings

from .cli_data import DATA_COMMANDS, add_data_commands
from .errors import EmbtuneError


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model folder, Hugging Face Hub id, or bundled:all-MiniLM-L6-v2")
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom code from the model folder")
    p.add_argument("--allow-pickle", action="store_true", help="allow pickle weights (pytorch_model.bin)")


class _UsageError(Exception):
    """A command line argparse refused: shown as the parser's usage plus one error line."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        raise _UsageError(self, message)


USAGE = """usage: embtune {train,eval,encode,similarity,info} ...   (embtune <command> --help for its options)
  train RECIPE.yaml [key=value ...]     fine-tune from a recipe
  eval MODEL --data FILE --evaluator K  evaluate (sts, triplet, binary, retrieval)
  encode MODEL --input F --output E.npy embed texts
  similarity MODEL TEXT_A TEXT_B        similarity of two texts
  info MODEL                            architecture, dimensions, prompts"""


# The keys of evaluation.registry.EVALUATORS as shipped (a test keeps them equal): importing the registry loads
# torch, which made `embtune --help` and every parse of the command line take ~2 s.
EVALUATOR_NAMES = ("triplet", "sts", "retrieval", "binary")


def _evaluator_names() -> tuple[str, ...]:
    """The registry's names once it is imported (so evaluators registered from Python show up), else the
    shipped ones (a fresh ``embtune`` process has exactly those)."""
    registry = sys.modules.get(f"{__package__}.evaluation.registry")
    return tuple(registry.EVALUATORS) if registry is not None else EVALUATOR_NAMES


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="embtune", description="Fine-tune, evaluate and serve embedding models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("encode", help="embed texts from a file into a .npy array, or a corpus into Parquet shards")
    _add_model_options(p)
    p.add_argument("--input", required=True, help=".txt (one text per line), .csv, .tsv, .jsonl or .parquet; "
                   "with --text-column also a folder or glob of shards")
    p.add_argument("--column", help="text column for .csv/.tsv/.jsonl/.parquet input")
    p.add_argument("--output", required=True, help="where to write the (N, D) array (.npy), or the output folder "
                   "of Parquet (id, embedding) shards with --text-column")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    p.add_argument("--text-column", help="corpus mode: the text column of the input shards (writes Parquet parts)")
    p.add_argument("--id-column", default="id", help="corpus mode: the row id column (default id)")
    p.add_argument("--shard", help="corpus mode: do only shard i of n (0-based), e.g. 0/4")
    p.add_argument("--chunk-rows", type=int, default=50_000, help="corpus mode: rows per output part (unit of resume)")
    p.add_argument("--batch-size", type=int, help="most texts per forward (default: batches of up to 4,096 "
                   "padded tokens on CPU)")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32", "int8"],
                   help="compute precision; int8 runs the Linear layers as int8 matmuls (output stays float32)")
    p.add_argument("--normalize", action="store_true")
    p.add_argument("--prompt", help="text prepended to every input")
    p.add_argument("--prompt-name", help="name of one of the model's prompts")
    p.add_argument("--quantize", choices=["int8", "uint8", "binary", "ubinary"])
    p.add_argument("--truncate-dim", type=int)

    p = sub.add_parser("similarity", help="similarity of two texts")
    _add_model_options(p)
    p.add_argument("text_a")
    p.add_argument("text_b")

    p = sub.add_parser("info", help="architecture, dimensions, max length, similarity function, prompts")
    _add_model_options(p)
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("train", help="fine-tune a model from a YAML recipe (see recipes/)")
    p.add_argument("recipe", help="the recipe file, e.g. recipes/pairs_mnrl.yaml")
    p.add_argument("overrides", nargs="*", metavar="key.path=value", help="override recipe values, e.g. args.max_steps=10")
    p.add_argument("--json", action="store_true", help="print all run metrics as JSON")
    p.add_argument("--allow-custom-code", action="store_true",
                   help="accept package.module:Class loss names (your own code); a recipe cannot turn this on")
    p.add_argument("--resume-force", action="store_true",
                   help="resume even though the data, loss or learning-rate schedule changed (warns)")

    add_data_commands(sub)  # mine, check-data (cli_data.py)

    p = sub.add_parser("eval", help="evaluate a model on an STS, triplet, binary-pair or retrieval file")
    _add_model_options(p)
    p.add_argument("--data", required=True, help=".csv/.tsv/.jsonl/.parquet file, or a BEIR folder for retrieval")
    p.add_argument("--evaluator", required=True, help=f"one of {', '.join(_evaluator_names())}")
    p.add_argument("--columns", nargs="+", default=[], metavar="input=column",
                   help="map evaluator inputs to file columns, e.g. scores=similarity (defaults: see README)")
    p.add_argument("--name", default="", help="prefix of every metric name")
    p.add_argument("--split", help="qrels split of a BEIR folder (default test)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32", "int8"])
    p.add_argument("--max-rows", type=int, help="use only the first N rows (retrieval folder: the first N queries)")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("export", help="export to ONNX or OpenVINO IR: their runtime alone (no torch) reproduces encode")
    _add_model_options(p)
    p.add_argument("--format", required=True, choices=["onnx", "openvino"],
                   help="onnx: ONNX graphs; openvino: the same graphs plus their OpenVINO IR")
    p.add_argument("--quantize", choices=["int8"], help="also write int8 (dynamic quantization) ONNX graphs")
    p.add_argument("--output", required=True, help="output folder (new, empty, or a previous export)")

    p = sub.add_parser("serve", help="serve embeddings over HTTP (OpenAI /v1/embeddings, TEI /embed)")
    _add_model_options(p)
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--api-key", help="require 'Authorization: Bearer KEY' (default: env EMBTUNE_API_KEY, else none)")
    p.add_argument("--served-model-name", help="model id reported by /v1/models (default: the MODEL argument)")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32", "int8"],
                   help="compute precision (int8: int8 Linear layers, quantized on the fly; CPU only)")
    p.add_argument("--max-batch-tokens", type=int, default=16384, help="token budget of one merged encode call")
    p.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="how long a request may wait for others to batch with while an encode call runs "
                   "(an idle encoder starts at once)")
    p.add_argument("--max-queue", type=int, default=256, help="waiting requests before 503")
    p.add_argument("--max-inputs", type=int, default=2048, help="texts per request")
    p.add_argument("--no-batching", action="store_true", help="one encode call per request (load-test baseline)")
    p.add_argument("--in-process", action="store_true",
                   help="encode in the server process (default: a child process, so HTTP and encoding run side by side)")

    p = sub.add_parser("push", help="upload a model folder to the Hugging Face Hub (model files only)")
    p.add_argument("model_dir", help="a saved model folder, e.g. a training output_dir")
    p.add_argument("repo_id", help="user/name or org/name")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.add_argument("--revision", help="branch to push to (created if missing)")
    p.add_argument("--commit-message", default="Upload model trained with embtune")
    p.add_argument("--dry-run", action="store_true", help="list the files that would be uploaded; upload nothing")

    return parser


def _key_values(items: list[str]) -> dict[str, str]:
    """``["scores=sim", ...]`` -> ``{"scores": "sim", ...}``; a malformed item is a one-line error."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not (sep and key and value):
            raise EmbtuneError(f"--columns {item!r}: write input=column, e.g. scores=similarity")
        out[key] = value
    return out


def _load(args):
    from .models.embedding_model import EmbeddingModel

    return EmbeddingModel.load(args.model, trust_remote_code=args.trust_remote_code, allow_pickle=args.allow_pickle)


def read_texts(path: str, column: str | None, max_chars: int = 1 << 30) -> list[str]:
    """Texts from a .txt file (one per line, blank lines kept out) or one column of a table file."""
    from .data.text_input import count_texts, text_chunks

    count_texts(path, column)
    return [text for chunk in text_chunks(path, column, max_chars) for text in chunk]


def cmd_encode(args) -> int:
    if args.text_column:
        return cmd_encode_corpus(args)
    import io

    import numpy as np

    from .data.text_input import count_texts, text_chunks
    from .models.encode import quantize_embeddings
    from .utils.atomic import atomic_write_bytes
    from .utils.paths import output_file
    from .utils.text_cap import char_limit

    total = count_texts(args.input, args.column)  # the whole input is checked before the model loads
    if not args.output.endswith(".npy"):
        raise EmbtuneError(f"{args.output}: --output must end in .npy")
    output = output_file(args.output, overwrite=args.overwrite)
    model = _load(args)
    emb: np.ndarray | None = None
    done = 0
    for chunk in text_chunks(args.input, args.column, char_limit(model.max_seq_length)):
        part = model.encode(
            chunk,
            batch_size=args.batch_size,
            normalize=args.normalize,
            prompt=args.prompt,
            prompt_name=args.prompt_name,
            precision=args.precision,
            truncate_dim=args.truncate_dim,
            show_progress_bar=sys.stderr.isatty() and total > 2000,
        )
        if emb is None:
            emb = np.empty((total, part.shape[1]), dtype=part.dtype)
        emb[done : done + len(part)] = part
        done += len(part)
    assert emb is not None and done == total
    if args.quantize:  # calibrated on all embeddings at once, as encode(quantize=...) does
        emb = quantize_embeddings(emb, args.quantize)
    buf = io.BytesIO()
    np.save(buf, emb)
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(output, buf.getvalue())
    print(f"wrote {emb.shape[0]} x {emb.shape[1]} {emb.dtype} embeddings to {output}")
    return 0


def cmd_encode_corpus(args) -> int:
    """`embtune encode MODEL --input DIR --text-column text --output OUT/`: resumable Parquet shards."""
    from .corpus.encode_shards import encode_corpus, parse_shard

    if args.column:
        raise EmbtuneError("--column and --text-column: pass only --text-column in corpus mode")
    shard = parse_shard(args.shard)
    model = _load(args)
    opts = {k: v for k, v in {"normalize": args.normalize or None, "prompt": args.prompt,
                              "prompt_name": args.prompt_name, "precision": args.precision,
                              "quantize": args.quantize, "truncate_dim": args.truncate_dim}.items() if v is not None}
    report = encode_corpus(model, args.input, args.output, text_column=args.text_column, id_column=args.id_column,
                           chunk_rows=args.chunk_rows, shard=shard, batch_size=args.batch_size, **opts)
    state = "complete" if report.complete else "incomplete (other shards still to run)"
    print(f"wrote {len(report.parts_written)} parts ({report.rows_written} rows), skipped {len(report.parts_skipped)} "
          f"finished parts, of {report.parts_total}; {report.output} is {state}")
    return 0


def cmd_similarity(args) -> int:
    for name, text in (("text_a", args.text_a), ("text_b", args.text_b)):
        if not text.strip():
            raise EmbtuneError(f"{name} is {'empty' if not text else 'whitespace only'}; give two non-empty texts")
        if "\x00" in text:
            raise EmbtuneError(f"{name} contains a NUL byte (\\x00); remove it")
    model = _load(args)
    emb = model.encode([args.text_a, args.text_b], precision="fp32")
    score = float(model.similarity_pairwise(emb[:1], emb[1:])[0])
    print(f"{score:.4f}\t({model.similarity_fn_name})")
    return 0


def cmd_info(args) -> int:
    model = _load(args)
    info = model.describe()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:>20}: {value}")
    return 0


def cmd_train(args) -> int:
    from .training.loop import train
    from .training.recipe import load_recipe

    result = train(load_recipe(args.recipe, args.overrides), allow_custom_code=args.allow_custom_code,
                   resume_force=args.resume_force)
    if result.metrics:  # rank 0 only
        if args.json:
            print(json.dumps(result.metrics, indent=2, default=str))
        else:
            print(comparison_table(result.metrics.get("base") or {}, result.metrics.get("final") or {}))
            print(f"model + card: {result.model_path}\nlog: {result.log_path}")
    return 0


def cmd_eval(args) -> int:
    from .evaluation import evaluate

    metrics = evaluate(
        args.model,
        args.data,
        args.evaluator,
        columns=_key_values(args.columns),
        name=args.name,
        batch_size=args.batch_size,
        precision=args.precision,
        max_rows=args.max_rows,
        split=args.split,
        trust_remote_code=args.trust_remote_code,
        allow_pickle=args.allow_pickle,
    )
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        width = max(len(k) for k in metrics)
        print("\n".join(f"{k:<{width}}  {v:.4f}" for k, v in metrics.items()))
    return 0


def cmd_export(args) -> int:
    from .export import export_onnx, export_openvino

    if args.format == "openvino":
        if args.quantize:
            raise EmbtuneError(f"--quantize {args.quantize} writes ONNX graphs; use --format onnx --quantize "
                               f"{args.quantize}, or --format openvino without --quantize")
        out = export_openvino(_load(args), args.output)
    else:
        out = export_onnx(_load(args), args.output, quantize=args.quantize)
    for path in sorted(p for p in out.rglob("*") if p.suffix in (".onnx", ".xml", ".bin")):
        print(f"{path.stat().st_size / 1e6:8.1f} MB  {path}")
    runtime = "OpenVINO and onnxruntime" if args.format == "openvino" else "onnxruntime"
    print(f"{runtime} files (graphs, tokenizer.json, config.json): {out / 'embedding'}")
    return 0


def cmd_serve(args) -> int:
    from .serve import ServeConfig, serve

    for name in ("port", "max_batch_tokens", "max_queue", "max_inputs"):
        value = getattr(args, name)
        if value < (0 if name == "port" else 1) or (name == "port" and value > 65535):
            raise EmbtuneError(f"--{name.replace('_', '-')} {value} is out of range; pass a positive number")
    config = ServeConfig(
        host=args.host,
        port=args.port,
        api_key=args.api_key or os.environ.get("EMBTUNE_API_KEY") or None,
        model_name=args.served_model_name or args.model,
        precision=args.precision,
        batching=not args.no_batching,
        max_batch_tokens=args.max_batch_tokens,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        max_inputs=args.max_inputs,
        encode_process=not args.in_process,
    )
    load = {"name_or_path": args.model, "trust_remote_code": args.trust_remote_code, "allow_pickle": args.allow_pickle}
    serve(_load(args), config, load)
    return 0


def cmd_push(args) -> int:
    from .hub_push import push_to_hub

    result = push_to_hub(args.model_dir, args.repo_id, private=args.private, revision=args.revision,
                         commit_message=args.commit_message, dry_run=args.dry_run)
    for name in result.files:
        print(name)
    size = f"{len(result.files)} files, {result.total_bytes / 1e6:.1f} MB"
    print(f"dry run: would upload {size} to {result.repo_id}" if args.dry_run else f"pushed {size}: {result.url}")
    return 0


def comparison_table(base: dict, final: dict) -> str:
    """Base vs fine-tuned metrics as an aligned text table (metrics present in both)."""
    keys = [k for k in final if k in base and isinstance(final[k], int | float) and isinstance(base[k], int | float)]
    if not keys:
        return "no evaluation metrics (add eval.evaluators or an eval_path to the recipe)"
    width = max(len(k) for k in keys)
    lines = [f"{'metric':<{width}}  {'base':>9}  {'fine-tuned':>10}  {'change':>8}"]
    for k in keys:
        lines.append(f"{k:<{width}}  {base[k]:>9.4f}  {final[k]:>10.4f}  {final[k] - base[k]:>+8.4f}")
    return "\n".join(lines)


COMMANDS = {"encode": cmd_encode, "similarity": cmd_similarity, "info": cmd_info, "train": cmd_train, "eval": cmd_eval,
            "export": cmd_export, "serve": cmd_serve, "push": cmd_push, **DATA_COMMANDS}


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings (e.g. data warnings: duplicates, truncated texts) as one ``embtune: warning:`` line each."""
    print(f"embtune: warning: {message}", file=sys.stderr)


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace | int:
    """Parsed arguments, or the exit code after a short usage and one error line (help: 0)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        print(USAGE, file=sys.stderr)
        print("embtune: error: no command given; e.g. embtune train recipes/pairs_mnrl.yaml", file=sys.stderr)
        return 2
    if not argv[0].startswith("-") and argv[0] not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(argv[0], list(COMMANDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        print(USAGE, file=sys.stderr)
        print(f"embtune: error: unknown command {argv[0]!r}{hint}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        return parser.parse_args(argv)
    except _UsageError as exc:
        prog = exc.parser.prog
        print(f"usage: {prog} ...   ({prog} --help lists the arguments)", file=sys.stderr)
        print(f"embtune: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0


def main(argv: list[str] | None = None) -> int:
    from .utils.threads import configure_thread_env

    configure_thread_env()  # before torch loads: a short OpenMP spin (utils/threads.py)
    parser = build_parser()
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args
    logging.basicConfig(level=logging.WARNING, format="embtune: warning: %(message)s", stream=sys.stderr)
    warnings.showwarning = _one_line_warning
    debug = os.environ.get("EMBTUNE_DEBUG") == "1"
    try:
        return COMMANDS[args.command](args)
    except EmbtuneError as exc:
        if debug:
            raise
        print(f"embtune: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:  # unreadable, unwritable, full disk, bad path: the user's environment, not a bug
        if debug:
            raise
        from .utils.paths import os_error

        print(f"embtune: error: {_one_line(str(os_error(exc)))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("embtune: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug in embtune or a dependency: still one line, with a way to see more
        if debug:
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        print(f"embtune: internal error: {type(exc).__name__}: {first} (rerun with EMBTUNE_DEBUG=1 for details)", file=sys.stderr)
        return 1


def _one_line(message: str) -> str:
    """Messages are one line by contract; a newline from a dependency's text is folded."""
    return " ".join(message.split("\n"))
