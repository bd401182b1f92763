"""Turn config groups into objects: the model, the prepared datasets with their losses, samplers, evaluators.

Each function here is one setup step of ``loop.train``; none of them runs during the step loop.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.collate import collate
from ..data.columns import ColumnRoles
from ..data.prepare import DatasetSpec, PreparedDataset, prepare_dataset
from ..data.samplers import (
    GroupByLabelBatchSampler,
    MultiDatasetBatchSampler,
    NoDuplicatesBatchSampler,
    ShuffledBatchSampler,
)
from ..data.sources import dataset_name
from ..errors import EmbtuneError
from ..losses import build_loss
from ..losses.base import Loss
from ..models.embedding_model import EmbeddingModel
from ..roles import RoleRequirements
from ..teachers import attach_teacher_targets
from ..utils.memory import trim_between_layers
from .config import DatasetCfg, EvaluatorCfg, ModelCfg, TrainArgs
from .freeze import apply_freeze


def build_model(cfg: ModelCfg, checkpoint: Path | None = None, amp_dtype: torch.dtype | None = None,
                cache_dir: Path | None = None) -> EmbeddingModel:
    """The model to train: a checkpoint (on resume), else the base model of ``cfg``.

    A folder without ``modules.json`` is a plain Hugging Face encoder: it gets ``cfg.pooling`` and
    ``cfg.normalize``. Everything else (sentence-transformers folders, ``bundled:...``, Hub ids) loads as is.
    ``amp_dtype`` is the run's autocast dtype (None: fp32); a LoRA base with ``base_dtype: auto`` follows it,
    loading from a bf16 copy of its weights made once in ``cache_dir`` (when given).
    """
    if cfg.adapter is not None:  # a LoRA run: the base model (HF modules, peft needs them), plus the adapter
        from ..models.adapters import base_weights_dtype, with_adapter

        base = dataclasses.replace(cfg, adapter=None, backend="hf" if cfg.backend == "auto" else cfg.backend)
        dtype = base_weights_dtype(cfg.adapter.base_dtype, amp_dtype)
        model = _load_model(base, None, dtype, cache_dir)
        apply_freeze(model.transformer, base.freeze)
        model = with_adapter(model, cfg.name, cfg.adapter, checkpoint)
        trim_between_layers(model.transformer.auto_model)  # a LoRA run is about memory: see utils/memory.py
        return model
    model = _load_model(cfg, checkpoint)
    apply_freeze(model.transformer, cfg.freeze)  # frozen parameters: requires_grad=False, so not in the optimizer
    return model


def _load_model(cfg: ModelCfg, checkpoint: Path | None, dtype: torch.dtype | None = None,
                cache_dir: Path | None = None) -> EmbeddingModel:
    opts = {"trust_remote_code": cfg.trust_remote_code, "allow_pickle": cfg.allow_pickle, "backend": cfg.backend}
    if dtype is not None:
        opts |= {"dtype": dtype, "weights_cache": cache_dir}
    if checkpoint is not None:
        try:
            model = EmbeddingModel.load(checkpoint, **opts)
        except EmbtuneError as exc:  # the fix is an earlier checkpoint, not "restore the original model"
            from .checkpoint import damaged

            raise damaged(checkpoint, f"the model in it does not load ({exc})") from None
        model.source = cfg.name
        return model
    folder = Path(cfg.name)
    if folder.is_dir() and not (folder / "modules.json").is_file():
        return EmbeddingModel.from_transformer(
            folder, pooling=cfg.pooling, normalize=cfg.normalize, max_seq_length=cfg.max_seq_length, **opts
        )
    model = EmbeddingModel.load(cfg.name, **opts)
    if cfg.max_seq_length is not None:
        model.max_seq_length = cfg.max_seq_length
    return model


@dataclass
class TrainData:
    """One training dataset, ready to batch: its config, loss, tokenized rows and optional validation rows."""

    cfg: DatasetCfg
    loss: Loss
    train: PreparedDataset
    eval: PreparedDataset | None

    @property
    def name(self) -> str:
        return self.train.name


def prepare_data(
    cfgs: list[DatasetCfg], model: EmbeddingModel, cache_dir: Path, global_batch_size: int
) -> list[TrainData]:
    """Build each dataset's loss, check its roles, and tokenize its train (and eval) file once (cached)."""
    out = []
    for cfg in cfgs:
        loss = build_loss(cfg.loss.name, **dict(cfg.loss.params))
        name = dataset_name(cfg.path, cfg.name)
        if cfg.negatives is not None and cfg.negatives.mine is not None:
            cfg = with_mined_negatives(cfg, name, loss, model, cache_dir)
        roles = ColumnRoles(cfg.columns.anchor, cfg.columns.positive, list(cfg.columns.negatives), cfg.columns.label)

        needs = RoleRequirements.of(loss)
        train = _prepare(cfg, roles, needs, cfg.path, name, model, cache_dir, global_batch_size)
        evaluation = _prepare(cfg, roles, needs, cfg.eval_path, f"{name}-eval", model, cache_dir) if cfg.eval_path else None
        for prepared in (train, evaluation):  # distillation targets / guide embeddings, computed once, cached
            if prepared is not None:
                attach_teacher_targets(prepared, loss, cache_dir, cfg.template, cfg.format)
        out.append(TrainData(cfg, loss, train, evaluation))
    return out


def with_mined_negatives(cfg: DatasetCfg, name: str, loss: Loss, model: EmbeddingModel, cache_dir: Path) -> DatasetCfg:
    """``cfg`` pointing at its mined file (mined now, or reused from the cache) with the negative columns."""
    from ..mining.cached import mined_columns, mined_file

    opts = cfg.negatives.mine
    source = cfg.path
    miner = opts.model or model
    path, stats = mined_file(source, cfg.columns.anchor, cfg.columns.positive, opts, miner, cache_dir,
                             cfg.max_rows, model_name=opts.model or getattr(model, "source", None))
    if stats is not None:
        print(f"embtune: mined {stats['rows']} rows with hard negatives for {name!r} in {stats['seconds']:.1f}s "
              f"(mean score positive {stats['mean_positive_score']:.3f}, negative {stats['mean_negative_score'] or 0:.3f})")
    label = "scores" if opts.scores and loss.label is not None and cfg.columns.label is None else cfg.columns.label
    columns = dataclasses.replace(cfg.columns, negatives=mined_columns(opts), label=label)
    return dataclasses.replace(cfg, path=str(path), name=name, format="jsonl", max_rows=None, columns=columns,
                               template=None, negatives=None)


def _prepare(
    cfg: DatasetCfg,
    roles: ColumnRoles,
    needs: RoleRequirements,
    path: str,
    name: str,
    model: EmbeddingModel,
    cache_dir: Path,
    batch_size: int | None = None,
) -> PreparedDataset:
    spec = DatasetSpec(
        path=path,
        columns=roles,
        format=cfg.format,
        template=cfg.template,
        prompt=cfg.prompt,
        name=name,
        max_rows=cfg.max_rows,
    )
    return prepare_dataset(
        spec, model.tokenizer, model.max_seq_length, needs, cache_dir=cache_dir, batch_size=batch_size
    )


def build_sampler(data: list[TrainData], args: TrainArgs, rank: int, world_size: int) -> MultiDatasetBatchSampler:
    """One batch sampler per dataset (``args.batch_sampler``), interleaved by ``multi_dataset_batch_sampler``.

    A single dataset is wrapped too, so the loop always receives ``(dataset_index, rows)``.
    """
    seed = args.effective_data_seed
    samplers = []
    for d in data:
        common = {
            "batch_size": args.per_device_train_batch_size,
            "drop_last": args.dataloader_drop_last,
            "seed": seed,
            "rank": rank,
            "world_size": world_size,
        }
        lengths = d.train.lengths.max(axis=1) if args.group_by_length else None
        if args.batch_sampler == "no_duplicates":
            samplers.append(NoDuplicatesBatchSampler(
                d.train.row_keys, lengths=lengths, shared_rows=d.train.shared_rows, **common
            ))
        elif args.batch_sampler == "group_by_label":
            if d.train.labels is None:
                raise EmbtuneError(
                    f"dataset {d.name!r}: batch_sampler group_by_label needs a label column (columns.label)"
                )
            samplers.append(GroupByLabelBatchSampler(d.train.labels, **common))
        else:
            samplers.append(ShuffledBatchSampler(d.train.num_rows, lengths=lengths, **common))
    return MultiDatasetBatchSampler(samplers, strategy=args.multi_dataset_batch_sampler, seed=seed)


def eval_batches(prepared: PreparedDataset, batch_size: int):
    """Sequential batches over a validation set (no shuffling)."""
    for start in range(0, prepared.num_rows, batch_size):
        yield collate(prepared, list(range(start, min(start + batch_size, prepared.num_rows))))


def build_evaluators(cfgs: list[EvaluatorCfg], cache_dir: Path, batch_size: int) -> list[Any]:
    """Evaluators from config: each reads its file once (``evaluation.evaluator_from_file``)."""
    from ..evaluation import evaluator_from_file
    from ..evaluation.base import EVAL_BATCH_SIZE

    # per_device_eval_batch_size (HF default 8) sizes validation-loss batches, where it changes the loss; the
    # evaluators' metrics do not depend on their encode batch, so they use at least EVAL_BATCH_SIZE (speed)
    batch_size = max(batch_size, EVAL_BATCH_SIZE)
    return [
        evaluator_from_file(
            cfg.kind,
            cfg.path,
            columns=cfg.columns,
            name=cfg.name,
            params={"batch_size": batch_size, **cfg.params},
            max_rows=cfg.max_rows,
            cache_dir=cache_dir,
        )
        for cfg in cfgs
    ]
