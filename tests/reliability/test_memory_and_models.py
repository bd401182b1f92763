"""Issue 10, items 4-5: memory stays flat in the length of a text; model folders that lie are refused.

4. A text longer than the model reads is cut to ``char_limit(max_seq_length)`` characters before the
   tokenizer sees it, encode input is streamed, and a row longer than pyarrow's parse block is re-read
   with a larger block (up to ``MAX_LINE_BYTES``; beyond it one line names the row). Peak RSS is measured in
   a fresh process, after a warm-up run on a small file, so only the growth caused by the long line counts.
5. config.json disagreeing with model.safetensors (layers, hidden size), unexpected or missing weights, a
   Dense layer whose in_features does not match: one line naming the folder and keys, and nothing else on
   stderr (no transformers load report).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_helpers import SRC, assert_one_line_error, pair_rows

from embtune.cli import main
from embtune.errors import EmbtuneError

LONG = 4 << 20  # a 4 MB line: ~1 GB of tokenizer memory before the cap, a few MB after
_GROWTH_LIMIT_MB = 150

_MEASURE = r"""
import json, resource, sys, warnings
warnings.simplefilter("ignore")
from pathlib import Path
sys.path.insert(0, {src!r})
from embtune.cli import main
from embtune.data.columns import ColumnRoles
from embtune.data.prepare import DatasetSpec, prepare_dataset
from embtune.losses import build_loss
from embtune.models.embedding_model import EmbeddingModel
kind, model, small, big, tmp = sys.argv[1:6]
def run(path, out):
    if kind == "encode":
        assert main(["encode", model, "--input", path, "--output", out]) == 0
    else:
        m = EmbeddingModel.load(model)
        spec = DatasetSpec(path=Path(path), columns=ColumnRoles("anchor", "positive"), name=Path(out).stem)
        prepare_dataset(spec, m.tokenizer, m.max_seq_length, build_loss("mnrl"), cache_dir=Path(tmp) / out[-6:])
run(small, tmp + "/small.npy")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
run(big, tmp + "/big.npy")
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"growth_mb": (after - before) / 1024}}))
"""


def _growth_mb(kind: str, model: Path, small: Path, big: Path, tmp: Path) -> float:
    code = _MEASURE.format(src=str(SRC))
    proc = subprocess.run([sys.executable, "-c", code, kind, str(model), str(small), str(big), str(tmp)],
                          capture_output=True, text=True, timeout=300, env={"HF_HUB_OFFLINE": "1", "PATH": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])["growth_mb"]


@pytest.mark.slow
def test_encode_memory_is_flat_in_the_length_of_a_line(model_dir, tmp_path):
    small, big = tmp_path / "small.txt", tmp_path / "big.txt"
    small.write_text("the cat\nthe dog runs\n" * 10)
    big.write_text("the cat\n" + "dog " * (LONG // 4) + "\nthe sun\n")
    growth = _growth_mb("encode", model_dir, small, big, tmp_path)
    assert growth < _GROWTH_LIMIT_MB, f"a {LONG >> 20} MB line grew peak RSS by {growth:.0f} MB"


@pytest.mark.slow
def test_training_data_with_a_line_longer_than_a_parse_block_is_prepared_in_bounded_memory(model_dir, tmp_path):
    def rows(n: int, long_at: int | None) -> str:
        out = []
        for i in range(n):
            anchor = "cat " * (LONG // 4) if i == long_at else f"the cat {i}"
            out.append(json.dumps({"anchor": anchor, "positive": f"a dog {i}"}))
        return "\n".join(out) + "\n"

    small, big = tmp_path / "small.jsonl", tmp_path / "big.jsonl"
    small.write_text(rows(8, None))
    big.write_text(rows(8, 3))
    growth = _growth_mb("prepare", model_dir, small, big, tmp_path)
    assert growth < _GROWTH_LIMIT_MB, f"a {LONG >> 20} MB JSONL line grew peak RSS by {growth:.0f} MB"


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_row_longer_than_the_limit_is_one_line_naming_it(tmp_path, monkeypatch, suffix):
    from embtune.data import long_lines
    from embtune.data.sources import load_table

    monkeypatch.setattr(long_lines, "MAX_LINE_BYTES", 1 << 20)
    path = tmp_path / f"data{suffix}"
    if suffix == ".jsonl":
        lines = [json.dumps({"text": "a"}), json.dumps({"text": "b"}), json.dumps({"text": "x" * (3 << 20)})]
    else:
        lines = ["text", "a", "b" * (3 << 20)]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(EmbtuneError, match=r"line 3 is 3 MB long; .* shorten that text"):
        load_table(path)


def test_the_tokenizer_never_sees_more_than_the_character_cap(model_dir):
    from embtune.models.embedding_model import EmbeddingModel
    from embtune.utils.text_cap import char_limit

    model = EmbeddingModel.load(model_dir)
    seen: list[int] = []
    backend = model.transformer._backend_tokenizer()
    real = backend.encode_batch

    class Spy:
        def __getattr__(self, name):
            return getattr(backend, name)

        def encode_batch(self, texts, **kw):
            seen.extend(len(t) for t in texts)
            return real(texts, **kw)

    model.transformer._backend = (Spy(), model.max_seq_length)
    model.encode(["the cat " * 100_000, "a dog"])
    assert max(seen) == char_limit(model.max_seq_length)


# --- 5. model folders that lie ----------------------------------------------------------------------------


def _lying(model_dir: Path, tmp: Path, **changes) -> Path:
    copy = tmp / "model"
    shutil.copytree(model_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, **changes}))
    return copy


LIES = [
    ({"num_hidden_layers": 3}, ("model/config.json", "missing", "layer 2", "encoder.layer.2.")),
    ({"num_hidden_layers": 1}, ("model/config.json", "not used", "encoder.layer.1.")),
    ({"hidden_size": 64}, ("model/config.json", "another shape", "(32,)", "(64,)")),
    ({"intermediate_size": 48}, ("model/config.json", "another shape", "intermediate_size=48")),
]


@pytest.mark.parametrize(("changes", "fragments"), LIES, ids=[str(c[0]) for c in LIES])
def test_a_config_that_disagrees_with_the_weights_is_one_line_and_no_load_report(model_dir, tmp_path, changes,
                                                                                 fragments, capfd):
    model = _lying(model_dir, tmp_path, **changes)
    code = main(["info", str(model)])
    err = capfd.readouterr().err  # file-descriptor level: transformers' own report would show here
    assert_one_line_error(code, err, *fragments)


def test_extra_weights_in_the_file_are_refused(model_dir, tmp_path, capsys):
    import torch
    from safetensors.torch import load_file, save_file

    model = _lying(model_dir, tmp_path)
    state = load_file(str(model / "model.safetensors"))
    state["encoder.layer.7.output.dense.weight"] = torch.zeros(2, 2)
    save_file(state, str(model / "model.safetensors"))
    code = main(["encode", str(model), "--input", str(_texts(tmp_path)), "--output", str(tmp_path / "e.npy")])
    assert_one_line_error(code, capsys.readouterr().err, "not used", "encoder.layer.7.output.dense.weight")
    assert not (tmp_path / "e.npy").exists()


def test_a_good_folder_loads_without_any_stderr(model_dir, capfd):
    assert main(["info", str(model_dir)]) == 0
    assert capfd.readouterr().err == ""


def test_a_dense_layer_that_does_not_fit_the_encoder_is_refused_at_load(tiny_bert_dir, tmp_path, capsys):
    from embtune.models.dense import Dense
    from embtune.models.embedding_model import EmbeddingModel

    model = EmbeddingModel.from_transformer(tiny_bert_dir)
    folder = model.save(tmp_path / "dense-model")
    dense_dir = folder / "2_Dense"
    dense_dir.mkdir(exist_ok=True)
    from safetensors.torch import save_file

    wrong = Dense(16, 8)  # in_features 16, but the encoder's hidden size is 32
    save_file({k: v.contiguous() for k, v in wrong.state_dict().items()}, str(dense_dir / "model.safetensors"))
    (dense_dir / "config.json").write_text(json.dumps(wrong.get_config()))
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": len(modules), "name": str(len(modules)), "path": "2_Dense",
                    "type": "sentence_transformers.models.Dense"})
    (folder / "modules.json").write_text(json.dumps(modules))
    code = main(["info", str(folder)])
    assert_one_line_error(code, capsys.readouterr().err, "dense-model", "in_features is 16", "outputs 32")


def _texts(tmp: Path) -> Path:
    path = tmp / "in.txt"
    path.write_text(pair_rows(3).replace(",", "\n"))
    return path
