"""What a checkpoint was trained on, so a resume can tell when the recipe or the data changed underneath it.

``run_fingerprint`` records, per dataset, its row count and a hash of its content (the rendered texts'
row keys and the labels, from the prepared cache, so it costs no re-read of the files), the loss (name and
parameters) and the learning-rate schedule. Every checkpoint stores it in ``trainer_state.json``.
``check_resume`` compares the checkpoint's fingerprint with this run's: a difference is one line that says
what changed, unless the user passed ``--resume-force`` (``train(config, resume_force=True)``), which turns
it into a warning and applies the new schedule. Batch size, seed and the number of datasets are checked by
the samplers' ``load_state_dict``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from ..errors import EmbtuneError

FORCE_HINT = "--resume-force (Python: train(config, resume_force=True))"


def content_hash(prepared: Any) -> str:
    """SHA-256 (32 hex digits) of a prepared dataset's row keys (hashes of the rendered texts) and labels, in
    row order: computed once when its cache entry was built (``data.prepare``), so a resume reads no rows."""
    return str(prepared.content_hash)


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def run_fingerprint(data: list[Any], args: Any, total_steps: int) -> dict[str, Any]:
    """The datasets, losses and schedule of a run as plain JSON values (see the module doc)."""
    return {
        "datasets": {d.name: {"rows": int(d.train.num_rows), "content": content_hash(d.train)} for d in data},
        "losses": {d.name: _plain({"name": d.cfg.loss.name, "params": dict(d.cfg.loss.params)}) for d in data},
        "schedule": {
            "learning_rate": float(args.learning_rate),
            "lr_scheduler_type": args.lr_scheduler_type,
            "warmup_steps": int(args.warmup(total_steps)),
            "total_steps": int(total_steps),
        },
    }


def _loss_text(loss: dict[str, Any]) -> str:
    params = ", ".join(f"{k}={v}" for k, v in sorted(loss.get("params", {}).items()))
    return f"{loss.get('name')}({params})"


def differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What changed from ``saved`` to ``current``, one short phrase each (empty when nothing did)."""
    out: list[str] = []
    old_data, new_data = saved.get("datasets", {}), current["datasets"]
    if list(old_data) != list(new_data):
        out.append(f"the datasets changed ({', '.join(old_data) or 'none'} -> {', '.join(new_data)})")
    for name, new in new_data.items():
        old = old_data.get(name)
        if old is None:
            continue
        if old["rows"] != new["rows"]:
            out.append(f"dataset {name!r} changed ({old['rows']} -> {new['rows']} rows)")
        elif old["content"] != new["content"]:
            out.append(f"dataset {name!r} changed (same {new['rows']} rows, different content)")
    for name, new in current["losses"].items():
        old = saved.get("losses", {}).get(name)
        if old is not None and old != new:
            out.append(f"the loss of dataset {name!r} changed ({_loss_text(old)} -> {_loss_text(new)})")
    old_s, new_s = saved.get("schedule", {}), current["schedule"]
    changed = [f"{k} {old_s[k]} -> {v}" for k, v in new_s.items() if k in old_s and old_s[k] != v]
    if changed:
        out.append(f"the learning-rate schedule changed ({', '.join(changed)})")
    return out


def check_resume(saved: dict[str, Any], current: dict[str, Any], checkpoint: Path, force: bool) -> bool:
    """Refuse (or with ``force``, warn about) resuming ``checkpoint`` with other data, loss or schedule.

    Returns True when something changed and ``force`` accepted it. A checkpoint written before
    fingerprints existed (none stored) is resumed with a warning that nothing could be checked.
    """
    if not saved:
        warnings.warn(f"{checkpoint}: holds no data/loss/schedule fingerprint (an older embtune wrote it); "
                      "resuming without checking that the recipe and data are unchanged", stacklevel=2)
        return False
    changes = differences(saved, current)
    if not changes:
        return False
    if force:
        warnings.warn(f"resuming {checkpoint} although {'; '.join(changes)}: continuing with the new settings "
                      "as asked (--resume-force); the run is no longer an exact continuation", stacklevel=2)
        return True
    raise EmbtuneError(
        f"cannot resume from {checkpoint}: {'; '.join(changes)}; restore the original recipe and data, start a "
        f"new run (overwrite_output_dir: true or another output_dir), or pass {FORCE_HINT} to continue anyway"
    )


def apply_new_schedule(optimizer: Any, scheduler: Any, learning_rate: float) -> None:
    """After loading a checkpoint's optimizer and scheduler (which restore the old peak learning rate), use
    ``learning_rate`` and this run's schedule from the current step on (for ``--resume-force``)."""
    scheduler.base_lrs = [float(learning_rate)] * len(optimizer.param_groups)
    for group, lr_lambda in zip(optimizer.param_groups, scheduler.lr_lambdas, strict=True):
        group["initial_lr"] = float(learning_rate)
        group["lr"] = float(learning_rate) * lr_lambda(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]  # what get_last_lr() reports
