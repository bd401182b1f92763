"""Typed training configuration: the one place where every default lives.

A recipe (YAML) maps onto ``TrainConfig``: ``model`` (ModelCfg), ``datasets`` (list of DatasetCfg), ``eval``
(EvalCfg) and ``args`` (TrainArgs). ``TrainArgs`` uses the hyperparameter names and defaults of the
Hugging Face / sentence-transformers trainer, as the "All Hyperparameters" section of their model cards
lists them, so a reader of those cards recognises every key. Each group validates itself in
``__post_init__``; impossible combinations fail when the recipe is loaded, not hours into a run.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.sources import dataset_name
from ..errors import EmbtuneError
from ..evaluation.registry import EVALUATORS
from ..mining.options import MineOptions
from ..report.options import DataChecks

SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
STRATEGIES = ("no", "steps", "epoch")
BATCH_SAMPLERS = ("batch_sampler", "no_duplicates", "group_by_label")
MULTI_DATASET_SAMPLERS = ("round_robin", "proportional")
EMBEDDING_UPDATES = ("rowwise", "dense")


def _choice(group: str, key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise EmbtuneError(f"{group}.{key}: {value!r} is not one of {', '.join(choices)}")


def _check_finite(key: str, value: Any) -> None:
    """Every number inside ``value`` (nested dicts / lists too) must be finite: YAML's ``.inf`` / ``.nan`` and
    overflowing literals such as ``1e999`` would otherwise train a NaN model."""
    if isinstance(value, float) and not math.isfinite(value):
        raise EmbtuneError(f"{key}: {value} is not a finite number; give a real value (e.g. 1e-5)")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(f"{key}.{k}", v)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_finite(f"{key}[{i}]", v)


def _check_fields_finite(group: str, obj: Any) -> None:
    for f in dataclasses.fields(obj):
        _check_finite(f"{group}.{f.name}", getattr(obj, f.name))


# Ceilings past which a value is a typo, not a choice (1e30, or 5 instead of 5e-5); the message says so.
LIMITS = {"learning_rate": 1.0, "weight_decay": 10.0, "adam_epsilon": 1.0, "max_grad_norm": 1e6}


@dataclass
class FreezeCfg:
    """Parts of the encoder that do not train (``model.freeze``; ``freeze: [embeddings]`` is short for
    ``freeze: {embeddings: true}``).

    Args:
        embeddings: freeze the embedding block (word, position and token-type tables and their LayerNorm).
            Saves the backward and optimizer work of the word-embedding matrix; see the README for quality.
        layers: freeze the first N encoder layers (0: none). Backward still runs through them unless
            ``embeddings`` is frozen too.
    """

    embeddings: bool = False
    layers: int = 0

    def __post_init__(self) -> None:
        if self.layers < 0:
            raise EmbtuneError(f"model.freeze.layers must be >= 0, got {self.layers}")
ADAPTER_SAVES = ("merged", "adapter")


@dataclass
class AdapterCfg:
    """A LoRA adapter trained instead of the full encoder (``model.adapter``; needs ``embtune[lora]``).

    Args:
        kind: ``lora`` (the only kind so far).
        r / alpha / dropout: LoRA rank, scaling (``alpha / r``) and dropout on the adapter's input.
        target_modules: Linear layer names to adapt; empty: per-architecture defaults
            (query/key/value/dense for BERT and XLM-R, see ``embtune.models.adapters``).
        save: ``merged`` writes the final model with the adapter folded in (loads anywhere, no peft);
            ``adapter`` writes the adapter alone beside the base model's sentence-transformers config.
        base_dtype: how the frozen base weights are kept while training. ``auto``: bf16 when the run trains
            under bf16 autocast (``args.bf16``), else fp32; ``bf16`` halves the base model's memory; ``fp32``
            keeps it exact. With a bf16 base, ``save: merged`` folds the adapter into the base's original
            float32 weights (re-read from its folder), so the saved model is not rounded to bf16.
    """

    kind: str = "lora"
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=list)
    save: str = "merged"
    base_dtype: str = "auto"

    def __post_init__(self) -> None:
        _choice("model.adapter", "kind", self.kind, ("lora",))
        _choice("model.adapter", "base_dtype", self.base_dtype, ("auto", "fp32", "bf16"))
        _choice("model.adapter", "save", self.save, ADAPTER_SAVES)
        if self.r < 1 or self.alpha <= 0:
            raise EmbtuneError(f"model.adapter.r must be >= 1 and alpha > 0, got r={self.r}, alpha={self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise EmbtuneError(f"model.adapter.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class ModelCfg:
    """The base model, and how to compose one from a plain Hugging Face encoder folder.

    Args:
        name: a sentence-transformers folder, a plain HF folder, a Hub id, or ``bundled:all-MiniLM-L6-v2``.
        pooling / normalize: used only when ``name`` is a plain HF encoder (no ``modules.json``).
        max_seq_length: truncate texts to this many tokens; None keeps the model's own setting.
        trust_remote_code / allow_pickle: security opt-ins, off by default.
        freeze: parts of the encoder kept fixed (FreezeCfg).
        backend: "auto" runs embtune's own encoder for BERT / XLM-RoBERTa / MPNet / DistilBERT and the
            Hugging Face modules for other architectures; "fast" requires the former; "hf" always uses the latter.
        adapter: train a LoRA adapter instead of all weights (see ``AdapterCfg``); None: full fine-tuning.
    """

    name: str = "bundled:all-MiniLM-L6-v2"
    pooling: str = "mean"
    normalize: bool = False
    max_seq_length: int | None = None
    trust_remote_code: bool = False
    allow_pickle: bool = False
    freeze: FreezeCfg = field(default_factory=FreezeCfg)
    backend: str = "auto"
    adapter: AdapterCfg | None = None

    def __post_init__(self) -> None:
        if self.max_seq_length is not None and self.max_seq_length < 2:
            raise EmbtuneError(f"model.max_seq_length must be at least 2, got {self.max_seq_length}")
        if self.backend not in ("auto", "fast", "hf"):
            raise EmbtuneError(f"model.backend must be auto, fast or hf, got {self.backend!r}")


@dataclass
class LossCfg:
    """A loss by registry name (``mnrl``, ``cosent``, ... or ``package.module:Class``) plus its parameters."""

    name: str = "mnrl"
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_finite("datasets[].loss.params", self.params)


@dataclass
class ColumnsCfg:
    """Which column plays which role (never inferred from column order or names)."""

    anchor: str = "anchor"
    positive: str | None = None
    negatives: list[str] = field(default_factory=list)
    label: str | None = None


@dataclass
class NegativesCfg:
    """Where a dataset's hard negatives come from: ``mine`` them with a model before training (once, cached).

    ``mine.model`` empty means the base model of the run; see ``embtune.mining.MineOptions`` for the options.
    """

    mine: MineOptions | None = None


@dataclass
class DatasetCfg:
    """One training dataset and the loss trained on it.

    Args:
        path: csv / tsv / jsonl / parquet file, a folder or glob of such shards (``data/train/*.parquet``), or a
            saved ``datasets`` folder (``folder:split``); a relative path is
            relative to the recipe file when it comes from one (``data/pairs_train.jsonl``).
        name: name in logs and model cards (default: the file name).
        format: file format when the extension does not say it.
        columns: the column roles.
        template / prompt: text rendering per role (see ``embtune.data.render``).
        loss: the loss for this dataset's batches.
        max_rows: use only the first rows.
        eval_path: a held-out file with the same columns; its loss is logged as validation loss.
        negatives: ``{mine: {num: 3, ...}}`` mines hard negatives for the (anchor, positive) pairs.
    """

    path: str = ""
    name: str | None = None
    format: str | None = None
    columns: ColumnsCfg = field(default_factory=ColumnsCfg)
    template: str | dict[str, str] | None = None
    prompt: str | dict[str, str] | None = None
    loss: LossCfg = field(default_factory=LossCfg)
    max_rows: int | None = None
    eval_path: str | None = None
    negatives: NegativesCfg | None = None

    def __post_init__(self) -> None:
        if self.negatives is not None and self.negatives.mine is not None:
            if self.columns.negatives:
                raise EmbtuneError(
                    "datasets[].negatives.mine: the negatives are mined, so columns.negatives must be empty; "
                    "remove one of them"
                )
            if self.columns.positive is None:
                raise EmbtuneError("datasets[].negatives.mine needs (anchor, positive) pairs; set columns.positive")
        if not self.path:
            raise EmbtuneError("datasets[].path: every dataset needs a path (a data file or a saved dataset folder)")
        if self.max_rows is not None and self.max_rows < 1:
            raise EmbtuneError(f"datasets[].max_rows must be at least 1, got {self.max_rows}")


@dataclass
class EvaluatorCfg:
    """One evaluator: ``kind`` (a name in ``embtune.evaluation.EVALUATORS``), its data file and column mapping.

    ``columns`` maps the evaluator's inputs to file columns: sts and binary take ``sentences1``,
    ``sentences2`` and ``scores`` / ``labels``; triplet takes ``anchors``, ``positives``, ``negatives``;
    retrieval takes ``query`` and ``positive`` (one relevant document per row). ``params`` go to the
    evaluator's constructor (e.g. ``main_similarity``).
    """

    kind: str = "sts"
    path: str = ""
    name: str = "dev"
    columns: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    max_rows: int | None = None

    def __post_init__(self) -> None:
        _choice("eval.evaluators[]", "kind", self.kind, tuple(EVALUATORS))  # the registry is the one list
        _check_finite("eval.evaluators[].params", self.params)
        if not self.path:
            raise EmbtuneError("eval.evaluators[].path: every evaluator needs a data file")


@dataclass
class EvalCfg:
    """Evaluators run on the base model, during training (eval_strategy) and on the final model."""

    evaluators: list[EvaluatorCfg] = field(default_factory=list)


@dataclass
class TrainArgs:
    """Hyperparameters, named and defaulted as the Hugging Face / sentence-transformers trainer does."""

    output_dir: str = "output/run"
    overwrite_output_dir: bool = False
    resume_from_checkpoint: str | None = None  # "last" or a checkpoint folder
    cache_dir: str | None = None  # tokenized data and generated files; None: $EMBTUNE_CACHE or ~/.cache/embtune
    # optimisation
    learning_rate: float = 5e-05
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-08
    # rowwise: large embedding matrices get sparse gradients and AdamW updates of the rows a batch uses only
    # (training/rowwise.py says exactly what differs from dense AdamW); dense: plain AdamW on every row
    embedding_updates: str = "rowwise"
    max_grad_norm: float = 1.0
    lr_scheduler_type: str = "linear"
    warmup_ratio: float = 0.0
    warmup_steps: int = 0
    # length of training and batching
    num_train_epochs: float = 3.0
    max_steps: int = -1
    per_device_train_batch_size: int = 8
    per_device_eval_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    dataloader_drop_last: bool = False
    batch_sampler: str = "batch_sampler"
    group_by_length: bool = True  # batch rows of similar length inside shuffled windows: less padding, ~1.6x faster
    multi_dataset_batch_sampler: str = "proportional"
    # precision and memory
    bf16: bool | None = None  # None: bf16 autocast where the hardware is fast at it, else fp32
    fp16: bool = False
    gradient_checkpointing: bool = False
    # reproducibility
    seed: int = 42
    data_seed: int | None = None  # None: use seed
    # evaluation, logging, checkpoints
    eval_strategy: str = "no"
    eval_steps: int | None = None
    logging_steps: int = 500
    save_strategy: str = "steps"
    save_steps: int = 500
    save_total_limit: int | None = None
    load_best_model_at_end: bool = False
    metric_for_best_model: str | None = None  # None: "loss" (validation loss) when needed
    greater_is_better: bool | None = None  # None: False for metrics ending in "loss", else True
    disable_tqdm: bool = False
    # experiment trackers and the Hugging Face Hub
    report_to: list[str] = field(default_factory=list)  # tensorboard, mlflow
    push_to_hub: bool = False  # upload the final model (files only, no checkpoints) to hub_model_id
    hub_model_id: str | None = None  # user/name or org/name
    hub_private_repo: bool = False
    hub_revision: str | None = None  # branch to push to

    def __post_init__(self) -> None:  # noqa: C901 - one flat list of independent checks
        _check_fields_finite("args", self)
        for key, ceiling in LIMITS.items():
            if getattr(self, key) > ceiling:
                raise EmbtuneError(
                    f"args.{key}: {getattr(self, key)} is far above any working value (at most {ceiling}); "
                    "check for a typo (e.g. 5e-5, not 5)"
                )
        _choice("args", "lr_scheduler_type", self.lr_scheduler_type, SCHEDULERS)
        _choice("args", "eval_strategy", self.eval_strategy, STRATEGIES)
        _choice("args", "save_strategy", self.save_strategy, STRATEGIES)
        _choice("args", "batch_sampler", self.batch_sampler, BATCH_SAMPLERS)
        _choice("args", "multi_dataset_batch_sampler", self.multi_dataset_batch_sampler, MULTI_DATASET_SAMPLERS)
        _choice("args", "embedding_updates", self.embedding_updates, EMBEDDING_UPDATES)
        if self.learning_rate < 0:
            raise EmbtuneError(f"args.learning_rate must be >= 0, got {self.learning_rate}")
        if not 0.0 <= self.warmup_ratio <= 1.0:
            raise EmbtuneError(f"args.warmup_ratio must be in [0, 1], got {self.warmup_ratio}")
        if self.warmup_steps < 0:
            raise EmbtuneError(f"args.warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.warmup_ratio > 0 and self.warmup_steps > 0:
            raise EmbtuneError("args.warmup_ratio and args.warmup_steps are mutually exclusive; set one of them")
        if self.bf16 and self.fp16:
            raise EmbtuneError("args.bf16 and args.fp16 are both true; choose one precision")
        for key in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                    "logging_steps", "save_steps"):
            if getattr(self, key) < 1:
                raise EmbtuneError(f"args.{key} must be >= 1, got {getattr(self, key)}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise EmbtuneError(f"args.max_steps must be -1 (use num_train_epochs) or >= 1, got {self.max_steps}")
        if self.max_steps == -1 and self.num_train_epochs <= 0:
            raise EmbtuneError(f"args.num_train_epochs must be > 0, got {self.num_train_epochs}")
        if not (0.0 <= self.adam_beta1 < 1.0 and 0.0 <= self.adam_beta2 < 1.0):
            raise EmbtuneError(f"args.adam_beta1/adam_beta2 must be in [0, 1), got {self.adam_beta1}, {self.adam_beta2}")
        if self.adam_epsilon <= 0 or self.max_grad_norm < 0 or self.weight_decay < 0:
            raise EmbtuneError("args.adam_epsilon must be > 0, and max_grad_norm and weight_decay >= 0")
        if self.eval_strategy == "steps" and self.eval_steps is None:
            raise EmbtuneError("args.eval_strategy is 'steps' but args.eval_steps is not set; set eval_steps: N")
        if self.eval_steps is not None and self.eval_steps < 1:
            raise EmbtuneError(f"args.eval_steps must be >= 1, got {self.eval_steps}")
        if self.save_total_limit is not None and self.save_total_limit < 1:
            raise EmbtuneError(f"args.save_total_limit must be >= 1 or null, got {self.save_total_limit}")
        if self.seed < 0 or (self.data_seed is not None and self.data_seed < 0):
            raise EmbtuneError("args.seed and args.data_seed must be non-negative integers")
        if self.load_best_model_at_end:
            self._check_best_model()
        self._check_hub_and_trackers()

    def _check_hub_and_trackers(self) -> None:
        from .trackers import TRACKERS

        if isinstance(self.report_to, str):  # `report_to: tensorboard`, as the HF trainer accepts it
            self.report_to = [self.report_to]
        self.report_to = [] if self.report_to in (["none"], []) else list(self.report_to)
        for name in self.report_to:
            _choice("args", "report_to", name, TRACKERS)
        if self.push_to_hub and not self.hub_model_id:
            raise EmbtuneError("args.push_to_hub is true but args.hub_model_id is not set; set hub_model_id: user/name")

    def _check_best_model(self) -> None:
        if self.eval_strategy == "no":
            raise EmbtuneError("args.load_best_model_at_end needs evaluation; set eval_strategy to steps or epoch")
        if self.save_strategy != self.eval_strategy:
            raise EmbtuneError(
                f"args.load_best_model_at_end needs save_strategy == eval_strategy, got save_strategy="
                f"{self.save_strategy!r} and eval_strategy={self.eval_strategy!r}; set both to the same value"
            )
        if self.eval_strategy == "steps" and self.save_steps % self.eval_steps != 0:
            raise EmbtuneError(
                f"args.load_best_model_at_end needs save_steps ({self.save_steps}) to be a multiple of "
                f"eval_steps ({self.eval_steps}), so every checkpoint has a metric"
            )

    # --- derived values -------------------------------------------------------------------------------

    @property
    def best_metric(self) -> str:
        """The logged key that picks the best checkpoint, with HF's ``eval_`` prefix."""
        name = self.metric_for_best_model or "loss"
        return name if name.startswith("eval_") else f"eval_{name}"

    @property
    def best_is_greater(self) -> bool:
        """Whether a larger value of ``best_metric`` is better."""
        if self.greater_is_better is not None:
            return self.greater_is_better
        return not self.best_metric.endswith("loss")

    @property
    def effective_data_seed(self) -> int:
        """The seed of the batch order: ``data_seed``, else ``seed``."""
        return self.seed if self.data_seed is None else self.data_seed

    def total_steps(self, batches_per_epoch: int) -> int:
        """Optimizer steps of the whole run, given the micro-batches of one epoch on this rank."""
        if self.max_steps > 0:
            return self.max_steps
        per_epoch = self.steps_per_epoch(batches_per_epoch)
        return max(1, int(round(per_epoch * self.num_train_epochs)))

    def steps_per_epoch(self, batches_per_epoch: int) -> int:
        """Optimizer steps per epoch: one per ``gradient_accumulation_steps`` batches, plus the remainder."""
        return max(1, -(-batches_per_epoch // self.gradient_accumulation_steps))

    def warmup(self, total_steps: int) -> int:
        """Warmup steps: ``warmup_steps``, else ``ceil(warmup_ratio * total_steps)`` (as HF computes it)."""
        if self.warmup_steps > 0:
            return self.warmup_steps
        return int(-(-self.warmup_ratio * total_steps // 1))

    def resolved_cache_dir(self) -> Path:
        """Where tokenized datasets and generated files live: shared by all runs, outside the model folder."""
        if self.cache_dir:
            return Path(self.cache_dir)
        return Path(os.environ.get("EMBTUNE_CACHE") or Path.home() / ".cache" / "embtune")

    def non_default(self) -> dict[str, Any]:
        """Hyperparameters that differ from the defaults (the model card's "Non-Default Hyperparameters")."""
        defaults = TrainArgs()
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("output_dir", "overwrite_output_dir", "resume_from_checkpoint", "cache_dir")
            and getattr(self, f.name) != getattr(defaults, f.name)
        }

    def to_dict(self) -> dict[str, Any]:
        """All hyperparameters, as plain values."""
        return dataclasses.asdict(self)


@dataclass
class TrainConfig:
    """A complete training run: what ``load_recipe`` returns and ``embtune.train`` takes."""

    model: ModelCfg = field(default_factory=ModelCfg)
    datasets: list[DatasetCfg] = field(default_factory=list)
    eval: EvalCfg = field(default_factory=EvalCfg)
    args: TrainArgs = field(default_factory=TrainArgs)
    checks: DataChecks = field(default_factory=DataChecks)  # the data report before training

    def __post_init__(self) -> None:
        if not self.datasets:
            raise EmbtuneError("datasets: at least one training dataset is needed")
        names = [dataset_name(d.path, d.name) for d in self.datasets]
        if len(set(names)) != len(names):
            raise EmbtuneError(f"datasets: names must be distinct, got {names}; set `name:` on each dataset")
        a = self.args
        if a.load_best_model_at_end and a.best_metric == "eval_loss":
            if not any(d.eval_path for d in self.datasets):
                raise EmbtuneError(
                    "args.load_best_model_at_end with metric_for_best_model 'loss' needs validation data; set "
                    "datasets[].eval_path, or set metric_for_best_model to an evaluator metric"
                )
        if a.eval_strategy != "no" and not self.eval.evaluators and not any(d.eval_path for d in self.datasets):
            raise EmbtuneError(
                f"args.eval_strategy is {a.eval_strategy!r} but there is nothing to evaluate; add eval.evaluators "
                "or datasets[].eval_path, or set eval_strategy: 'no'"
            )

    def to_dict(self) -> dict[str, Any]:
        """The whole config as plain values (YAML-ready)."""
        return dataclasses.asdict(self)
