"""GradCache version of MultipleNegativesRankingLoss: big batches in the memory of a mini-batch."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..errors import EmbtuneError
from .base import LabelSpec, check_roles, negative_roles
from .checks import SimilarityFn, check_positive
from .in_batch import MultipleNegativesRankingLoss, candidates_of, ranking_loss_sum

CITATION = """@misc{gao2021scaling,
    title={Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup},
    author={Luyu Gao and Yunyi Zhang and Jiawei Han and Jamie Callan},
    year={2021},
    eprint={2101.06983},
    archivePrefix={arXiv},
    primaryClass={cs.LG}
}"""

Features = dict[str, Tensor]


class _RngSnapshot:
    """The CPU (and CUDA) RNG state at one moment, to replay a forward pass with the same dropout."""

    def __init__(self, tensors: list[Tensor]) -> None:
        self.cpu = torch.get_rng_state()
        self.devices = sorted({t.get_device() for t in tensors if t.is_cuda})
        self.cuda = [torch.cuda.get_rng_state(d) for d in self.devices]

    @contextmanager
    def replay(self) -> Iterator[None]:
        """Run the block from the saved state; the RNG state outside the block is left untouched."""
        with torch.random.fork_rng(devices=self.devices):
            torch.set_rng_state(self.cpu)
            for device, state in zip(self.devices, self.cuda, strict=True):
                torch.cuda.set_rng_state(state, device)
            yield


def _batch_size(features: Features, role: str) -> int:
    for key in ("input_ids", "attention_mask"):
        if isinstance(features.get(key), Tensor):
            return features[key].shape[0]
    tensors = [v for v in features.values() if isinstance(v, Tensor) and v.ndim > 0]
    if not tensors:
        raise EmbtuneError(
            f"features[{role!r}] holds no batched tensor; pass the tokenizer output (input_ids, ...)"
        )
    return tensors[0].shape[0]


def _rows(features: Features, begin: int, end: int, batch_size: int) -> Features:
    """Rows begin:end of every batched tensor; anything else is passed through unchanged."""
    return {
        key: value[begin:end]
        if isinstance(value, Tensor) and value.ndim > 0 and value.shape[0] == batch_size
        else value
        for key, value in features.items()
    }


def chunk_plan(loss_name: str, features: dict[str, Features], roles: list[str],
               mini_batch_size: int) -> tuple[int, list[tuple[int, int]]]:
    """The common batch size of ``roles`` (all must agree) and its (begin, end) mini-batch ranges."""
    sizes = {role: _batch_size(features[role], role) for role in roles}
    if len(set(sizes.values())) != 1:
        raise EmbtuneError(f"{loss_name}: every role needs the same batch size, got {sizes}")
    batch = sizes["anchor"]
    return batch, [(b, min(b + mini_batch_size, batch)) for b in range(0, batch, mini_batch_size)]


def embed_without_grad(features: dict[str, Features], roles: list[str], ranges: list[tuple[int, int]], batch: int,
                       embed: Callable[[Features], Tensor], as_float: bool = False,
                       ) -> tuple[dict[str, Tensor], dict[str, list[_RngSnapshot]]]:
    """GradCache step 1: every role embedded by mini-batches without autograd, as leaf tensors that collect
    the loss's gradients, and the RNG state before each mini-batch (``as_float``: leaves in float32)."""
    snapshots: dict[str, list[_RngSnapshot]] = {}
    leaves: dict[str, Tensor] = {}
    with torch.no_grad():
        for role in roles:
            chunks, snapshots[role] = [], []
            for begin, end in ranges:
                part = _rows(features[role], begin, end, batch)
                snapshots[role].append(_RngSnapshot([v for v in part.values() if isinstance(v, Tensor)]))
                chunks.append(embed(part))
            joined = torch.cat(chunks)
            leaves[role] = (joined.float() if as_float else joined).detach().requires_grad_()
    return leaves, snapshots


def backward_through_replays(features: dict[str, Features], roles: list[str], ranges: list[tuple[int, int]],
                             batch: int, embed: Callable[[Features], Tensor], leaves: dict[str, Tensor],
                             snapshots: dict[str, list[_RngSnapshot]]) -> None:
    """GradCache step 3: re-embed each mini-batch with autograd under its saved RNG state and push the
    gradients cached in the leaves through the model."""
    for role in roles:
        grad = leaves[role].grad
        if grad is None:
            continue
        for (begin, end), snapshot in zip(ranges, snapshots[role], strict=True):
            with snapshot.replay():
                reps = embed(_rows(features[role], begin, end, batch))
            if reps.requires_grad:
                # d/d reps of <reps, g> is g; fp32 keeps low-precision (autocast) replays exact enough.
                torch.sum(reps.float() * grad[begin:end].float()).backward()


class CachedMultipleNegativesRankingLoss:
    """MultipleNegativesRankingLoss computed with GradCache, so the batch size is not bounded by memory.

    Same value and same gradients as ``MultipleNegativesRankingLoss`` (up to float rounding), but
    only ``mini_batch_size`` texts have activations alive at any time:

    1. embed every role in mini-batches without autograd, saving each mini-batch's RNG state;
    2. compute the loss on those embeddings (as detached leaves), in row chunks, and backpropagate it
       to get d loss / d embedding;
    3. re-embed each mini-batch with autograd, replaying its RNG state so dropout masks match, and
       backpropagate the cached embedding gradients into the parameters.

    It costs roughly one extra forward pass per step. Because it runs the model itself it follows
    ``ModelLoss``: the training loop calls :meth:`forward_backward`; calling the object on ready-made
    embeddings (validation) gives the plain MNRL value.

    Requirements: roles ``anchor`` and ``positive``; any number of ``negative_i`` roles; no labels.

    Relations: equivalent to ``MultipleNegativesRankingLoss`` (use that one when the batch fits in
    memory; it is faster). Pick a large batch and a ``mini_batch_size`` that fits the device.

    Args:
        scale, similarity_fct: as ``MultipleNegativesRankingLoss``.
        mini_batch_size: texts per forward pass (and anchor rows per loss chunk).
    """

    name: ClassVar[str] = "CachedMultipleNegativesRankingLoss"
    required_roles: ClassVar[tuple[str, ...]] = ("anchor", "positive")
    max_negatives: ClassVar[int | None] = None
    label: ClassVar[LabelSpec | None] = None
    citation: ClassVar[str] = CITATION

    def __init__(
        self, scale: float = 20.0, similarity_fct: str | SimilarityFn = "cos_sim", mini_batch_size: int = 32
    ) -> None:
        self._plain = MultipleNegativesRankingLoss(scale=scale, similarity_fct=similarity_fct)
        if isinstance(mini_batch_size, bool) or not isinstance(mini_batch_size, int):
            raise EmbtuneError(
                f"{self.name}: mini_batch_size must be an integer > 0, got {mini_batch_size!r}"
            )
        check_positive(mini_batch_size, param="mini_batch_size", loss=self.name)
        self.mini_batch_size = mini_batch_size

    @property
    def scale(self) -> float:
        return self._plain.scale

    def __call__(self, embeddings: dict[str, Tensor], labels: Tensor | None = None) -> Tensor:
        """Plain MNRL on ready-made (B, D) embeddings, e.g. for the validation loss."""
        return self._plain(embeddings, labels)

    def forward_backward(
        self,
        embed: Callable[[Features], Tensor],
        features: dict[str, Features],
        labels: Tensor | None = None,
        loss_scale: float = 1.0,
    ) -> Tensor:
        """Compute the loss and add its gradients (times ``loss_scale``) to the parameters' ``.grad``.

        Args:
            embed: tokenized mini-batch -> (b, D) embeddings, e.g. ``lambda f: model(**f)``.
            features: role -> tokenized batch; every tensor has the batch (B) as dim 0.
            labels: ignored (MNRL needs none).
            loss_scale: multiplies the gradients only (e.g. 1 / gradient-accumulation steps).
        Returns:
            The detached, unscaled scalar loss. Under ``torch.no_grad()`` nothing is backpropagated.
        """
        roles = ["anchor", "positive", *negative_roles(features)]
        check_roles(self, features, len(roles) - 2)
        batch, ranges = chunk_plan(self.name, features, roles, self.mini_batch_size)

        # Step 1: embed without autograd, remembering the RNG state before each mini-batch.
        leaves, snapshots = embed_without_grad(features, roles, ranges, batch, embed)
        if not torch.is_grad_enabled():
            return self._plain(leaves).detach()

        # Step 2: the loss on the leaf embeddings, by chunks of anchor rows; gradients land in leaf.grad.
        candidates = candidates_of(leaves)  # (B * (1 + k), D), shared by all chunks
        parts = []
        for begin, end in ranges:
            part = (
                ranking_loss_sum(
                    leaves["anchor"][begin:end], candidates, begin, self.scale, self._plain.similarity
                )
                / batch
            )
            (part * loss_scale).backward(retain_graph=True)  # candidates' graph serves the next chunk
            parts.append(part.detach())
        del candidates

        # Step 3: re-embed with autograd under the same RNG state; push the cached gradients through.
        backward_through_replays(features, roles, ranges, batch, embed, leaves, snapshots)
        return torch.stack(parts).sum()

    def config(self) -> dict[str, Any]:
        return {**self._plain.config(), "mini_batch_size": self.mini_batch_size}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config()})"
