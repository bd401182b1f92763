"""The layers point one way: every import in src/embtune, parsed with ``ast`` (lazy ones inside functions too).

- ``embtune.data`` reads files and prepares batches; it knows nothing of losses or model cards (what a loss
  requires arrives as plain data, ``embtune.roles.RoleRequirements``, from ``training/build.py``).
- No module imports the package root (``from .. import __version__``, ``import embtune``): the root's
  ``__init__`` is the public API and imports the package, so importing it back makes cycles.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "embtune"
MODULES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = ["embtune", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imports(path: Path, name: str | None = None) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module, imported names) for every import statement in ``path`` (module ``name``)."""
    name = name or module_name(path)
    package = name if is_package(path) else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((node.lineno, target, [alias.name for alias in node.names]))
    return out


def targets(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, counting ``from pkg import sub`` as importing ``pkg.sub``."""
    out = []
    for line, module, names in imports(path):
        out.append((line, module))
        out += [(line, f"{module}.{n}") for n in names if _is_module(f"{module}.{n}")]
    return out


def _is_module(dotted: str) -> bool:
    if not dotted.startswith("embtune."):
        return False
    rel = Path(*dotted.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def test_the_parser_sees_relative_lazy_and_root_imports(tmp_path):
    """The checks below can fail: the parser resolves the import shapes they look for."""
    probe = PACKAGE / "data" / "prepare.py"
    found = dict((m, line) for line, m in targets(probe))
    assert "embtune.errors" in found and "embtune.data.sources" in found
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from ..losses.base import Loss\n    from .. import __version__, roles\n    import embtune\n")
    assert imports(probe, "embtune.data.probe") == [
        (2, "embtune.losses.base", ["Loss"]), (3, "embtune", ["__version__", "roles"]), (4, "embtune", [])
    ]


@pytest.mark.parametrize("path", [p for p in MODULES if module_name(p).startswith("embtune.data")],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_data_does_not_import_losses_or_cards(path):
    bad = [(line, m) for line, m in targets(path) if m.startswith(("embtune.losses", "embtune.cards"))]
    assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}; pass what data/ needs as plain data instead"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_the_package_root(path):
    bad = []
    for line, module, names in imports(path):
        if module == "embtune":
            bad += [(line, n) for n in names if not _is_module(f"embtune.{n}")] or ([] if names else [(line, module)])
    assert not bad, (
        f"{path.relative_to(PACKAGE)} imports from the package root: {bad}; import the defining module instead "
        "(e.g. embtune._version for the version)"
    )
