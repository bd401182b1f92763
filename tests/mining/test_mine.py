"""Hard-negative mining: filters on a hand-made embedding table, file round trips, CLI, recipe form, ST parity."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pytest

from embtune.cli import main
from embtune.errors import EmbtuneError
from embtune.mining import MineOptions, mine_hard_negatives
from embtune.mining.search import top_k


class TableModel:
    """encode(texts) -> fixed 2-D unit vectors at the given angles (degrees), so cosines are known."""

    def __init__(self, angles: dict[str, float]) -> None:
        self.angles = angles

    def encode(self, texts, **kwargs):
        rad = np.deg2rad([self.angles[t] for t in texts])
        return np.stack([np.cos(rad), np.sin(rad)], axis=1).astype(np.float32)


# The query "q" sits at 0 degrees; its positive "p" at 10; candidates at 5 (closer than p: a likely false
# negative), 20, 30, 40, 60; "q" itself also occurs in the corpus.
ANGLES = {"q": 0, "p": 10, "d05": 5, "d20": 20, "d30": 30, "d40": 40, "d60": 60, "q2": 90, "p2": 95}
CORPUS = ["d05", "d20", "d30", "d40", "d60", "q"]


def mine(**kw):
    model = TableModel(ANGLES)
    return mine_hard_negatives(["q", "q2"], ["p", "p2"], model, MineOptions(**kw), corpus=CORPUS)


def negatives_of(result, anchor="q"):
    return [r["negative"] for r in result.rows() if r["anchor"] == anchor]


def test_top_candidates_skip_the_positive_and_the_anchor_copy() -> None:
    assert negatives_of(mine(num=3)) == ["d05", "d20", "d30"]
    assert "q" in negatives_of(mine(num=3, skip_anchor_copies=False))


def test_range_min_skips_the_hardest() -> None:
    assert negatives_of(mine(num=2, range_min=1)) == ["d20", "d30"]


def test_margin_and_ratio_drop_candidates_close_to_the_positive() -> None:
    # cos(10) = .9848; margin .05 drops candidates above .9348: d05 (.996) and d20 (.9397)
    assert negatives_of(mine(num=2, margin=0.05)) == ["d30", "d40"]
    # ratio .95 drops candidates above .95 * .9848 = .9356: the same two
    assert negatives_of(mine(num=2, max_score_ratio=0.95)) == ["d30", "d40"]
    assert negatives_of(mine(num=2, max_score=0.9)) == ["d30", "d40"]  # d05, d20 score above .9
    result = mine(num=3, min_score=0.9)  # only d05 (.996), d20 (.94) and d30 (.866 < .9: dropped) remain
    assert negatives_of(result) == ["d05", "d20"]
    assert result.stats["skipped_min_score"] > 0


def test_n_tuple_rows_need_all_negatives_and_scores_come_positive_first() -> None:
    result = mine(num=2, output_format="n-tuple", scores=True, min_score=0.9)
    rows = {r["anchor"]: r for r in result.rows()}
    assert rows["q"]["negative_1"] == "d05" and rows["q"]["negative_2"] == "d20"
    np.testing.assert_allclose(rows["q"]["scores"], [np.cos(np.deg2rad(10)), np.cos(np.deg2rad(5)),
                                                    np.cos(np.deg2rad(20))], rtol=1e-5)
    assert "q2" not in rows  # q2's candidates are all below 0.9


def test_top_k_pads_small_corpora_and_faiss_agrees() -> None:
    rng = np.random.default_rng(0)
    q, c = rng.normal(size=(7, 5)).astype(np.float32), rng.normal(size=(4, 5)).astype(np.float32)
    scores, idx = top_k(q, c, 6, use_faiss=False)
    assert idx.shape == (7, 6) and (idx[:, 4:] == -1).all() and np.isinf(scores[:, 4:]).all()
    np.testing.assert_array_equal(idx[:, :4], np.argsort(-(q @ c.T), axis=1))
    pytest.importorskip("faiss")
    f_scores, f_idx = top_k(q, c, 3, use_faiss=True)
    np.testing.assert_array_equal(f_idx, idx[:, :3])
    np.testing.assert_allclose(f_scores, scores[:, :3], rtol=1e-5)


def test_bad_options_fail_with_the_key() -> None:
    with pytest.raises(EmbtuneError, match="mine.num"):
        MineOptions(num=0)
    with pytest.raises(EmbtuneError, match="max_score_ratio"):
        MineOptions(max_score_ratio=1.5)
    with pytest.raises(EmbtuneError, match="range_max"):
        MineOptions(num=5, range_max=3)


@pytest.fixture(scope="module")
def pairs(recipes_dir) -> Path:
    return recipes_dir / "data" / "pairs_train.jsonl"  # generated catalogue pairs (recipes/data/generate.py)


def test_cli_writes_triplets_and_fails_in_one_line(tiny_bert_dir, pairs, tmp_path, capsys) -> None:
    out = tmp_path / "triplets.jsonl"
    assert main(["mine", str(tiny_bert_dir), "--data", str(pairs), "--output", str(out), "--num", "2",
                 "--max-rows", "60"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert set(rows[0]) == {"anchor", "positive", "negative"}
    assert all(r["negative"] != r["positive"] for r in rows)
    assert "rows ->" in capsys.readouterr().out
    csv = tmp_path / "tuples.csv"
    assert main(["mine", str(tiny_bert_dir), "--data", str(pairs), "--output", str(csv), "--format", "n-tuple",
                 "--scores", "--max-rows", "30"]) == 0
    assert csv.read_text().splitlines()[0].split(",")[:5] == ['"anchor"', '"positive"', '"negative_1"',
                                                              '"negative_2"', '"negative_3"']
    assert main(["mine", str(tiny_bert_dir), "--data", str(pairs), "--output", str(out), "--anchor", "query"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no column 'query'" in err[0]


def test_recipe_form_mines_once_and_trains(tiny_bert_dir, pairs, tmp_path) -> None:
    from embtune.training.loop import train
    from embtune.training.recipe import config_from_dict

    cfg = {
        "model": {"name": str(tiny_bert_dir), "max_seq_length": 16},
        "datasets": [{"name": "mined", "path": str(pairs), "max_rows": 64,
                      "columns": {"anchor": "anchor", "positive": "positive"},
                      "negatives": {"mine": {"num": 2, "output_format": "n-tuple"}},
                      "loss": {"name": "mnrl"}}],
        "args": {"output_dir": str(tmp_path / "run"), "max_steps": 2, "per_device_train_batch_size": 8,
                 "save_strategy": "no", "bf16": False, "disable_tqdm": True, "cache_dir": str(tmp_path / "cache")},
    }
    train(config_from_dict(cfg))
    mined = list((tmp_path / "cache" / "mined").glob("*.jsonl"))
    assert len(mined) == 1
    first = json.loads(mined[0].read_text().splitlines()[0])
    assert set(first) == {"anchor", "positive", "negative_1", "negative_2"}
    stamp = mined[0].stat().st_mtime_ns
    cfg["args"]["output_dir"] = str(tmp_path / "run2")
    train(config_from_dict(cfg))
    assert mined[0].stat().st_mtime_ns == stamp
    cfg["datasets"][0]["columns"]["negatives"] = ["negative"]
    with pytest.raises(EmbtuneError, match="columns.negatives must be empty"):
        config_from_dict(cfg)


@pytest.mark.slow
@pytest.mark.parametrize(("ours", "theirs"), [
    ({}, {}),
    ({"margin": 0.05}, {"absolute_margin": 0.05}),
    ({"max_score_ratio": 0.95, "range_min": 1}, {"relative_margin": 0.05, "range_min": 1}),
    ({"output_format": "n-tuple", "num": 2, "max_score": 0.8, "scores": True},
     {"output_format": "n-tuple", "num_negatives": 2, "max_score": 0.8, "output_scores": True}),
])
def test_negatives_equal_sentence_transformers(minilm_dir, pairs, ours, theirs) -> None:
    """>= 99 % of rows identical to sentence-transformers' mine_hard_negatives (100 % here)."""
    st_util = pytest.importorskip("sentence_transformers.util")
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer

    from embtune import EmbeddingModel

    rows = [json.loads(line) for line in pairs.read_text().splitlines()][:150]
    anchors, positives = [r["anchor"] for r in rows], [r["positive"] for r in rows]
    result = mine_hard_negatives(anchors, positives, EmbeddingModel.load(minilm_dir), MineOptions(**ours))
    st = st_util.mine_hard_negatives(Dataset.from_dict({"anchor": anchors, "positive": positives}),
                                     SentenceTransformer(str(minilm_dir), device="cpu"), verbose=False, **theirs)
    text_columns = [c for c in result.columns if c != "scores"]
    a = collections.Counter(tuple(r[c] for c in text_columns) for r in result.rows())
    b = collections.Counter(tuple(r[c] for c in text_columns) for r in st)
    assert len(st) > 0 and sum((a & b).values()) >= 0.99 * max(len(st), result.num_rows)
    if "scores" in result.columns:
        np.testing.assert_allclose(np.array(result.columns["scores"]), np.array(st["scores"]), atol=1e-4)


def test_corpus_files_and_output_formats_round_trip(tmp_path) -> None:
    from embtune.mining.files import read_corpus, write_rows

    (tmp_path / "docs.txt").write_text("d20\n\nd30\nd05\n", encoding="utf-8")
    corpus = read_corpus(tmp_path / "docs.txt")
    assert corpus == ["d20", "d30", "d05"]
    result = mine_hard_negatives(["q"], ["p"], TableModel(ANGLES), MineOptions(num=2, scores=True), corpus=corpus)
    assert [r["negative"] for r in result.rows()] == ["d05", "d20"]
    import pyarrow.parquet as pq

    table = pq.read_table(write_rows(tmp_path / "out.parquet", result.columns))
    assert table.column_names == ["anchor", "positive", "negative", "scores"] and table.num_rows == 2
    with pytest.raises(EmbtuneError, match="cannot write .txt"):
        write_rows(tmp_path / "out.txt", result.columns)
