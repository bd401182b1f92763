"""Corpus encoding: Parquet/JSONL/CSV shards -> Parquet (id, embedding) parts; resume, --shard, torchrun ranks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embtune import EmbeddingModel
from embtune.cli import main
from embtune.corpus import encode_shards
from embtune.corpus.encode_shards import encode_corpus, read_embeddings
from embtune.errors import EmbtuneError

WORDS = "the a cat dog bird car bus train house road city river lake sea sun moon star sky tree book red blue".split()


def _texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 14)))) for _ in range(n)]


@pytest.fixture(scope="module")
def model_dir(tiny_bert_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("st") / "model"
    EmbeddingModel.from_transformer(tiny_bert_dir, pooling="mean", normalize=True).save(folder)
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list, list[str]]:
    """Three shards in three formats; ids are global row numbers (as text in the CSV, ints elsewhere)."""
    folder = tmp_path_factory.mktemp("corpus")
    texts = _texts(50, 0)
    pq.write_table(pa.table({"id": list(range(0, 20)), "text": texts[:20]}), folder / "a.parquet")
    (folder / "b.jsonl").write_text("".join(json.dumps({"id": i, "text": texts[i]}) + "\n" for i in range(20, 35)))
    (folder / "c.csv").write_text("id,text\n" + "".join(f"{i},{texts[i]}\n" for i in range(35, 50)))
    return folder, list(range(50)), texts


def _fp32(model_dir: Path) -> EmbeddingModel:
    model = EmbeddingModel.load(model_dir)
    model.source = str(model_dir)
    return model


def test_embeddings_equal_plain_encode_exactly(model_dir, corpus, tmp_path):
    folder, ids, texts = corpus
    model = _fp32(model_dir)
    report = encode_corpus(model, folder, tmp_path / "out", precision="fp32", batch_size=8)
    assert report.complete and report.parts_total == 3 and report.rows_written == 50
    got_ids, emb = read_embeddings(tmp_path / "out")
    assert [int(i) for i in got_ids] == ids
    # one part per file: each equals encode() of that file's texts, bit for bit
    for lo, hi in ((0, 20), (20, 35), (35, 50)):
        assert np.array_equal(emb[lo:hi], model.encode(texts[lo:hi], precision="fp32", batch_size=8))
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["embedding_dim"] == emb.shape[1] == 32
    assert [p["rows"] for p in manifest["parts"]] == [20, 15, 15]


def test_crash_mid_run_then_restart_redoes_only_the_partial_part(model_dir, corpus, tmp_path, monkeypatch):
    folder, ids, texts = corpus
    model = _fp32(model_dir)
    out = tmp_path / "out"
    real_write = pq.write_table
    calls = {"n": 0}

    def dying_write(table, where, *a, **k):  # the 4th part dies half-written (after bytes hit the temp file)
        calls["n"] += 1
        real_write(table, where, *a, **k)
        if calls["n"] == 4:
            raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(encode_shards.pq, "write_table", dying_write)
    with pytest.raises(KeyboardInterrupt):
        encode_corpus(model, folder, out, chunk_rows=6, precision="fp32", batch_size=8)
    monkeypatch.setattr(encode_shards.pq, "write_table", real_write)
    finished = sorted(p.name for p in out.glob("part-*.parquet"))
    assert finished == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]  # no partial part
    before = {p: (out / p).stat().st_mtime_ns for p in finished}
    report = encode_corpus(model, folder, out, chunk_rows=6, precision="fp32", batch_size=8)
    assert report.parts_skipped == [0, 1, 2] and report.parts_written[0] == 3 and report.complete
    assert {p: (out / p).stat().st_mtime_ns for p in finished} == before  # finished parts untouched
    got_ids, emb = read_embeddings(out)
    assert [int(i) for i in got_ids] == ids
    fresh_ids, fresh = read_embeddings(_run(model, folder, tmp_path / "fresh", chunk_rows=6))
    assert np.array_equal(emb, fresh)


def _run(model, folder, out, **kw):
    encode_corpus(model, folder, out, precision="fp32", batch_size=8, **kw)
    return out


def test_manual_shards_and_torchrun_ranks_split_the_parts(model_dir, corpus, tmp_path, monkeypatch):
    folder, ids, _ = corpus
    model = _fp32(model_dir)
    whole = read_embeddings(_run(model, folder, tmp_path / "whole", chunk_rows=5))[1]
    out = tmp_path / "split"
    first = encode_corpus(model, folder, out, chunk_rows=5, shard=(0, 2), precision="fp32", batch_size=8)
    assert not first.complete and all(k % 2 == 0 for k in first.parts_written)
    monkeypatch.setenv("WORLD_SIZE", "2")  # shard 1/2, split again across 2 torchrun ranks
    done = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        r = encode_corpus(model, folder, out, chunk_rows=5, shard=(1, 2), precision="fp32", batch_size=8)
        done.append(r.parts_written)
    assert set(done[0]).isdisjoint(done[1]) and all(k % 2 == 1 for k in done[0] + done[1])
    assert r.complete
    assert np.array_equal(read_embeddings(out)[1], whole)


def test_restart_with_other_settings_is_refused(model_dir, corpus, tmp_path):
    folder, _, _ = corpus
    model = _fp32(model_dir)
    _run(model, folder, tmp_path / "out", chunk_rows=5)
    with pytest.raises(EmbtuneError, match="other settings.*chunk_rows.*new --output"):
        _run(model, folder, tmp_path / "out", chunk_rows=7)


def test_cli_corpus_mode_and_errors(model_dir, corpus, tmp_path, capsys):
    folder, ids, _ = corpus
    code = main(["encode", str(model_dir), "--input", str(folder / "*.parquet"), "--text-column", "text",
                 "--output", str(tmp_path / "out"), "--precision", "fp32"])
    assert code == 0 and "wrote 1 parts (20 rows)" in capsys.readouterr().out
    assert [int(i) for i in read_embeddings(tmp_path / "out")[0]] == ids[:20]
    code = main(["encode", str(model_dir), "--input", str(folder), "--text-column", "body",
                 "--output", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert code == 2 and "no column 'body'" in err and len(err.strip().splitlines()) == 1
    code = main(["encode", str(model_dir), "--input", str(folder), "--text-column", "text", "--shard", "2/2",
                 "--output", str(tmp_path / "bad2")])
    assert code == 2 and "--shard '2/2'" in capsys.readouterr().err


def test_blank_text_names_file_and_row(model_dir, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.jsonl").write_text('{"id": 1, "text": "a cat"}\n{"id": 2, "text": "  "}\n')
    with pytest.raises(EmbtuneError, match=r"x\.jsonl.*row 2.*whitespace"):
        encode_corpus(_fp32(model_dir), tmp_path / "in", tmp_path / "out")
