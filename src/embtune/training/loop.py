"""``train(config)``: the one training loop of embtune, meant to be read top to bottom.

Outline (each block below has a header comment with its number):

1. setup: processes (torchrun DDP), seed, device, output folder, resume point;
2. model, data (tokenized once, cached), one loss per dataset, the batch sampler;
3. optimizer, scheduler, precision; the base model's metrics (before any step);
4. maybe resume: optimizer, scheduler, sampler position, RNG states, log;
5. the step loop: batch -> embeddings per role -> loss / accum -> backward; every ``accum`` batches
   clip, step, schedule; log every ``logging_steps``; evaluate and save on their strategies;
6. end: best model (if asked), final metrics, the final model at the root of ``output_dir`` + card.

Helpers below ``train`` each do one thing and hold no state between calls; what they share is one ``Run``
(model, encoder, optimizer, scheduler, scaler, sampler, state, logger, dtype, device, ...).
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from ..data.collate import Batch, collate
from ..errors import EmbtuneError
from ..evaluation import run_evaluators
from ..losses.base import Loss, ModelLoss
from ..models.adapters import finish_adapter
from ..models.embedding_model import EmbeddingModel
from ..report.run import REPORT_FILE, report_before_training
from ..utils import distributed as dist
from ..utils.atomic import atomic_dir
from ..utils.device import default_device, fast_bf16, warn_if_bf16_is_emulated
from ..utils.memory import release_free_heap, reuse_freed_blocks
from ..utils.resolve import custom_code
from ..utils.seed import get_rng_state, seed_everything
from ..utils.threads import adapt_threads
from . import checkpoint as ckpt
from . import guards
from .build import TrainData, build_evaluators, build_model, build_sampler, eval_batches, prepare_data
from .config import TrainArgs, TrainConfig
from .context import Run
from .fingerprint import apply_new_schedule, check_resume, run_fingerprint
from .lock import output_lock
from .log import JsonlLogger
from .optim import build_optimizer, build_scheduler
from .preflight import preflight
from .rollback import LOG_FILE, FreshStart, undo_on_failure
from .rowwise import clip_grad_norm
from .run_info import write_card
from .trackers import TENSORBOARD_DIR, build_trackers

PRESERVED = ("checkpoints", LOG_FILE, ".cache", REPORT_FILE, TENSORBOARD_DIR, "mlruns")  # kept when the final model replaces output_dir


@dataclass
class TrainResult:
    """What ``train`` returns: the final model folder, the metrics (base vs final) and the log file."""

    model_path: Path
    metrics: dict[str, Any]
    log_path: Path


def train(config: TrainConfig, *, allow_custom_code: bool = False, resume_force: bool = False) -> TrainResult:
    """Fine-tune ``config.model`` on ``config.datasets``; write the model, checkpoints and log to ``args.output_dir``.

    Launch with ``torchrun --nproc_per_node=N -m embtune train recipe.yaml`` for DDP: every rank trains on
    its slice of each global batch, embeddings are gathered so each loss sees the whole global batch,
    and only rank 0 evaluates and writes files.

    ``allow_custom_code``: accept ``package.module:Class`` loss names (your own loss classes); a recipe
    alone can never turn this on. Names, paths and the output folder are checked first (``preflight``).

    The output folder is locked for the whole run (a second run into it fails at once, naming this one's
    pid), and a run that fails before its first checkpoint leaves the folder as it found it. A resume
    refuses a checkpoint trained on other data, loss or schedule unless ``resume_force=True``
    (``embtune train --resume-force``), which only warns.
    """
    with custom_code(allow_custom_code):
        preflight(config)
        writes = (dist.rank() if dist.is_distributed() else int(os.environ.get("RANK", "0"))) == 0  # rank 0 writes
        start = FreshStart(config.args.output_dir)
        if writes:
            try:
                start.make_parent()
            except OSError as exc:
                raise EmbtuneError(f"{config.args.output_dir}: cannot create its parent folder ({exc.strerror or exc}); "
                                   "choose an output_dir in a folder you can write to") from None
        if not writes:
            return _train(config, start, resume_force)
        with undo_on_failure(start, lock=output_lock(config.args.output_dir)):
            return _train(config, start, resume_force)


def _train(config: TrainConfig, start: FreshStart, resume_force: bool) -> TrainResult:  # noqa: C901 - the one loop (STYLE §4)
    """The loop itself (``train`` checks the config first)."""
    args = config.args
    started = time.perf_counter()

    # --- 1. setup: processes, seed, device, output folder, resume point -------------------------------
    device = dist.init_distributed() or default_device()
    rank, world = dist.rank(), dist.world_size()
    seed_everything(args.seed)
    output_dir = Path(args.output_dir)
    cache_dir = args.resolved_cache_dir()  # shared across runs: tokenize once, reuse everywhere
    resume_from = _resume_checkpoint(args, output_dir)  # None for a fresh run
    if resume_from is None:
        _refuse_old_run(args, output_dir)  # an old run in output_dir needs overwrite_output_dir
    if args.push_to_hub and dist.is_main():
        from ..hub_push import check_can_push

        check_can_push()  # offline or no token: fail now, not after the run
    dist.barrier()

    # --- 2. model, data, losses, sampler --------------------------------------------------------------
    amp_dtype = _autocast_dtype(args, device)
    model = build_model(config.model, resume_from, amp_dtype, cache_dir).to(device)
    reuse_freed_blocks()  # each step reuses the last one's freed blocks (not for LoRA runs, which trim for memory)
    if args.gradient_checkpointing:
        model.transformer.auto_model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False}  # works with DDP and several forwards
        )
    global_batch = args.per_device_train_batch_size * world
    if not dist.is_main():
        dist.barrier()  # rank 0 tokenizes first; the others then read its cache
    data = prepare_data(config.datasets, model, cache_dir, global_batch)
    if dist.is_main():
        dist.barrier()
    sampler = build_sampler(data, args, rank, world)
    if len(sampler) == 0:
        raise EmbtuneError(
            f"no full batch of {global_batch} rows in the training data; lower per_device_train_batch_size or "
            "set dataloader_drop_last: false"
        )
    total_steps = args.total_steps(len(sampler))
    evaluators = build_evaluators(config.eval.evaluators, cache_dir, args.per_device_eval_batch_size)
    guards.check_metric_name(args, data, evaluators)  # a misspelt metric fails now, not after the first eval
    guards.check_first_batches(model, data, args.per_device_train_batch_size, device)
    fingerprint = run_fingerprint(data, args, total_steps)
    if resume_from is None:  # rank 0 prints a brief data report and writes it in full; every rank may stop here
        report_before_training(data, evaluators, config, model.tokenizer, cache_dir, output_dir)
        release_free_heap()  # the report's texts and MinHashes are gone

    # --- 3. optimizer, scheduler, precision, base metrics ---------------------------------------------
    optimizer = build_optimizer(model, args)
    run = Run(
        args=args, output_dir=output_dir, model=model, encoder=_wrap(RoleEncoder(model), data, device),
        optimizer=optimizer, scheduler=build_scheduler(optimizer, args, total_steps),
        scaler=torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None, sampler=sampler,
        data=data, evaluators=evaluators, state=ckpt.TrainState(fingerprint=fingerprint), logger=None,
        dtype=amp_dtype, device=device,
    )
    if resume_from is None and dist.is_main():
        run.state.base_metrics = _evaluate(run)

    # --- 4. maybe resume ------------------------------------------------------------------------------
    if resume_from is not None:
        saved = ckpt.load_checkpoint(resume_from)
        forced = check_resume(saved.state.fingerprint, fingerprint, resume_from, resume_force)
        ckpt.restore(saved, run.optimizer, run.scheduler, run.scaler, rank)  # optimizer, scheduler, scaler, RNG
        if forced:
            apply_new_schedule(run.optimizer, run.scheduler, args.learning_rate)
        run.state = saved.state
        run.state.fingerprint = fingerprint
        sampler.load_state_dict(run.state.sampler)
    elif dist.is_main():
        start.clear_old_run()  # overwrite_output_dir: the old run goes only now that setup has succeeded
    trackers = build_trackers(args.report_to, config, output_dir) if dist.is_main() else []
    run.logger = JsonlLogger(output_dir / LOG_FILE, trackers) if dist.is_main() else None
    if run.logger is not None:
        run.logger.restart(run.state.log)  # drop rows a killed run wrote after its last checkpoint
    state = run.state

    # --- 5. the step loop -----------------------------------------------------------------------------
    model.train()
    accum = args.gradient_accumulation_steps
    params = [p for p in model.parameters() if p.requires_grad]
    window = _Window()
    progress = tqdm(total=total_steps, initial=state.step, disable=not dist.is_main() or args.disable_tqdm,
                    desc="train", unit="step", dynamic_ncols=True)
    while state.step < total_steps:
        sampler.set_epoch(state.epoch)
        n_batches = len(sampler)
        for ds_index, rows in sampler:
            d = data[ds_index]
            adapt_threads()  # fewer torch threads while another process keeps the CPU busy (utils/threads.py)
            batch = collate(d.train, rows).to(device)  # Arrow take + numpy padding: no per-row Python
            done = sampler.batches_done
            boundary = done % accum == 0 or done == n_batches  # last batch of an accumulation window
            window.add(_forward_backward(run, d.loss, batch, 1.0 / accum, sync=boundary), len(batch) * world)
            if not boundary:
                continue
            try:  # a non-finite loss or gradient stops the run before the optimizer step spoils the weights
                guards.check_finite("loss", window.loss)
                grad_norm = _optimizer_step(run, params)
            except guards.NonFinite as exc:
                raise guards.non_finite_error(exc, state.step + 1, d.name, output_dir) from None
            state.step += 1
            progress.update(1)
            epoch = state.epoch + done / n_batches
            if state.step % args.logging_steps == 0:
                _log(run, window.flush(epoch, state.step, grad_norm, optimizer), progress)
            _eval_and_save(run, "steps", epoch, window)
            if state.step >= total_steps:
                break
        if sampler.batches_done >= n_batches:  # the epoch is complete
            state.epoch += 1
            sampler.set_epoch(state.epoch)
            _eval_and_save(run, "epoch", state.epoch, window)
    progress.close()
    if window.batches:  # steps since the last log row
        _log(run, window.flush(state.epoch, state.step, None, optimizer))
    _release_optimizer_state(run)

    # --- 6. end: best model, final metrics, final model + card ----------------------------------------
    metrics: dict[str, Any] = {}
    if dist.is_main():
        if args.load_best_model_at_end and state.best_checkpoint:
            run.model = model = build_model(config.model, Path(state.best_checkpoint), amp_dtype, cache_dir).to(device)
        final = _evaluate(run)
        metrics = {
            "base": state.base_metrics,
            "final": final,
            "global_step": state.step,
            "train_runtime_s": round(time.perf_counter() - started, 2),
            "train_loss": _mean_train_loss(state.log),
            "best_metric": state.best_metric,
            "best_checkpoint": state.best_checkpoint,
        }
        model.eval()
        finish_adapter(model, config.model.adapter)  # LoRA: fold the adapter in, unless save: adapter
        guards.check_finite_model(model, output_dir)
        with atomic_dir(output_dir, preserve=PRESERVED) as tmp:  # the model + card replace the folder in one step
            model.write_folder(tmp)
            write_card(tmp, config, model, data, evaluators, state, final)  # never raises: warns instead
        if run.logger is not None:  # the final model's metrics go to the trackers (the JSONL log has its rows)
            for tracker in run.logger.trackers:
                tracker.log({"step": state.step, **{f"eval_final_{k.removeprefix('eval_')}": v for k, v in final.items()}})
            run.logger.close()
        if args.push_to_hub:
            from ..hub_push import push_to_hub

            metrics["hub_url"] = push_to_hub(output_dir, args.hub_model_id, private=args.hub_private_repo,
                                             revision=args.hub_revision).url
    dist.shutdown()
    return TrainResult(output_dir, metrics, output_dir / LOG_FILE)


# --- helpers: setup ---------------------------------------------------------------------------------------


def _resume_checkpoint(args: TrainArgs, output_dir: Path) -> Path | None:
    """The checkpoint folder ``resume_from_checkpoint`` names (``last`` or a path), or None for a fresh run."""
    wanted = args.resume_from_checkpoint
    if not wanted:
        return None
    path = ckpt.find_last_checkpoint(output_dir) if wanted == "last" else Path(wanted)
    if path is None:
        raise EmbtuneError(
            f"resume_from_checkpoint: last, but {output_dir / 'checkpoints'} has no checkpoint; "
            "remove resume_from_checkpoint to start a new run"
        )
    if not path.is_dir():
        raise EmbtuneError(f"resume_from_checkpoint: {path} is not a folder; use 'last' or a checkpoint path")
    return path


def _refuse_old_run(args: TrainArgs, output_dir: Path) -> None:
    """Before a fresh run: refuse an output folder that holds another run unless ``overwrite_output_dir``.
    That run's checkpoints and log are deleted later, once setup has succeeded (``FreshStart.clear_old_run``),
    so a fresh run never mixes into an old one and a failed setup never loses it."""
    old = [p for p in (output_dir / "checkpoints", output_dir / LOG_FILE, output_dir / "modules.json") if p.exists()]
    ckpt.check_output_dir(output_dir, ours=bool(old), overwrite=args.overwrite_output_dir)
    if old and not args.overwrite_output_dir:
        resumable = ckpt.find_last_checkpoint(output_dir) is not None
        raise EmbtuneError(
            f"{output_dir} already holds a run; "
            + ("set resume_from_checkpoint: last to continue it, " if resumable else "(it has no checkpoint to resume) ")
            + "set overwrite_output_dir: true to replace it, or choose another output_dir"
        )
    # with overwrite_output_dir, the old run is deleted only once setup has succeeded (FreshStart.clear_old_run)


def _autocast_dtype(args: TrainArgs, device: torch.device) -> torch.dtype | None:
    """bf16 / fp16 autocast dtype, or None for fp32. ``bf16: null`` means bf16 where the hardware is fast."""
    if args.fp16:
        if device.type != "cuda":
            raise EmbtuneError("fp16 training needs a CUDA GPU; on CPU use bf16: true (or leave bf16 unset)")
        return torch.float16
    if args.bf16 or (args.bf16 is None and fast_bf16(device)):
        warn_if_bf16_is_emulated(device)
        return torch.bfloat16
    return None


class RoleEncoder(nn.Module):
    """Embeds every role of a batch in one ``forward``, so DDP sees exactly one forward per backward."""

    def __init__(self, model: EmbeddingModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:  # role -> (B, D)
        return self.model.embed_roles(features)  # one forward for all roles on the fast backend


def _wrap(encoder: RoleEncoder, data: list[TrainData], device: torch.device) -> nn.Module:
    """DDP-wrap the encoder in a multi-process run, unless a loss runs the model itself (then gradients
    are averaged by hand in ``_optimizer_step``, since such losses call the model many times per step)."""
    if not dist.is_distributed() or any(isinstance(d.loss, ModelLoss) for d in data):
        return encoder
    ids = [device.index] if device.type == "cuda" else None
    # find_unused_parameters: pooling never reads the encoder's own pooler head, so some weights get no grad
    return DistributedDataParallel(encoder, device_ids=ids, find_unused_parameters=True)


# --- helpers: one step -------------------------------------------------------------------------------------


def _forward_backward(run: Run, loss_fn: Loss, batch: Batch, scale: float, sync: bool) -> Tensor:
    """Loss of one batch (detached) after adding ``scale`` x its gradients into ``.grad``.

    ``sync`` is False inside an accumulation window: DDP then skips its gradient all-reduce.
    """
    encoder, model, scaler = run.encoder, run.model, run.scaler
    no_sync = encoder.no_sync() if isinstance(encoder, DistributedDataParallel) and not sync else contextlib.nullcontext()
    labels = None if batch.labels is None else batch.labels.float()
    with no_sync:
        if isinstance(loss_fn, ModelLoss):  # GradCache-style: the loss runs the model and backward itself
            def embed(features: dict[str, Tensor]) -> Tensor:
                with run.autocast():
                    return model(features)

            return loss_fn.forward_backward(embed, batch.features, labels, loss_scale=scale).detach()
        with run.autocast():
            embeddings = encoder(batch.features)
        if dist.is_distributed():  # every rank computes the loss of the whole global batch
            embeddings = {role: dist.all_gather_with_grad(e) for role, e in embeddings.items()}
            labels = None if labels is None else dist.all_gather_with_grad(labels)
        loss = loss_fn({role: e.float() for role, e in embeddings.items()}, labels)
        scaled = loss * scale
        (scaler.scale(scaled) if scaler is not None else scaled).backward()
    return loss.detach()


def _release_optimizer_state(run: Run) -> None:
    """Free the optimizer's moments and the gradients once the last step is done (the final evaluation and save
    need neither). The save reads every weight, which brings in the pages of embedding rows training never
    touched (memory-mapped from the base model's file): with the moments still held, that made the save the
    peak of a bge-m3 run (6.9 GB vs 6.2 GB during the steps). The optimizer object stays usable (empty state)."""
    run.optimizer.zero_grad(set_to_none=True)
    run.optimizer.state.clear()
    gc.collect()
    release_free_heap()


def _optimizer_step(run: Run, params: list[nn.Parameter]) -> float:
    """Average gradients over ranks (when DDP did not), clip, step, schedule, zero; return the grad norm."""
    optimizer, scaler, max_grad_norm = run.optimizer, run.scaler, run.args.max_grad_norm
    if dist.is_distributed() and not isinstance(run.encoder, DistributedDataParallel):
        dist.average_gradients(params)
    if scaler is not None:
        scaler.unscale_(optimizer)
    norm = clip_grad_norm(params, max_grad_norm if max_grad_norm > 0 else math.inf)  # sparse grads too
    if scaler is None:  # (fp16's scaler skips steps with inf gradients by itself)
        guards.check_finite("gradient norm", norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    run.scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)


class _Window:
    """Running totals between two log rows: loss, examples and wall time."""

    def __init__(self) -> None:
        self.loss = torch.zeros(())
        self.batches = 0
        self.examples = 0
        self.start = time.perf_counter()

    def add(self, loss: Tensor, examples: int) -> None:
        self.loss = self.loss + loss.float().cpu()  # stays a tensor: no device sync per step on GPU
        self.batches += 1
        self.examples += examples

    def flush(self, epoch: float, step: int, grad_norm: float | None, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        row = {
            "epoch": round(epoch, 4),
            "step": step,
            "loss": round(float(self.loss) / max(self.batches, 1), 6),
            "learning_rate": optimizer.param_groups[0]["lr"],
            "grad_norm": None if grad_norm is None else round(grad_norm, 6),
            "examples_per_s": round(self.examples / elapsed, 2),
        }
        self.__init__()
        return row


def _log(run: Run, row: dict[str, Any], progress: tqdm | None = None) -> None:
    run.state.log.append(row)
    if run.logger is not None:
        run.logger.log(row)
    if progress is not None:
        progress.set_postfix(loss=row.get("loss"), lr=row.get("learning_rate"))


def _mean_train_loss(log: list[dict[str, Any]]) -> float | None:
    losses = [r["loss"] for r in log if "loss" in r and "eval_loss" not in r]
    return round(sum(losses) / len(losses), 6) if losses else None


# --- helpers: evaluation and checkpoints ----------------------------------------------------------------


def _eval_and_save(run: Run, strategy: str, epoch: float, window: _Window) -> None:
    """Evaluate and/or checkpoint when ``eval_strategy`` / ``save_strategy`` is ``strategy`` ("steps" or
    "epoch") and, for "steps", the step is a multiple of ``eval_steps`` / ``save_steps``. The time taken is
    left out of the window's examples_per_s, which counts training time only."""
    args, step = run.args, run.state.step
    paused = time.perf_counter()
    evaluated = None
    if args.eval_strategy == strategy and (strategy == "epoch" or step % args.eval_steps == 0):
        evaluated = _eval_and_log(run, epoch)
    if args.save_strategy == strategy and (strategy == "epoch" or step % args.save_steps == 0):
        _save(run, evaluated)
    window.start += time.perf_counter() - paused


def _evaluate(run: Run) -> dict[str, float]:
    """Validation loss per dataset with an ``eval_path`` (and their mean ``eval_loss``) plus the evaluators."""
    model = run.model
    was_training = model.training
    model.eval()
    metrics: dict[str, float] = {}
    with torch.no_grad():
        for d in run.data:
            if d.eval is None:
                continue
            total, rows = 0.0, 0
            for batch in eval_batches(d.eval, run.args.per_device_eval_batch_size):
                batch = batch.to(run.device)
                with run.autocast():
                    embeddings = {role: model(f).float() for role, f in batch.features.items()}
                labels = None if batch.labels is None else batch.labels.float()
                total += float(d.loss(embeddings, labels)) * len(batch)
                rows += len(batch)
            metrics[f"eval_{d.name}_loss"] = round(total / max(rows, 1), 6)
    losses = [v for k, v in metrics.items() if k.endswith("_loss")]
    if losses:
        metrics["eval_loss"] = round(sum(losses) / len(losses), 6)
    metrics |= {f"eval_{k}": v for k, v in run_evaluators(model, run.evaluators).items()}
    model.train(was_training)
    return metrics


def _eval_and_log(run: Run, epoch: float) -> dict[str, float] | None:
    """Evaluate on rank 0 (the other ranks wait), log the row, and return the metrics (None off rank 0)."""
    metrics = None
    if dist.is_main():
        metrics = _evaluate(run)
        _log(run, {"epoch": round(epoch, 4), "step": run.state.step, **metrics})
    dist.barrier()
    return metrics


def _save(run: Run, evaluated: dict[str, float] | None) -> None:
    """Checkpoint (rank 0 writes, every rank contributes its RNG state), track the best, prune old ones."""
    args, state = run.args, run.state
    rng_states = dist.gather_objects(get_rng_state())
    state.sampler = run.sampler.state_dict()
    if dist.is_main():
        folder = ckpt.checkpoint_dir(run.output_dir, state.step)
        if evaluated is not None and (args.metric_for_best_model or args.best_metric in evaluated):
            value = evaluated.get(args.best_metric)
            if value is None:
                raise EmbtuneError(
                    f"metric_for_best_model {args.metric_for_best_model!r} is not among the metrics "
                    f"({', '.join(sorted(evaluated))}); pick one of them (with or without the eval_ prefix)"
                )
            best = state.best_metric
            better = math.isfinite(value) and (
                best is None or (value > best if args.best_is_greater else value < best))
            if better:
                state.best_metric, state.best_checkpoint = float(value), str(folder)
        guards.check_finite_model(run.model, folder)
        ckpt.save_checkpoint(folder, run.model, run.optimizer, run.scheduler, state, rng_states, run.scaler)
        keep = state.best_checkpoint if args.load_best_model_at_end else None
        ckpt.prune_checkpoints(run.output_dir, args.save_total_limit, keep=keep)
    dist.barrier()
