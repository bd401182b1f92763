"""The embedding server behind ``embtune serve``: OpenAI- and TEI-compatible routes over a dynamic batcher."""

from .app import ServeConfig, create_app, serve

__all__ = ["ServeConfig", "create_app", "serve"]
