"""Experiment trackers for ``args.report_to``: TensorBoard event files and MLflow runs.

Each tracker gets every log row of the loop (loss, learning_rate, grad_norm, examples_per_s and every eval
metric, at its ``step``) and the recipe as parameters once at the start. Both libraries are optional extras,
imported only when a recipe asks for them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Protocol

from ..errors import EmbtuneError

TRACKERS = ("tensorboard", "mlflow")
TENSORBOARD_DIR = "runs"  # inside output_dir, as the Hugging Face trainer's logging_dir


class Tracker(Protocol):
    def log(self, row: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


def _missing(name: str) -> EmbtuneError:
    return EmbtuneError(f"args.report_to: {name} needs the tracking extra; install it with: pip install 'embtune[tracking]'")


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """A recipe (dataclasses, dicts, lists) as ``{"args.learning_rate": "5e-05", "datasets.0.path": ...}``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list | tuple) and value:
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        return {prefix: str(value)} if prefix else {}
    out: dict[str, str] = {}
    for key, item in items:
        out |= flatten(item, f"{prefix}.{key}" if prefix else str(key))
    return out


def _scalars(row: dict[str, Any]) -> dict[str, float]:
    """Numeric values of a log row, named as the HF trainer names them: train/<key> and eval/<key>."""
    out = {}
    for key, value in row.items():
        if key == "step" or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        out[f"eval/{key[5:]}" if key.startswith("eval_") else f"train/{key}"] = float(value)
    return out


class TensorBoardTracker:
    """Scalars at each step, and the recipe as a JSON text, in ``output_dir/runs/``."""

    def __init__(self, log_dir: Path, params: dict[str, str]) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise _missing("tensorboard") from None
        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.writer.add_text("recipe", "```json\n" + json.dumps(params, indent=2) + "\n```", 0)

    def log(self, row: dict[str, Any]) -> None:
        for tag, value in _scalars(row).items():
            self.writer.add_scalar(tag, value, global_step=int(row.get("step", 0)))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MlflowTracker:
    """One MLflow run: the recipe as params, every metric at its step. Uses ``MLFLOW_TRACKING_URI`` (else
    MLflow's default) and ``MLFLOW_EXPERIMENT_NAME`` (else "embtune")."""

    def __init__(self, run_name: str, params: dict[str, str]) -> None:
        try:
            from mlflow.entities import Param
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise _missing("mlflow") from None
        self.client = MlflowClient(os.environ.get("MLFLOW_TRACKING_URI") or None)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "embtune"
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id
        items = [Param(k, v[:500]) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def log(self, row: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        now, step = int(time.time() * 1000), int(row.get("step", 0))
        metrics = [Metric(k.replace("/", "_"), v, now, step) for k, v in _scalars(row).items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


def build_trackers(report_to: list[str], config: Any, output_dir: Path) -> list[Tracker]:
    """The trackers a recipe asks for (rank 0 only), each already holding the recipe as parameters."""
    params = flatten(config)
    trackers: list[Tracker] = []
    for name in report_to:
        if name == "tensorboard":
            trackers.append(TensorBoardTracker(output_dir / TENSORBOARD_DIR, params))
        elif name == "mlflow":
            trackers.append(MlflowTracker(output_dir.name, params))
    return trackers
