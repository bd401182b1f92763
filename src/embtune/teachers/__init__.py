"""Teacher and guide outputs (distillation targets, GIST guide embeddings), computed once and cached."""

from .targets import attach_teacher_targets, compute_targets, rendered_texts, wants_teacher

__all__ = ["attach_teacher_targets", "compute_targets", "rendered_texts", "wants_teacher"]
