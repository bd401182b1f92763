"""Distillation losses: match a teacher's embeddings (MSELoss) or its scores (MarginMSELoss, DistillKLDivLoss).

The teacher's output arrives as ``labels``, as in sentence-transformers: either a label column holding
precomputed values, or ``teacher=<model>`` on the loss, in which case embtune computes the teacher's output
for every row once before training and caches it next to the tokens (``embtune.teachers``). A loss states
what it wants from a teacher in ``teacher_output``:

- ``"anchor_embeddings"``: (B, D_teacher), the teacher's embedding of the anchor text;
- ``"scores"``: (B, 1 + k), the teacher's scores of (anchor, positive), (anchor, negative_1), ...
  A bi-encoder teacher scores with its similarity function, a cross-encoder folder with its logit.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import EmbtuneError
from .base import LabelSpec, check_roles, negative_roles
from .checks import SimilarityFn, at_least_fp32, check_batch, check_positive, resolve_similarity

CITATION_MSE = """@inproceedings{reimers-2020-multilingual-sentence-bert,
    title = "Making Monolingual Sentence Embeddings Multilingual using Knowledge Distillation",
    author = "Reimers, Nils and Gurevych, Iryna",
    booktitle = "Proceedings of the 2020 Conference on Empirical Methods in Natural Language Processing",
    month = "11",
    year = "2020",
    publisher = "Association for Computational Linguistics",
    url = "https://arxiv.org/abs/2004.09813",
}"""

CITATION_MARGIN_MSE = """@misc{hofstätter2021improving,
    title={Improving Efficient Neural Ranking Models with Cross-Architecture Knowledge Distillation},
    author={Sebastian Hofstätter and Sophia Althammer and Michael Schröder and Mete Sertkan and Allan Hanbury},
    year={2021},
    eprint={2010.02666},
    archivePrefix={arXiv},
    primaryClass={cs.IR}
}"""

CITATION_KL = """@misc{lin2020distillingdenserepresentationsranking,
      title={Distilling Dense Representations for Ranking using Tightly-Coupled Teachers},
      author={Sheng-Chieh Lin and Jheng-Hong Yang and Jimmy Lin},
      year={2020},
      eprint={2010.11386},
      archivePrefix={arXiv},
      primaryClass={cs.IR},
      url={https://arxiv.org/abs/2010.11386},
}"""

_NO_LABELS = (
    "{loss} needs the teacher's {what} as labels: set `teacher: <model>` in the loss params (embtune computes "
    "and caches them once), or map a label column holding them"
)


def text_roles(embeddings: dict[str, Tensor]) -> list[str]:
    """The text roles present, in data order: anchor, positive, negative_1 ..."""
    return [r for r in ("anchor", "positive") if r in embeddings] + negative_roles(embeddings)


def _teacher_name(teacher: Any) -> str | None:
    if teacher is None or isinstance(teacher, str):
        return teacher
    return str(getattr(teacher, "source", None) or type(teacher).__name__)


class _Distill:
    """Shared attributes: an optional teacher; without one, the labels come from a column."""

    teacher_output: ClassVar[str]
    label_spec: ClassVar[LabelSpec] = LabelSpec("float")
    label: LabelSpec | None = LabelSpec("float")  # per instance: None when a teacher provides the labels

    def _set_teacher(self, teacher: Any) -> None:
        self.teacher = teacher
        # With a teacher the labels are computed, so the data must not map a label column (and need not).
        self.label = None if teacher is not None else self.label_spec

    def _check_inputs(self, embeddings: dict[str, Tensor], labels: Tensor | None, what: str) -> tuple[list[str], int]:
        """Roles and batch checks shared by the losses that score (anchor, positive, negatives...): the
        negative roles and the batch size; labels (``what`` names them in the error) are required."""
        negatives = negative_roles(embeddings)
        check_roles(self, embeddings, len(negatives))
        batch = check_batch(embeddings, text_roles(embeddings), self.name)  # type: ignore[attr-defined]
        if labels is None:
            raise EmbtuneError(_NO_LABELS.format(loss=self.name, what=what))  # type: ignore[attr-defined]
        return negatives, batch

    def _teacher_config(self) -> dict[str, Any]:
        return {} if self.teacher is None else {"teacher": _teacher_name(self.teacher)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config()})"  # type: ignore[attr-defined]


class MSELoss(_Distill):
    """Mean squared error between the student's embeddings and the teacher's: ``mean((s - t)^2)``.

    Every text role of a row is pulled towards the same teacher embedding (2-D labels, e.g. a sentence and
    its translation both towards the teacher's embedding of the sentence), or each role towards its own
    (3-D labels (B, R, D)). The per-role losses are averaged.

    Requirements: role ``anchor``, optionally ``positive`` and ``negative_i``; labels are teacher embeddings,
    from ``teacher`` (its embedding of the anchor) or a list-valued label column. Student and teacher need
    the same dimension.

    Relations: ``MarginMSELoss`` distills score margins instead of embeddings; train a multilingual student
    with (english, translation) pairs and an English teacher.

    Args:
        teacher: a model (folder, Hub id, ``bundled:...``) whose embeddings are the targets; None: label column.
    """

    name: ClassVar[str] = "MSELoss"
    required_roles: ClassVar[tuple[str, ...]] = ("anchor",)
    optional_roles: ClassVar[tuple[str, ...]] = ("positive",)
    max_negatives: ClassVar[int | None] = None
    citation: ClassVar[str] = CITATION_MSE
    teacher_output: ClassVar[str] = "anchor_embeddings"

    def __init__(self, teacher: Any = None) -> None:
        self._set_teacher(teacher)

    def __call__(self, embeddings: dict[str, Tensor], labels: Tensor | None) -> Tensor:
        """``embeddings``: role -> (B, D); ``labels``: (B, D) or (B, R, D) teacher embeddings. Returns a scalar."""
        roles = text_roles(embeddings)
        check_roles(self, embeddings, len(negative_roles(embeddings)))
        batch = check_batch(embeddings, roles, self.name)
        if labels is None:
            raise EmbtuneError(_NO_LABELS.format(loss=self.name, what="embeddings"))
        dim = embeddings["anchor"].shape[1]
        if labels.ndim == 2 and labels.shape == (batch, dim):
            targets = [labels] * len(roles)
        elif labels.ndim == 3 and labels.shape == (batch, len(roles), dim):
            targets = list(labels.unbind(1))
        else:
            raise EmbtuneError(
                f"{self.name}: teacher embeddings must have shape ({batch}, {dim}) or ({batch}, {len(roles)}, "
                f"{dim}), got {tuple(labels.shape)}; the teacher and the student need the same dimension"
            )
        parts = [F.mse_loss(embeddings[r], t.detach().to(embeddings[r].dtype)) for r, t in zip(roles, targets, strict=True)]
        return torch.stack(parts).mean()

    def config(self) -> dict[str, Any]:
        return self._teacher_config()


def _scores_of(similarity: SimilarityFn, embeddings: dict[str, Tensor]) -> Tensor:
    """(B, 1 + k) student scores of (anchor, positive), (anchor, negative_1), ..."""
    anchor = embeddings["anchor"]
    others = ["positive", *negative_roles(embeddings)]
    return torch.stack([similarity(anchor, embeddings[r]) for r in others], dim=1)


class MarginMSELoss(_Distill):
    """MSE between the student's margins ``sim(a, p) - sim(a, n_i)`` and the teacher's margins.

    Requirements: roles ``anchor``, ``positive`` and at least one ``negative_i``; labels are the teacher's
    margins (B,) / (B, k), or its raw scores (B, 1 + k) (score of the positive first), from ``teacher`` or a
    label column (``embtune mine --scores`` writes one).

    Relations: unlike MultipleNegativesRankingLoss it needs no true negatives, only a teacher that orders
    the documents; typically a cross-encoder teacher over mined candidates. ``DistillKLDivLoss`` matches the
    teacher's whole score distribution instead of margins.

    Args:
        similarity_fct: the student's pairwise score (default ``pairwise_dot_score``, as the paper).
        teacher: a bi-encoder or cross-encoder folder whose scores are the targets; None: label column.
    """

    name: ClassVar[str] = "MarginMSELoss"
    required_roles: ClassVar[tuple[str, ...]] = ("anchor", "positive", "negative_1")
    max_negatives: ClassVar[int | None] = None
    citation: ClassVar[str] = CITATION_MARGIN_MSE
    teacher_output: ClassVar[str] = "scores"

    def __init__(self, similarity_fct: str | SimilarityFn = "pairwise_dot_score", teacher: Any = None) -> None:
        self.similarity, self.similarity_name = resolve_similarity(similarity_fct, pairwise=True, loss=self.name)
        self._set_teacher(teacher)

    def __call__(self, embeddings: dict[str, Tensor], labels: Tensor | None) -> Tensor:
        """``embeddings``: role -> (B, D); ``labels``: (B,), (B, k) margins or (B, 1 + k) scores."""
        negatives, batch = self._check_inputs(embeddings, labels, "score margins")
        k = len(negatives)
        if labels.shape == (batch, k + 1):
            labels = labels[:, :1] - labels[:, 1:]
        elif labels.shape == (batch,):
            labels = labels.unsqueeze(1)
        if labels.shape != (batch, k):
            raise EmbtuneError(
                f"{self.name}: labels must be margins ({batch}, {k}) or scores ({batch}, {k + 1}) "
                f"(positive first), got {tuple(labels.shape)}"
            )
        scores = _scores_of(self.similarity, embeddings)  # (B, 1 + k)
        margins = scores[:, :1] - scores[:, 1:]
        return F.mse_loss(margins, labels.detach().to(margins.dtype))

    def config(self) -> dict[str, Any]:
        return {"similarity_fct": self.similarity_name, **self._teacher_config()}


class DistillKLDivLoss(_Distill):
    """KL divergence from the teacher's softmax over (positive, negatives) to the student's, times T^2.

    ``KL(softmax(t / T_teacher) || softmax(s / T_student)) * T_student^2``, averaged over the batch.

    Requirements: roles ``anchor``, ``positive`` and at least one ``negative_i``; labels are the teacher's
    scores (B, 1 + k), from ``teacher`` or a label column.

    Relations: ``MarginMSELoss`` matches score differences; this loss matches their softmax distribution.

    Args:
        similarity_fct: the student's pairwise score (default ``pairwise_dot_score``).
        temperature: T for both sides, unless ``student_temperature`` / ``teacher_temperature`` are set.
        teacher: a bi-encoder or cross-encoder folder whose scores are the targets; None: label column.
    """

    name: ClassVar[str] = "DistillKLDivLoss"
    required_roles: ClassVar[tuple[str, ...]] = ("anchor", "positive", "negative_1")
    max_negatives: ClassVar[int | None] = None
    citation: ClassVar[str] = CITATION_KL
    teacher_output: ClassVar[str] = "scores"

    def __init__(
        self,
        similarity_fct: str | SimilarityFn = "pairwise_dot_score",
        temperature: float = 1.0,
        student_temperature: float | None = None,
        teacher_temperature: float | None = None,
        teacher: Any = None,
    ) -> None:
        self.similarity, self.similarity_name = resolve_similarity(similarity_fct, pairwise=True, loss=self.name)
        self.temperature = temperature
        self.student_temperature = temperature if student_temperature is None else student_temperature
        self.teacher_temperature = temperature if teacher_temperature is None else teacher_temperature
        for key in ("temperature", "student_temperature", "teacher_temperature"):
            check_positive(getattr(self, key), param=key, loss=self.name)
        self._set_teacher(teacher)

    def __call__(self, embeddings: dict[str, Tensor], labels: Tensor | None) -> Tensor:
        """``embeddings``: role -> (B, D); ``labels``: (B, 1 + k) teacher scores. Returns a scalar."""
        negatives, batch = self._check_inputs(embeddings, labels, "scores")
        if labels.shape != (batch, len(negatives) + 1):
            raise EmbtuneError(
                f"{self.name}: labels must be the teacher's scores of shape ({batch}, {len(negatives) + 1}) "
                f"(positive first, then each negative), got {tuple(labels.shape)}"
            )
        student = at_least_fp32(_scores_of(self.similarity, embeddings)) / self.student_temperature
        teacher = torch.softmax(labels.detach().to(student.dtype) / self.teacher_temperature, dim=1)
        log_student = torch.log_softmax(student, dim=1)
        loss = F.kl_div(log_student, teacher, reduction="batchmean")
        return loss * self.student_temperature**2

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"similarity_fct": self.similarity_name, "temperature": self.temperature}
        if self.student_temperature != self.temperature:
            config["student_temperature"] = self.student_temperature
        if self.teacher_temperature != self.temperature:
            config["teacher_temperature"] = self.teacher_temperature
        return config | self._teacher_config()
