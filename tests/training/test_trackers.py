"""args.report_to: TensorBoard event files read back with tensorboard's reader, MLflow runs with its client."""

from __future__ import annotations

import pytest

from embtune.errors import EmbtuneError
from embtune.training.loop import train
from embtune.training.recipe import config_from_dict

STS = {"kind": "sts", "name": "sts", "columns": {"sentences1": "anchor", "sentences2": "positive", "scores": "score"}}


def tracked_config(config_factory, tiny_bert_dir, pairs_file, out, report_to):
    raw = config_factory(tiny_bert_dir, pairs_file, out, max_steps=4, logging_steps=2, eval_strategy="steps",
                         eval_steps=2, save_strategy="no", report_to=report_to)
    raw["eval"] = {"evaluators": [{**STS, "path": str(pairs_file)}]}
    return config_from_dict(raw)


def test_tensorboard_events_hold_every_logged_metric(tiny_bert_dir, pairs_file, tmp_path, config_factory):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    result = train(tracked_config(config_factory, tiny_bert_dir, pairs_file, out, ["tensorboard"]))
    acc = EventAccumulator(str(out / "runs"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/learning_rate", "train/grad_norm", "train/examples_per_s",
            "eval/sts_spearman_cosine", "eval/final_sts_spearman_cosine"} <= tags
    assert [e.step for e in acc.Scalars("train/loss")] == [2, 4]
    assert [e.step for e in acc.Scalars("eval/sts_spearman_cosine")] == [2, 4]
    final = acc.Scalars("eval/final_sts_spearman_cosine")[0].value
    assert final == pytest.approx(result.metrics["final"]["eval_sts_spearman_cosine"], abs=1e-6)
    assert "recipe/text_summary" in acc.Tags()["tensors"]  # the recipe as text
    assert (out / "modules.json").is_file()  # the final model swap kept runs/


def test_mlflow_run_read_back_with_its_client(tiny_bert_dir, pairs_file, tmp_path, config_factory, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow 3 keeps the local file store behind this flag
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "embtune-test")
    train(tracked_config(config_factory, tiny_bert_dir, pairs_file, tmp_path / "run", ["mlflow"]))
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("embtune-test")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    params = run.data.params
    assert params["args.learning_rate"] == "0.001" and params["args.max_steps"] == "4"
    assert params["datasets.0.loss.name"] == "mnrl"
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in history] == [2, 4]
    for key in ("train_learning_rate", "train_grad_norm", "train_examples_per_s", "eval_sts_spearman_cosine"):
        assert client.get_metric_history(run.info.run_id, key), key


def test_report_to_validation(tiny_bert_dir, pairs_file, tmp_path, config_factory):
    raw = config_factory(tiny_bert_dir, pairs_file, tmp_path / "x", report_to=["wandb"])
    with pytest.raises(EmbtuneError, match="args.report_to"):
        config_from_dict(raw)
    assert config_from_dict(config_factory(tiny_bert_dir, pairs_file, tmp_path / "x", report_to=["none"])).args.report_to == []


def test_missing_extra_names_it(tiny_bert_dir, pairs_file, tmp_path, config_factory, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_tensorboard(name, *a, **k):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    cfg = config_from_dict(config_factory(tiny_bert_dir, pairs_file, tmp_path / "run", report_to=["tensorboard"]))
    with pytest.raises(EmbtuneError, match=r"embtune\[tracking\]"):
        train(cfg)
