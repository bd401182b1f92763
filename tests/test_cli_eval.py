"""`embtune eval`: metrics as a table or JSON equal to `embtune.evaluate`; bad input is one line and exit code 2."""

from __future__ import annotations

import json

import pytest

from embtune import evaluate
from embtune.cli import main
from embtune.models.embedding_model import EmbeddingModel

STS = (
    "sentence1,sentence2,score,genre\n"
    "the cat is on the road,a cat on a road,4.5,x\n"
    "a dog runs in the city,the moon is cold,0.5,x\n"
    "the sun is hot,the sun is hot today,4.8,y\n"
    "a man reads a book,a woman eats food,1.0,y\n"
)


@pytest.fixture(scope="module")
def model_dir(tiny_bert_dir, tmp_path_factory):
    return EmbeddingModel.from_transformer(tiny_bert_dir, normalize=True).save(tmp_path_factory.mktemp("cli_eval") / "m")


@pytest.fixture
def sts_csv(tmp_path):
    path = tmp_path / "sts.csv"
    path.write_text(STS, encoding="utf-8")
    return path


def test_eval_json_equals_the_python_api(model_dir, sts_csv, capsys):
    code = main(["eval", str(model_dir), "--data", str(sts_csv), "--evaluator", "sts", "--name", "dev", "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == evaluate(model_dir, sts_csv, evaluator="sts", name="dev")
    assert "dev_spearman_cosine" in printed


def test_eval_table_with_mapped_columns_and_max_rows(model_dir, tmp_path, capsys):
    path = tmp_path / "t.tsv"
    path.write_text("q\tpos\tneg\nthe cat\ta cat\tthe sea\na dog\tthe dog\ta car\nthe sun\tsun\tmoon\n", encoding="utf-8")
    argv = ["eval", str(model_dir), "--data", str(path), "--evaluator", "triplet", "--max-rows", "2",
            "--columns", "anchors=q", "positives=pos", "negatives=neg", "--precision", "fp32", "--batch-size", "2"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = evaluate(model_dir, path, "triplet", columns={"anchors": "q", "positives": "pos", "negatives": "neg"},
                        max_rows=2, precision="fp32", batch_size=2)
    assert [line.split()[0] for line in lines] == list(expected)
    assert lines[-1].split()[1] == f"{expected['max_accuracy']:.4f}"


def test_eval_beir_folder(model_dir, tmp_path, capsys):
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        '{"_id": "d1", "title": "cat", "text": "the cat"}\n{"_id": "d2", "title": "", "text": "a car"}\n'
    )
    (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "a cat"}\n{"_id": "q2", "text": "the car"}\n')
    (folder / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    argv = ["eval", str(model_dir), "--data", str(folder), "--evaluator", "retrieval", "--split", "dev", "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["cosine_recall@10"] == 1.0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--data", "MISSING"], "file not found"),
        (["--columns", "scores=similarity"], "no column 'similarity' for the sts evaluator's 'scores'; available "
                                             "columns: sentence1, sentence2, score, genre"),
        (["--columns", "scores"], "write input=column"),
        (["--columns", "score=similarity"], "no input 'score' (did you mean 'scores'?)"),
        (["--evaluator", "tripplet"], "unknown evaluator 'tripplet' (did you mean 'triplet'?)"),
        (["--model", "NOT_A_MODEL"], "not a model folder"),
    ],
)
def test_eval_bad_input_is_one_line(model_dir, sts_csv, tmp_path, capsys, extra, message):
    opts = {"--data": str(sts_csv), "--evaluator": "sts", "--model": str(model_dir)}
    rest: list[str] = []
    for i in range(0, len(extra), 2):
        if extra[i] in opts:
            opts[extra[i]] = extra[i + 1]
        else:
            rest += extra[i : i + 2]
    if opts["--data"] == "MISSING":
        opts["--data"] = str(tmp_path / "missing.csv")
    if opts["--model"] == "NOT_A_MODEL":
        (tmp_path / "folder").mkdir()
        opts["--model"] = str(tmp_path / "folder")
    code = main(["eval", opts["--model"], "--data", opts["--data"], "--evaluator", opts["--evaluator"], *rest])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert message in captured.err and captured.err.count("\n") == 1 and "Traceback" not in captured.err


@pytest.mark.slow
def test_stsb_test_spearman_of_the_bundled_model(minilm_dir, shared_data, capsys):
    path = shared_data / "stsb" / "test.csv"
    if not path.is_file():
        pytest.skip(f"no STS-B test file at {path}")
    argv = ["eval", "bundled:all-MiniLM-L6-v2", "--data", str(path), "--evaluator", "sts", "--precision", "fp32",
            "--json"]
    assert main(argv) == 0
    spearman = json.loads(capsys.readouterr().out)["spearman_cosine"]
    assert abs(spearman - 0.8203) <= 0.001, spearman  # MTEB's STSBenchmark test score for all-MiniLM-L6-v2
