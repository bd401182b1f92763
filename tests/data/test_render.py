"""Rendering: strings pass through, dict records go through templates (or the default), prompts prefix."""

from __future__ import annotations

import pyarrow as pa
import pytest

from embtune.data.render import check_per_role, for_role, render_column, template_keys
from embtune.errors import EmbtuneError

RECORDS = pa.array(
    [
        {"page_name": "Cats", "section_title": "Food", "text": "Cats eat fish.", "url": "u1", "rank": 1},
        {"page_name": "Dogs", "section_title": None, "text": "Dogs bark.", "url": "u2", "rank": 2},
    ]
)


def test_strings_pass_through_and_prompts_prefix() -> None:
    values = pa.array(["the cat", "a dog"])
    assert render_column(values, column="q") == ["the cat", "a dog"]
    assert render_column(values, column="q", prompt="query: ") == ["query: the cat", "query: a dog"]


def test_prompt_and_template_per_role() -> None:
    prompts = {"anchor": "query: ", "positive": "passage: ", "negative": "passage: ", "negative_2": "hard: "}
    assert for_role(prompts, "anchor") == "query: "
    assert for_role(prompts, "negative_1") == "passage: "
    assert for_role(prompts, "negative_2") == "hard: "
    assert for_role("all: ", "positive") == "all: "
    assert for_role({"anchor": "q: "}, "positive") is None
    check_per_role(prompts, ["anchor", "positive", "negative_1", "negative_2"], "prompt")
    with pytest.raises(
        EmbtuneError, match="prompt: unknown role 'anchr'; this dataset has roles anchor, positive"
    ):
        check_per_role({"anchr": "q: "}, ["anchor", "positive"], "prompt")


def test_dict_records_render_through_the_template() -> None:
    texts = render_column(RECORDS.slice(0, 1), column="doc", template="{page_name} - {section_title}: {text}")
    assert texts == ["Cats - Food: Cats eat fish."]
    with_prompt = render_column(RECORDS, column="doc", template="{page_name}: {text}", prompt="passage: ")
    assert with_prompt == ["passage: Cats: Cats eat fish.", "passage: Dogs: Dogs bark."]


def test_default_rendering_is_key_value_lines_skipping_nulls() -> None:
    texts = render_column(RECORDS, column="doc")
    assert texts[0] == "page_name: Cats\nsection_title: Food\ntext: Cats eat fish.\nurl: u1\nrank: 1"
    assert texts[1] == "page_name: Dogs\ntext: Dogs bark.\nurl: u2\nrank: 2"


def test_template_key_missing_from_records_names_row_column_and_keys() -> None:
    with pytest.raises(EmbtuneError) as info:
        render_column(RECORDS, column="doc", template="{title}: {text}", path="d.jsonl")
    message = str(info.value)
    assert message.startswith("d.jsonl, data row 1 (1-based), column 'doc': the template reads {title}")
    assert "available keys: page_name, section_title, text, url, rank" in message


def test_template_key_null_in_one_row_names_that_row() -> None:
    with pytest.raises(
        EmbtuneError, match=r"d.jsonl, data row 12 \(1-based\), column 'doc'.*no value for 'section_title'"
    ):
        render_column(RECORDS, column="doc", template="{section_title}", path="d.jsonl", first_row=10)


def test_bad_templates_and_column_types() -> None:
    assert template_keys("{a} and {b.c} {{literal}}") == ["a", "b"]
    with pytest.raises(EmbtuneError, match="positional field"):
        template_keys("{} {text}")
    with pytest.raises(EmbtuneError, match="not a valid template"):
        template_keys("{text")
    with pytest.raises(EmbtuneError, match="holds plain text, but a template was given"):
        render_column(pa.array(["x"]), column="q", template="{text}")
    with pytest.raises(EmbtuneError, match="holds int64 values, not text"):
        render_column(pa.array([1, 2]), column="n", path="d.csv")
