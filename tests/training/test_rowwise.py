"""RowwiseAdamW and sparse-gradient clipping: equal to dense AdamW on the rows a step uses, as documented."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from embtune import EmbeddingModel
from embtune.training import rowwise
from embtune.training.loop import train
from embtune.training.optim import build_optimizer
from embtune.training.recipe import config_from_dict
from embtune.training.rowwise import RowwiseAdamW, clip_grad_norm, rowwise_embeddings

HP = {"lr": 1e-2, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.1}
# rows 1, 2, 3 are used in every step; row 7 only in steps 0 and 2; the other rows never
STEPS = [[1, 2, 3, 7, 2], [3, 1, 2, 2], [7, 1, 2, 3, 3]]


def _loss(emb: nn.Embedding, ids: list[int], step: int) -> torch.Tensor:
    out = emb(torch.tensor(ids))
    weights = torch.linspace(-1.0, 2.0, out.numel()).reshape(out.shape) * (step + 1)
    return (out * weights).sum() + (out**2).sum()


def _run(sparse: bool, steps=STEPS, rows=10, lrs=None) -> tuple[nn.Embedding, torch.optim.Optimizer]:
    torch.manual_seed(0)
    emb = nn.Embedding(rows, 4, sparse=sparse)
    opt = (RowwiseAdamW if sparse else torch.optim.AdamW)(emb.parameters(), foreach=False, **HP)
    for step, ids in enumerate(steps):
        if lrs is not None:
            opt.param_groups[0]["lr"] = lrs[step]
        _loss(emb, ids, step).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return emb, opt


def test_rows_used_every_step_equal_dense_adamw():
    sparse, _ = _run(True)
    dense, _ = _run(False)
    torch.testing.assert_close(sparse.weight[[1, 2, 3]], dense.weight[[1, 2, 3]], rtol=1e-6, atol=1e-7)


def test_unused_rows_stay_put_and_get_no_weight_decay():
    torch.manual_seed(0)
    start = nn.Embedding(10, 4).weight.detach().clone()
    sparse, _ = _run(True)
    dense, _ = _run(False)
    untouched = [0, 4, 5, 6, 8, 9]
    assert torch.equal(sparse.weight[untouched], start[untouched])
    assert not torch.allclose(dense.weight[untouched], start[untouched])  # dense AdamW decays them


def test_a_row_follows_dense_adamw_over_only_the_steps_that_used_it():
    lrs = [1e-2, 5e-3, 2e-3]
    sparse, _ = _run(True, lrs=lrs)
    # row 7 is used in steps 0 and 2: a dense AdamW that only sees those two steps, at their learning rates
    torch.manual_seed(0)
    start = nn.Embedding(10, 4).weight.detach()[7:8].clone()
    alone = nn.Parameter(start)
    opt = torch.optim.AdamW([alone], foreach=False, **HP)
    for step in (0, 2):
        opt.param_groups[0]["lr"] = lrs[step]
        emb = nn.Embedding(10, 4, sparse=True)
        with torch.no_grad():
            emb.weight[7] = alone[0]  # row 7's gradient depends on row 7 only
        _loss(emb, STEPS[step], step).backward()
        alone.grad = emb.weight.grad.to_dense()[7:8]
        opt.step()
    torch.testing.assert_close(sparse.weight[7:8], alone.detach(), rtol=1e-6, atol=1e-7)


def _alone(row: int, steps: list[list[int]], rows: int, lrs: list[float]) -> torch.Tensor:
    """Row ``row`` after a dense AdamW that sees only the steps whose ids use it."""
    torch.manual_seed(0)
    alone = nn.Parameter(nn.Embedding(rows, 4).weight.detach()[row:row + 1].clone())
    opt = torch.optim.AdamW([alone], foreach=False, **HP)
    for step, ids in enumerate(steps):
        if row not in ids:
            continue
        opt.param_groups[0]["lr"] = lrs[step]
        emb = nn.Embedding(rows, 4, sparse=True)
        with torch.no_grad():
            emb.weight[row] = alone[0]
        _loss(emb, ids, step).backward()
        alone.grad = emb.weight.grad.to_dense()[row:row + 1]
        opt.step()
    return alone.detach()


def test_moments_are_kept_only_for_rows_that_had_a_gradient_and_the_table_grows_correctly():
    rows = 5000
    steps = [list(range(0, 1000)), list(range(500, 2000)), [1, 2, 3, *range(1900, 2500)]]
    lrs = [1e-2, 5e-3, 2e-3]
    emb, opt = _run(True, steps=steps, rows=rows, lrs=lrs)
    state = opt.state[emb.weight]
    assert int(state["used"]) == 2500  # distinct rows ever used
    assert state["exp_avg"].shape[0] < rows and state["exp_avg_sq"].shape == state["exp_avg"].shape
    assert bool((state["slot"][2500:] == -1).all())
    for row in (1, 600, 1500, 1950, 2400):  # steps {0,2}, {0,1}, {1}, {1,2}, {2}: before and after growth
        torch.testing.assert_close(emb.weight[row:row + 1], _alone(row, steps, rows, lrs), rtol=1e-6, atol=1e-7)
    untouched = emb.weight[2500:]
    torch.manual_seed(0)
    assert torch.equal(untouched, nn.Embedding(rows, 4).weight[2500:])
    assert state["slot"].dtype == torch.int64


def test_state_round_trips_through_state_dict():
    emb, opt = _run(True, steps=STEPS[:2])
    twin = copy.deepcopy(emb)
    twin_opt = RowwiseAdamW(twin.parameters(), foreach=False, **HP)
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    for module, optimizer in ((emb, opt), (twin, twin_opt)):
        _loss(module, STEPS[2], 2).backward()
        optimizer.step()
    assert torch.equal(emb.weight, twin.weight)


def test_clip_grad_norm_with_sparse_grads_equals_dense_clipping():
    torch.manual_seed(0)
    sparse_emb, lin = nn.Embedding(20, 4, sparse=True), nn.Linear(4, 1)
    lin(sparse_emb(torch.tensor([1, 5, 5, 9]))).sum().mul(10).backward()
    dense_emb, dense_lin = copy.deepcopy(sparse_emb), copy.deepcopy(lin)
    dense_emb.weight.grad = sparse_emb.weight.grad.to_dense()
    for twin, p in zip(dense_lin.parameters(), lin.parameters(), strict=True):
        twin.grad = p.grad.clone()  # deepcopy does not copy gradients
    total = clip_grad_norm([sparse_emb.weight, *lin.parameters()], 0.5)
    expected = torch.nn.utils.clip_grad_norm_([dense_emb.weight, *dense_lin.parameters()], 0.5)
    torch.testing.assert_close(total, expected)
    torch.testing.assert_close(sparse_emb.weight.grad.to_dense(), dense_emb.weight.grad)
    torch.testing.assert_close(lin.weight.grad, dense_lin.weight.grad)


def test_only_large_embeddings_become_sparse(tiny_bert_dir):
    model = EmbeddingModel.from_transformer(tiny_bert_dir)
    vocab = model.transformer.auto_model.get_input_embeddings()
    assert rowwise_embeddings(model, min_rows=vocab.num_embeddings) == [vocab.weight]
    assert vocab.sparse
    positions = model.transformer.auto_model.embeddings.position_embeddings
    assert not positions.sparse


def test_training_with_rowwise_updates_leaves_unused_vocabulary_rows_untouched(
    tiny_bert_dir, pairs_file, tmp_path, config_factory, monkeypatch
):
    monkeypatch.setattr(rowwise, "MIN_ROWS", 100)  # the tiny vocabulary (~150 rows) counts as large
    cfg = config_from_dict(config_factory(tiny_bert_dir, pairs_file, tmp_path / "run", save_strategy="no",
                                          weight_decay=0.01))
    assert cfg.args.embedding_updates == "rowwise"
    result = train(cfg)
    base = EmbeddingModel.from_transformer(tiny_bert_dir)
    tuned = EmbeddingModel.load(result.model_path)
    used = set()
    for line in pairs_file.read_text().splitlines():
        for ids in base.transformer.token_ids(list(__import__("json").loads(line).values())[:2])[0]:
            used.update(ids)
    before = base.transformer.auto_model.get_input_embeddings().weight
    after = tuned.transformer.auto_model.get_input_embeddings().weight
    unused = sorted(set(range(before.shape[0])) - used)
    assert unused and torch.equal(before[unused], after[unused])
    assert not torch.equal(before[sorted(used)], after[sorted(used)])


@pytest.mark.parametrize("mode, expected", [("rowwise", RowwiseAdamW), ("dense", torch.optim.AdamW)])
def test_build_optimizer_picks_the_embedding_update_mode(tiny_bert_dir, pairs_file, tmp_path, config_factory,
                                                         monkeypatch, mode, expected):
    monkeypatch.setattr(rowwise, "MIN_ROWS", 100)
    cfg = config_from_dict(config_factory(tiny_bert_dir, pairs_file, tmp_path / "run", embedding_updates=mode))
    model = EmbeddingModel.from_transformer(tiny_bert_dir)
    assert type(build_optimizer(model, cfg.args)) is expected
    assert model.transformer.auto_model.get_input_embeddings().sparse == (mode == "rowwise")
