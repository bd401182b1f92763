"""The data report: each check finds what it names, thresholds stop training, the card and CLI show it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embtune.cli import main
from embtune.errors import EmbtuneError
from embtune.report.duplicates import leaked, minhash_available, near_duplicate_rows, normalize
from embtune.report.text_checks import check_texts, repair
from embtune.training.loop import train
from embtune.training.recipe import config_from_dict

LONG = " ".join(["the cat and the dog go to the city by bus"] * 8)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def messy(tmp_path: Path) -> tuple[Path, Path]:
    words = "cat dog bird fish car bus train plane house road city river lake sea sun moon star sky tree book".split()
    rows = [{"anchor": f"the {w} is {c} today", "positive": f"a {c} {w} was seen near the {words[(i + 3) % 20]}"}
            for i, (w, c) in enumerate((w, c) for w in words for c in ("red", "blue"))]  # 40 clean rows
    rows[1] = dict(rows[0])                                             # exact duplicate (row 2)
    rows[2] = {"anchor": rows[0]["anchor"].upper() + "!", "positive": rows[0]["positive"]}  # normalized duplicate
    rows[3] = {"anchor": "the hÃ¥nden is red", "positive": "a red hand"}            # mojibake (row 4)
    rows[4] = {"anchor": "ok", "positive": "a short anchor"}                        # very short (row 5)
    rows[5] = {"anchor": "same text here", "positive": "same text here"}            # anchor == positive (row 6)
    rows[6] = {"anchor": "bell\x07inside", "positive": "a bell"}  # control character (row 7; NUL is refused at load)
    rows[7] = {"anchor": LONG, "positive": "a long anchor"}                         # truncated (row 8)
    rows[8] = {"anchor": "the cat sat", "positive": rows[10]["positive"]}           # a positive used twice
    train_file = write_jsonl(tmp_path / "train.jsonl", rows)
    evaluation = [{"anchor": rows[20]["anchor"], "positive": rows[20]["positive"]},   # leaked row
                  {"anchor": "a new question about fish", "positive": "an unseen answer about the sea"}]
    return train_file, write_jsonl(tmp_path / "eval.jsonl", evaluation)


def config(model: Path, train_file: Path, eval_file: Path, out: Path, **checks) -> dict:
    return {
        "model": {"name": str(model), "max_seq_length": 24},
        "datasets": [{"name": "messy", "path": str(train_file), "columns": {"anchor": "anchor", "positive": "positive"},
                      "loss": {"name": "mnrl"}, "eval_path": str(eval_file)}],
        "args": {"output_dir": str(out), "max_steps": 2, "per_device_train_batch_size": 8, "save_strategy": "no",
                 "bf16": False, "disable_tqdm": True},
        "checks": checks,
    }


def findings(report: dict, split: str = "train") -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for d in report["datasets"]:
        if d["split"] == split:
            for f in d["findings"]:
                out.setdefault(f["check"], []).append(f)
    return out


def test_train_prints_and_writes_the_report_and_the_card_shows_it(tiny_bert_dir, messy, tmp_path, capsys):
    out = tmp_path / "run"
    train(config_from_dict(config(tiny_bert_dir, *messy, out)))
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].startswith("data report: 2 file(s) checked, 0 error(s)")
    report = json.loads((out / "data_report.json").read_text())
    found = findings(report)
    assert found["duplicates"][0]["count"] == 2 and found["duplicates"][0]["rows"] == [2, 3]
    assert found["mojibake"][0]["rows"] == [4]
    assert found["short"][0]["rows"] == [5]
    assert found["anchor_equals_positive"][0]["rows"] == [6]
    assert found["control_char"][0]["rows"] == [7]
    truncation = {f["column"]: f for f in found["truncation"]}
    assert truncation["anchor"]["rows"] == [8] and truncation["anchor"]["details"]["tokens_lost_share"] > 0
    assert found["in_batch_false_negatives"][0]["severity"] == "warning"  # default sampler keeps copies
    leak = findings(report, "eval")["leakage"]
    assert {f["column"]: f["count"] for f in leak} == {"anchor": 1, "positive": 1}
    card = (out / "README.md").read_text()
    assert "<summary>Data report" in card and "leakage: 1 of 2 distinct" in card


def test_thresholds_stop_training_with_the_reason(tiny_bert_dir, messy, tmp_path):
    with pytest.raises(EmbtuneError, match="leakage"):
        train(config_from_dict(config(tiny_bert_dir, *messy, tmp_path / "a", stop_on_leakage=True)))
    with pytest.raises(EmbtuneError, match="max_duplicate_share"):
        train(config_from_dict(config(tiny_bert_dir, *messy, tmp_path / "b", max_duplicate_share=0.01)))
    assert (tmp_path / "b" / "data_report.json").is_file()


def test_meaningless_data_always_stops(tiny_bert_dir, tmp_path):
    rows = [{"anchor": f"text {w}", "positive": f"text {w}", "score": 0.5} for w in "abcdefghij"]
    data = write_jsonl(tmp_path / "same.jsonl", rows)
    cfg = config(tiny_bert_dir, data, data, tmp_path / "run")
    del cfg["datasets"][0]["eval_path"]
    with pytest.raises(EmbtuneError, match="anchor == positive"):
        train(config_from_dict(cfg))
    rows = [{"anchor": f"text {w}", "positive": f"other {w}", "score": 0.5} for w in "abcdefghij"]
    cfg["datasets"][0].update(path=str(write_jsonl(tmp_path / "const.jsonl", rows)), loss={"name": "cosent"},
                              columns={"anchor": "anchor", "positive": "positive", "label": "score"})
    with pytest.raises(EmbtuneError, match="constant label"):
        train(config_from_dict(cfg))
    cfg["checks"] = {"enabled": False}
    train(config_from_dict(cfg))  # the user can switch the report off


def test_check_data_cli_and_repair(tiny_bert_dir, messy, tmp_path, capsys):
    import yaml

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(config(tiny_bert_dir, *messy, tmp_path / "run")))
    assert main(["check-data", str(recipe), "--output", str(tmp_path / "r.json"), "--repair", str(tmp_path / "fixed")]) == 0
    out = capsys.readouterr().out
    assert "warning" in out and "mojibake" in out and "repaired copy" in out
    fixed = (tmp_path / "fixed" / "train.jsonl").read_text(encoding="utf-8")
    assert "the hånden is red" in fixed and "\x07" not in fixed
    assert json.loads((tmp_path / "r.json").read_text())["datasets"][0]["rows"] == 40
    assert main(["check-data", str(tmp_path / "missing.yaml")]) == 2


def test_text_checks_and_normalization():
    found = check_texts(["hÃ¥nden", "h√•nden", "donâ€™t", "Zürich café", "Ørsted", "a\ufffdb", "c\x07d", " "])
    assert found.mojibake == [0, 1, 2] and found.replacement == [5] and found.control == [6] and found.empty == [7]
    assert repair("h√•nden") == "hånden" and repair("donâ€™t") == "don’t"
    assert normalize("  The  Cat!  ") == normalize("the cat")


@pytest.mark.skipif(not minhash_available(), reason="datasketch not installed")
def test_near_duplicates_and_near_leakage():
    base = "the quick brown fox jumps over the lazy dog near the river bank today"
    texts = [normalize(t) for t in [base, base + " again", "something else entirely different here now ok"]]
    assert near_duplicate_rows(texts, threshold=0.7) == [1]
    assert leaked([texts[1]], [texts[0]], threshold=0.7) == (0, 1)
    assert leaked([texts[2]], [texts[0]], threshold=0.7) == (0, 0)


def test_norquad_passages_in_both_splits_are_flagged(shared_data):
    from embtune.evaluation.retrieval_data import load_beir

    norquad = shared_data / "norquad"
    train = [json.loads(line)["context"] for line in (norquad / "qa_validation.jsonl").read_text().splitlines()]
    beir = load_beir(norquad / "retrieval", split="test")
    relevant = {d for docs in beir.relevant_docs.values() for d in docs}
    docs = [beir.corpus[d] for d in relevant]
    exact, near = leaked([normalize(t) for t in docs], [normalize(t) for t in train], threshold=0.9)
    assert exact == 71  # the passages of both splits
    if near is not None:  # one more: another version of the same article (word 3-gram Jaccard 0.97)
        assert near == 1


def test_max_rows_renders_only_the_first_rows(tiny_bert_dir, messy, tmp_path):
    """checks.max_rows bounds what the report turns into Python strings (1M-row datasets stay Arrow)."""
    from embtune.teachers import targets

    seen = []
    real = targets.render_column

    def spy(values, **kwargs):
        seen.append(len(values))
        return real(values, **kwargs)

    import embtune.teachers.targets as module

    module.render_column = spy
    try:
        train(config_from_dict(config(tiny_bert_dir, *messy, tmp_path / "run", max_rows=5)))
    finally:
        module.render_column = real
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert seen and max(seen) == 5  # the 40-row train split: 5 rows rendered (the 2-row eval split: 2)
    assert "duplicates" in findings(report)  # rows 1-3 are copies: still found within the first 5
