"""Names to classes: the one place where a recipe's names (losses, evaluators, samplers, schedulers, model
modules) become code.

A name resolves through its registry only. ``package.module:Class`` names are imported only when the caller
opted in with ``allow_custom_code`` (the ``--allow-custom-code`` flag, or ``train(config,
allow_custom_code=True)``), never because a recipe or a model folder says so; and then only a class that is
the expected kind (e.g. a subclass of ``torch.nn.Module`` with the loss interface) is accepted, so
``os:system`` can never run.

>>> resolve("loss", "mnrl", {"mnrl": int})
<class 'int'>
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..errors import EmbtuneError

_ALLOW_CUSTOM = contextvars.ContextVar("embtune_allow_custom_code", default=False)


@contextlib.contextmanager
def custom_code(allowed: bool) -> Iterator[None]:
    """Within the block, ``module:Class`` names may be imported (when ``allowed``)."""
    token = _ALLOW_CUSTOM.set(bool(allowed))
    try:
        yield
    finally:
        _ALLOW_CUSTOM.reset(token)


def custom_code_allowed() -> bool:
    """Whether the current call opted in to ``module:Class`` names."""
    return _ALLOW_CUSTOM.get()


def resolve(
    kind: str,
    name: Any,
    registry: Mapping[str, Any],
    *,
    check: Callable[[Any], bool] | None = None,
    expected: str = "",
    allow_custom_code: bool | None = None,
    key: str = "",
) -> Any:
    """Return ``registry[name]`` (exact, then case-insensitive), or an opted-in ``module:Class``.

    Args:
        kind: what is resolved, for messages ("loss", "evaluator", ...).
        name: the name from the recipe / caller.
        registry: the allowed names.
        check: for ``module:Class`` names, a predicate the imported object must satisfy (its kind).
        expected: how to describe the kind in the refusal ("a loss class").
        allow_custom_code: None: the current ``custom_code`` setting.
        key: the recipe key that holds the name (``datasets[].loss.name``), for messages.

    Raises:
        EmbtuneError: unknown name (did-you-mean), ``module:Class`` without the opt-in, or an imported
            object that is not the expected kind.
    """
    where = f"{key}: " if key else ""
    if not isinstance(name, str) or not name:
        raise EmbtuneError(f"{where}a {kind} name must be text such as {next(iter(registry), '')!r}, got {name!r}")
    if name in registry:
        return registry[name]
    folded = {k.lower(): v for k, v in registry.items()}
    if name.lower() in folded:
        return folded[name.lower()]
    if ":" in name:
        allowed = custom_code_allowed() if allow_custom_code is None else allow_custom_code
        if not allowed:
            raise EmbtuneError(
                f"{where}{kind} {name!r} names Python code, which embtune never imports from a recipe; use one "
                f"of: {', '.join(registry)}, or pass --allow-custom-code (Python: allow_custom_code=True) if "
                "you wrote that code yourself"
            )
        return _import(kind, name, check, expected, where)
    close = difflib.get_close_matches(name, list(registry), n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    plural = kind + ("es" if kind.endswith("s") else "s")
    raise EmbtuneError(f"{where}unknown {kind} {name!r}; {hint}known {plural}: {', '.join(registry)}")


def _import(kind: str, name: str, check: Callable[[Any], bool] | None, expected: str, where: str) -> Any:
    module_name, _, attr = name.partition(":")
    if not module_name or not attr.isidentifier():
        raise EmbtuneError(f"{where}{kind} {name!r}: write package.module:ClassName")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # ImportError, or any error raised while the module runs
        raise EmbtuneError(f"{where}{kind} {name!r}: cannot import module {module_name!r} ({err}); is it installed?") from None
    obj = getattr(module, attr, None)
    if obj is None:
        raise EmbtuneError(f"{where}{kind} {name!r}: module {module_name!r} has no attribute {attr!r}")
    if not inspect.isclass(obj) or (check is not None and not check(obj)):
        raise EmbtuneError(
            f"{where}{kind} {name!r} is not {expected or 'a ' + kind + ' class'}; point to your own class"
        )
    return obj


__all__ = ["custom_code", "custom_code_allowed", "resolve"]
