"""Column roles are explicit; errors list the available columns and say what the loss needs."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from torch import Tensor

from embtune.data.columns import ColumnRoles, check_columns, check_roles_for
from embtune.errors import EmbtuneError
from embtune.roles import LabelSpec


class PairLoss:
    """Fake in-batch loss: anchor + positive, any number of negatives, no label."""

    name: ClassVar[str] = "FakePairLoss"
    required_roles: ClassVar[tuple[str, ...]] = ("anchor", "positive")
    max_negatives: ClassVar[int | None] = None
    label: ClassVar[LabelSpec | None] = None
    citation: ClassVar[str] = ""

    def __call__(self, embeddings: dict[str, Tensor], labels: Tensor | None) -> Tensor:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return {}


class ScoredLoss(PairLoss):
    name: ClassVar[str] = "FakeScoredLoss"
    max_negatives: ClassVar[int | None] = 0
    label: ClassVar[LabelSpec | None] = LabelSpec("float", -1.0, 1.0)


class TripletLoss(PairLoss):
    name: ClassVar[str] = "FakeTripletLoss"
    required_roles: ClassVar[tuple[str, ...]] = ("anchor", "positive", "negative_1")
    max_negatives: ClassVar[int | None] = 1


class AnchorLabelLoss(PairLoss):
    name: ClassVar[str] = "FakeBatchHardLoss"
    required_roles: ClassVar[tuple[str, ...]] = ("anchor",)
    label: ClassVar[LabelSpec | None] = LabelSpec("class")


def test_text_roles_are_in_fixed_order() -> None:
    roles = ColumnRoles("q", "p", ["n1", "n2"], label="s")
    assert roles.text_roles == {"anchor": "q", "positive": "p", "negative_1": "n1", "negative_2": "n2"}
    assert ColumnRoles("q").text_roles == {"anchor": "q"}


def test_from_dict_is_strict() -> None:
    assert ColumnRoles.from_dict({"anchor": "a", "negatives": "n"}) == ColumnRoles("a", negatives=["n"])
    with pytest.raises(EmbtuneError, match=r"unknown role\(s\) negative.*negatives: \[\.\.\.\]"):
        ColumnRoles.from_dict({"anchor": "a", "negative": "n"})
    with pytest.raises(EmbtuneError, match="`anchor: <column>` is required"):
        ColumnRoles.from_dict({"positive": "p"})
    with pytest.raises(EmbtuneError, match="expected a column name"):
        ColumnRoles("")


def test_missing_column_lists_available_columns() -> None:
    roles = ColumnRoles("question", "answr")
    with pytest.raises(EmbtuneError) as info:
        check_columns(roles, ["question", "answer", "score"], "qa.csv")
    message = str(info.value)
    assert message.startswith("qa.csv: no column for positive: 'answr'")
    assert "available columns: question, answer, score" in message


def test_one_column_cannot_play_two_roles() -> None:
    with pytest.raises(EmbtuneError, match="column 'q' is mapped to both anchor and positive"):
        check_columns(ColumnRoles("q", "q"), ["q"], "d.csv")
    with pytest.raises(EmbtuneError, match="mapped to both anchor and label"):
        check_columns(ColumnRoles("q", "p", label="q"), ["q", "p"], "d.csv")


def test_roles_match_the_loss() -> None:
    check_roles_for(ColumnRoles("q", "p", ["n1", "n2"]), PairLoss())
    check_roles_for(ColumnRoles("a", "b", label="s"), ScoredLoss())
    check_roles_for(ColumnRoles("a", "b", ["n"]), TripletLoss())
    check_roles_for(ColumnRoles("a", label="c"), AnchorLabelLoss())


@pytest.mark.parametrize(
    ("roles", "loss", "message"),
    [
        (ColumnRoles("q"), PairLoss(), r"FakePairLoss needs the role\(s\) positive"),
        (ColumnRoles("q", "p"), TripletLoss(), r"needs the role\(s\) negative_1"),
        (ColumnRoles("a", "b"), ScoredLoss(), "needs a label column .*set `label: <column>`"),
        (ColumnRoles("a", "b", label="s"), PairLoss(), "does not use labels.*remove `label`"),
        (ColumnRoles("a", "b", ["n"], label="s"), ScoredLoss(), "accepts 0 hard-negative role"),
        (ColumnRoles("a", "b", ["n1", "n2"]), TripletLoss(), r"keep at most 1 negative column"),
        (
            ColumnRoles("a", "b", label="c"),
            AnchorLabelLoss(),
            r"reads only anchor, but datasets\[\]\.columns maps positive",
        ),
    ],
)
def test_role_mismatch_says_how_to_fix(roles: ColumnRoles, loss: PairLoss, message: str) -> None:
    with pytest.raises(EmbtuneError, match=message):
        check_roles_for(roles, loss)
