"""Each pooling mode against a hand computation on a small padded batch."""

import pytest
import torch

from embtune.errors import EmbtuneError
from embtune.models.pooling import Pooling

# 2 texts, 3 positions, 2 dims; row 0 has 3 real tokens, row 1 has 2 (right padded).
HIDDEN = torch.tensor(
    [
        [[1.0, 2.0], [3.0, -4.0], [5.0, 0.0]],
        [[-1.0, 1.0], [2.0, 3.0], [100.0, 100.0]],
    ]
)
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])


def pool(mode, **kw):
    return Pooling(2, mode, **kw)(HIDDEN, MASK)


def test_mean_ignores_padding():
    expected = torch.tensor([[(1 + 3 + 5) / 3, (2 - 4 + 0) / 3], [(-1 + 2) / 2, (1 + 3) / 2]])
    torch.testing.assert_close(pool("mean"), expected)


def test_cls_is_first_token():
    torch.testing.assert_close(pool("cls"), torch.tensor([[1.0, 2.0], [-1.0, 1.0]]))


def test_max_ignores_padding():
    torch.testing.assert_close(pool("max"), torch.tensor([[5.0, 2.0], [2.0, 3.0]]))


def test_mean_sqrt_len():
    expected = torch.tensor([[9 / 3**0.5, -2 / 3**0.5], [1 / 2**0.5, 4 / 2**0.5]])
    torch.testing.assert_close(pool("mean_sqrt_len_tokens"), expected)


def test_weighted_mean_weights_positions():
    # weights 1,2,3 for row 0; 1,2 for row 1
    row0 = [(1 * 1 + 2 * 3 + 3 * 5) / 6, (1 * 2 + 2 * -4 + 0) / 6]
    row1 = [(1 * -1 + 2 * 2) / 3, (1 * 1 + 2 * 3) / 3]
    torch.testing.assert_close(pool("weightedmean"), torch.tensor([row0, row1]))


def test_weighted_mean_left_padding_counts_from_first_token():
    hidden = torch.tensor([[[0.0, 0.0], [1.0, 1.0], [3.0, 3.0]]])
    mask = torch.tensor([[0, 1, 1]])
    out = Pooling(2, "weightedmean")(hidden, mask)
    torch.testing.assert_close(out, torch.tensor([[(1 * 1 + 2 * 3) / 3] * 2]))


def test_last_token():
    torch.testing.assert_close(pool("lasttoken"), torch.tensor([[5.0, 0.0], [2.0, 3.0]]))


def test_several_modes_concatenate_in_classic_order():
    out = Pooling(2, ["max", "cls"])(HIDDEN, MASK)  # classic order: cls, then max
    torch.testing.assert_close(out, torch.cat([pool("cls"), pool("max")], dim=-1))


def test_exclude_prompt_tokens():
    out = Pooling(2, "mean", include_prompt=False)(HIDDEN, MASK, prompt_length=1)
    expected = torch.tensor([[(3 + 5) / 2, (-4 + 0) / 2], [2.0, 3.0]])
    torch.testing.assert_close(out, expected)


def test_prompt_lengths_per_row():
    p = Pooling(2, "mean", include_prompt=False)
    torch.testing.assert_close(p(HIDDEN, MASK, prompt_length=torch.tensor([1, 1])), p(HIDDEN, MASK, prompt_length=1))
    rows = p(HIDDEN, MASK, prompt_length=torch.tensor([1, 0]))  # row 0 skips one token, row 1 none
    torch.testing.assert_close(rows[0], p(HIDDEN, MASK, prompt_length=1)[0])
    torch.testing.assert_close(rows[1], p(HIDDEN, MASK)[1])


def test_config_round_trip_classic_and_new():
    p = Pooling(384, ["mean", "cls"], include_prompt=False)
    again = Pooling.from_config(p.get_config())
    assert again.modes == p.modes and again.dimension == 384 and not again.include_prompt
    new_style = Pooling.from_config({"embedding_dimension": 8, "pooling_mode": "lasttoken"})
    assert new_style.modes == ["lasttoken"]


def test_unknown_mode_is_a_clear_error():
    with pytest.raises(EmbtuneError, match="unknown pooling mode"):
        Pooling(2, "average")


def test_new_style_mode_list_keeps_its_order_and_survives_saving():
    p = Pooling.from_config({"embedding_dimension": 2, "pooling_mode": ["mean", "cls"]})
    torch.testing.assert_close(p(HIDDEN, MASK), torch.cat([pool("mean"), pool("cls")], dim=-1))
    again = Pooling.from_config(p.get_config())
    assert again.modes == ["mean", "cls"]
