"""load_table: every format loads; every bad input is a one-line EmbtuneError naming the file and place."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embtune.data.sources import file_fingerprint, load_table
from embtune.errors import EmbtuneError

ROWS = [
    {"anchor": "the cat", "positive": "a dog", "score": 0.5},
    {"anchor": "red, car", "positive": "bus", "score": 1.0},
]


def _write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _check_rows(ds: datasets.Dataset) -> None:
    assert isinstance(ds, datasets.Dataset)
    assert ds.num_rows == 2
    assert ds["anchor"] == ["the cat", "red, car"]
    assert ds["score"] == [0.5, 1.0]


@pytest.mark.parametrize("cached", [False, True])
def test_every_format_loads(tmp_path: Path, cached: bool) -> None:
    cache = tmp_path / "cache" if cached else None
    csv = _write(tmp_path / "d.csv", 'anchor,positive,score\nthe cat,a dog,0.5\n"red, car",bus,1.0\n')
    tsv = _write(tmp_path / "d.tsv", "anchor\tpositive\tscore\nthe cat\ta dog\t0.5\nred, car\tbus\t1.0\n")
    lines = "".join(json.dumps(r) + "\n" for r in ROWS)
    jsonl = _write(tmp_path / "d.jsonl", lines)
    json_lines = _write(tmp_path / "d.json", lines)
    parquet = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), parquet)
    saved = tmp_path / "saved"
    datasets.Dataset.from_list(ROWS).save_to_disk(str(saved))
    for path in (csv, tsv, jsonl, json_lines, parquet, saved):
        _check_rows(load_table(path, cache_dir=cache))
    _check_rows(load_table(tmp_path / "d.csv", "csv", cache_dir=cache))


def test_saved_dataset_dict_needs_a_split(tmp_path: Path) -> None:
    folder = tmp_path / "dd"
    ds = datasets.Dataset.from_list(ROWS)
    datasets.DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(str(folder))
    assert load_table(f"{folder}:train").num_rows == 2
    assert load_table(folder, split="test").num_rows == 1
    with pytest.raises(EmbtuneError, match=r"several splits \(train, test\).*:<split>"):
        load_table(folder)
    with pytest.raises(EmbtuneError, match="no split 'dev'; available splits: train, test"):
        load_table(f"{folder}:dev")


def test_jsonl_dict_records_become_struct_columns(tmp_path: Path) -> None:
    record = {"page_name": "Cats", "section_title": "Food", "text": "Cats eat fish.", "url": "u"}
    path = _write(
        tmp_path / "r.jsonl", json.dumps({"query": "what do cats eat", "doc": record, "score": 1.0}) + "\n"
    )
    ds = load_table(path)
    assert ds.features["doc"]["page_name"] == datasets.Value("string")
    assert ds[0]["doc"] == record


def test_cache_is_reused_and_refreshed_when_the_file_changes(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", "a,b\nx,y\n")
    cache = tmp_path / "cache"
    first = load_table(path, cache_dir=cache)
    files = list((cache / "tables").iterdir())
    assert len(files) == 1 and first.cache_files[0]["filename"] == str(files[0])
    stamp = files[0].stat().st_mtime_ns
    load_table(path, cache_dir=cache)
    assert files[0].stat().st_mtime_ns == stamp  # not rewritten
    old = file_fingerprint(path)
    _write(path, "a,b\nx,y\nz,w\n")
    assert file_fingerprint(path) != old
    assert load_table(path, cache_dir=cache).num_rows == 2
    assert len(list((cache / "tables").iterdir())) == 2


def test_csv_column_types_widen_after_the_first_block(tmp_path: Path) -> None:
    # > 1 MB so pyarrow infers types from the first block only, then meets a float and a word
    body = "".join(f"{i},{i}\n" for i in range(150_000))
    path = _write(tmp_path / "big.csv", "n,t\n" + body + "2.5,word\n")
    ds = load_table(path, cache_dir=tmp_path / "cache")
    assert ds.num_rows == 150_001
    assert ds.features["n"] == datasets.Value("float64")
    assert ds.features["t"] == datasets.Value("string")
    assert ds[-1] == {"n": 2.5, "t": "word"}


BAD_INPUTS = [
    ("empty.csv", b"", "empty.csv: file is empty"),
    ("blank.jsonl", b"\n  \n", "blank.jsonl: file is empty"),
    ("header.csv", b"anchor,positive\n", "header.csv: has a header but no data rows"),
    (
        "tabs.csv",
        b"anchor\tpositive\nx\ty\n",
        r"tabs.csv: .*looks tab-separated; use a .tsv extension or set format: tsv",
    ),
    ("semi.csv", b"anchor;positive\nx;y\n", "semi.csv: .*looks semicolon-separated"),
    ("commas.tsv", b"anchor,positive\nx,y\n", r"commas.tsv: .*looks comma-separated; use a .csv extension"),
    (
        "latin1.csv",
        b"a,b\nok,fine\ncaf\xe9,x\n",
        r"latin1.csv: line 3 \(byte offset 15\) is not valid UTF-8.*re-save the file as UTF-8",
    ),
    (
        "latin1.jsonl",
        b'{"a": "ok"}\n{"a": "caf\xe9"}\n',
        r"latin1.jsonl: line 2 \(byte offset 22\) is not valid UTF-8",
    ),
    (
        "short.csv",
        b"a,b,c\n1,2,3\n4,5\n",
        r"short.csv: data row 2 \(1-based\) has 2 fields but the header has 3",
    ),
    (
        "long.tsv",
        b"a\tb\n1\t2\n3\t4\n5\t6\t7\n",
        r"long.tsv: data row 3 \(1-based\) has 3 fields but the header has 2",
    ),
    ("dupe.csv", b"a,a\n1,2\n", "dupe.csv: the header repeats the column name 'a'"),
    ("array.json", b'[{"a": 1}]', "array.json: holds a JSON array; write one JSON object per line"),
    ("broken.jsonl", b'{"a": "x"}\n{"a": \n', "broken.jsonl: line 2 is not valid JSON"),
    ("scalar.jsonl", b'{"a": "x"}\n"just text"\n', "scalar.jsonl: line 2 holds a JSON str, not an object"),
    ("mixed.jsonl", b'{"a": 1}\n{"a": "x"}\n', "mixed.jsonl: field 'a' holds both number and string values"),
    ("fake.parquet", b"PAR1 not really", "fake.parquet: cannot read as Parquet"),
    ("notes.txt", b"a,b\n", r"notes.txt: cannot tell the format from the extension '.txt'"),
]


@pytest.mark.parametrize(("name", "data", "message"), BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
@pytest.mark.parametrize("cached", [False, True])
def test_bad_input_is_a_clear_error(
    tmp_path: Path, name: str, data: bytes, message: str, cached: bool
) -> None:
    path = _write(tmp_path / name, data)
    with pytest.raises(EmbtuneError, match=message) as info:
        load_table(path, cache_dir=tmp_path / "cache" if cached else None)
    assert "\n" not in str(info.value)
    if cached and (tmp_path / "cache" / "tables").exists():  # no half-written cache entry left behind
        assert list((tmp_path / "cache" / "tables").iterdir()) == []


def test_missing_file_and_bad_folders(tmp_path: Path) -> None:
    with pytest.raises(EmbtuneError, match=r"nope.csv: file not found"):
        load_table(tmp_path / "nope.csv")
    (tmp_path / "plain").mkdir()
    with pytest.raises(EmbtuneError, match=r"plain: not a folder saved with datasets' save_to_disk"):
        load_table(tmp_path / "plain")
    with pytest.raises(EmbtuneError, match="unknown format 'xlsx'"):
        load_table(_write(tmp_path / "d.csv", "a\nb\n"), "xlsx")
    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "single"))
    with pytest.raises(EmbtuneError, match="single Dataset without splits"):
        load_table(f"{tmp_path / 'single'}:train")


_TEXTY = st.text(alphabet=list('ab1.,;\t\n\r "{}[]:\\-e') + ["\x00", "\xe9", "\u2028"], max_size=200).map(
    str.encode
)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=300), _TEXTY), suffix=st.sampled_from([".csv", ".jsonl", ".tsv"]))
def test_fuzz_arbitrary_bytes_load_or_raise_embtune_error(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz{suffix}"
        path.write_bytes(data)
        for cache in (None, Path(tmp) / "cache"):
            try:
                result = load_table(path, cache_dir=cache)
            except EmbtuneError:
                continue
            assert isinstance(result, datasets.Dataset) and result.num_rows > 0
