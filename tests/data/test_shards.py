"""A dataset path may be a folder or glob of Parquet/JSONL/CSV shards: one memory-mapped table, one cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embtune.data.columns import ColumnRoles
from embtune.data.prepare import DatasetSpec, prepare_dataset
from embtune.data.sources import dataset_name, file_fingerprint, load_table
from embtune.errors import EmbtuneError

ROWS = [{"anchor": f"the cat {i} sat", "positive": f"a dog {i} ran far"} for i in range(30)]


def _write(folder: Path) -> Path:
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist(ROWS[:10]), folder / "p0.parquet")
    (folder / "p1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS[10:20]))
    (folder / "p2.csv").write_text("anchor,positive\n" + "".join(f"{r['anchor']},{r['positive']}\n" for r in ROWS[20:]))
    return folder


def test_folder_and_glob_read_as_one_table_in_file_order(tmp_path):
    folder = _write(tmp_path / "shards")
    for spec in (folder, str(folder / "p*.*")):
        table = load_table(spec, cache_dir=tmp_path / "cache")
        assert table.data.table.to_pylist() == ROWS
    assert dataset_name(str(folder / "*.parquet")) == "shards" and dataset_name(folder) == "shards"


def test_prepare_from_shards_equals_prepare_from_one_file(tiny_bert_dir, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    folder = _write(tmp_path / "shards")
    one = tmp_path / "all.jsonl"
    one.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    roles = ColumnRoles("anchor", "positive")
    a = prepare_dataset(DatasetSpec(folder, roles), tok, 16, cache_dir=tmp_path / "c")
    b = prepare_dataset(DatasetSpec(one, roles), tok, 16, cache_dir=tmp_path / "c")
    assert a.token_table.to_pylist() == b.token_table.to_pylist()
    assert np.array_equal(a.lengths, b.lengths) and np.array_equal(a.row_keys, b.row_keys)
    assert isinstance(a.lengths, np.memmap) and isinstance(a.row_keys, np.memmap)  # not loaded into RAM


def test_cache_key_changes_when_a_shard_changes(tmp_path):
    folder = _write(tmp_path / "shards")
    before = file_fingerprint(folder)
    (folder / "p3.jsonl").write_text(json.dumps(ROWS[0]) + "\n")
    assert file_fingerprint(folder) != before


def test_shard_errors_name_the_file(tmp_path):
    folder = _write(tmp_path / "shards")
    (folder / "p3.jsonl").write_text(json.dumps({"anchor": "x", "other": "y"}) + "\n")
    with pytest.raises(EmbtuneError, match=r"p3\.jsonl: columns .* differ .*same columns"):
        load_table(folder)
    with pytest.raises(EmbtuneError, match=r"matches no .parquet"):
        load_table(str(tmp_path / "nothing" / "*.parquet"))


def test_training_on_a_shard_folder(tiny_bert_dir, tmp_path):
    from embtune.training.loop import train
    from embtune.training.recipe import config_from_dict

    folder = _write(tmp_path / "shards")
    cfg = {
        "model": {"name": str(tiny_bert_dir), "max_seq_length": 16},
        "datasets": [{"path": str(folder / "p*"), "columns": {"anchor": "anchor", "positive": "positive"}}],
        "args": {"output_dir": str(tmp_path / "run"), "max_steps": 2, "per_device_train_batch_size": 4,
                 "batch_sampler": "no_duplicates", "bf16": False, "disable_tqdm": True, "save_steps": 2},
    }
    result = train(config_from_dict(cfg))
    assert result.metrics["global_step"] == 2 and "shards" in (result.model_path / "README.md").read_text()
