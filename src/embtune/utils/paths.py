"""Every path a user gives goes through here: ``~`` expanded, and checked before anything reads or deletes.

- ``input_path``: an input file or folder exists, is a regular file (or folder), is readable, and its path
  is one the filesystem accepts (no FIFO or device that would block forever, no symlink loop).
- ``check_output_dir``: a training ``output_dir`` is never ``""``, ``.``, ``/``, the home folder, nor a
  folder holding the recipe, a data file or the base model; ``overwrite_output_dir`` only replaces a folder
  that embtune created (it holds ``training_log.jsonl`` or checkpoints).
- ``output_file``: a file to write (``encode --output``) has a writable place and is replaced only on request.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from ..errors import EmbtuneError

RUN_MARKERS = ("training_log.jsonl",)  # written by every embtune run into its output_dir


def expand(path: str | os.PathLike[str]) -> Path:
    """``~`` and ``~user`` expanded; nothing else changes."""
    return Path(os.path.expanduser(os.fspath(path)))


def os_error(exc: OSError, path: object = None, what: str = "file") -> EmbtuneError:
    """An OSError as one line naming the path and a fix that works."""
    name = exc.filename if exc.filename is not None else path
    code = exc.errno
    if code in (errno.EACCES, errno.EPERM):
        fix = f"permission denied; make the {what} readable (chmod u+r) or run as a user who can read it"
    elif code == errno.ENAMETOOLONG:
        fix = "a part of this path is longer than the filesystem allows (255 bytes); use a shorter name"
    elif code == errno.ELOOP:
        fix = "symlink loop (a link that points back to itself); fix or remove the link"
    elif code == errno.ENOTDIR:
        fix = "a part of this path is a file, not a folder; choose a path under a folder"
    elif code == errno.EISDIR:
        fix = f"is a folder; point to a {what}"
    elif code == errno.ENOSPC:
        fix = "the disk is full; free some space and try again"
    elif code == errno.EROFS:
        fix = "the filesystem is read-only; choose a folder you can write to"
    elif code == errno.ENOENT:
        fix = "no such file or folder; check the path"
    else:
        fix = f"{exc.strerror or exc}; check the path"
    return EmbtuneError(f"{name}: {fix}")


def input_path(path: str | os.PathLike[str], what: str = "file", key: str = "", folder_ok: bool = True) -> Path:
    """Check an input path that exists; return it with ``~`` expanded. A missing path is left to the caller.

    Raises:
        EmbtuneError: FIFO, socket or device; unreadable; symlink loop; over-long name; a folder where a
            file is needed (``folder_ok=False``).
    """
    prefix = f"{key}: " if key else ""
    if os.fspath(path) == "":
        raise EmbtuneError(f"{prefix}the path is empty; give the {what}'s path")
    p = expand(path)
    try:
        info = p.stat()
    except FileNotFoundError:
        return p
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            return p  # a part of it is a file: the caller's "not found" message fits
        raise EmbtuneError(f"{prefix}{os_error(exc, p, what)}") from None
    if stat.S_ISDIR(info.st_mode):
        if not folder_ok:
            raise EmbtuneError(f"{prefix}{p}: is a folder; point to a {what}")
        if not os.access(p, os.R_OK | os.X_OK):
            raise EmbtuneError(f"{prefix}{p}: permission denied; make the folder readable (chmod u+rx)")
        return p
    if not stat.S_ISREG(info.st_mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(info.st_mode) else "not a regular file (a device or socket)"
        raise EmbtuneError(f"{prefix}{p}: is {kind}; embtune reads regular files only: save the data to a file")
    try:
        with open(p, "rb"):
            pass
    except OSError as exc:
        raise EmbtuneError(f"{prefix}{os_error(exc, p, what)}") from None
    return p


def is_embtune_run(folder: Path) -> bool:
    """Whether ``folder`` holds an embtune training run (its log or its checkpoints)."""
    if any((folder / name).is_file() for name in RUN_MARKERS):
        return True
    checkpoints = folder / "checkpoints"
    return checkpoints.is_dir() and any(p.name.startswith("checkpoint-") for p in checkpoints.iterdir())


# What a run writes into output_dir before training_log.jsonl exists: a run stopped (or killed) that early
# leaves only these, and they do not make the folder someone else's.
RUN_SCRATCH = (".cache", "data_report.json")


def check_output_dir(
    output_dir: str, *, overwrite: bool, protected: Iterable[tuple[str, Path]] = (), key: str = "args.output_dir"
) -> Path:
    """Refuse an output folder whose replacement would destroy something else; return it with ``~`` expanded.

    Args:
        output_dir: the folder as the user wrote it.
        overwrite: ``overwrite_output_dir``: replace an earlier embtune run there.
        protected: (what, path) pairs that must survive the run: the recipe, data files, the base model.
    """
    if not str(output_dir).strip():
        raise EmbtuneError(f"{key} is empty; set it to a new folder such as output/run")
    out = expand(output_dir)
    _check_components(out, key)
    target = out.resolve()
    for label, special in (("the filesystem root", Path("/")), ("your home folder", Path.home()),
                           ("the current folder", Path.cwd())):
        if target == special.resolve():
            raise EmbtuneError(
                f"{key}: {output_dir!r} is {label}; embtune replaces output_dir as a whole, so give it a folder "
                "of its own such as output/run"
            )
    for label, path in protected:
        held = expand(path).resolve()
        if held == target or target in held.parents:
            raise EmbtuneError(
                f"{key}: {output_dir!r} contains {label} {path}; the finished run replaces output_dir as a "
                "whole and would delete it: choose another output_dir"
            )
    if out.is_dir() and overwrite and not is_embtune_run(out):
        foreign = sorted(p.name for p in out.iterdir() if p.name not in RUN_SCRATCH)
        if foreign:
            raise EmbtuneError(
                f"{out}: holds files embtune did not write ({', '.join(foreign[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}); overwrite_output_dir only replaces an earlier embtune "
                "run (a folder with training_log.jsonl): move those files away or choose another output_dir"
            )
    return out


def _check_components(path: Path, key: str) -> None:
    """Each existing ancestor is a folder; no part is longer than the filesystem allows."""
    for part in path.parts:
        if len(os.fsencode(part)) > 255:
            raise EmbtuneError(f"{key}: the path part {part[:40]!r}... is longer than 255 bytes; use a shorter name")
    for parent in [path, *path.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise EmbtuneError(f"{key}: {parent} is a file, not a folder; choose a path under a folder")
            break


def output_file(path: str | os.PathLike[str], *, overwrite: bool, key: str = "--output") -> Path:
    """A file about to be written: its folder can hold it, and an existing file is replaced only on request."""
    if os.fspath(path) == "":
        raise EmbtuneError(f"{key} is empty; give the file to write")
    p = expand(path)
    _check_components(p.parent if p.parent != Path("") else Path("."), key)
    for part in p.parts:
        if len(os.fsencode(part)) > 255:
            raise EmbtuneError(f"{key}: the name {part[:40]!r}... is longer than 255 bytes; use a shorter name")
    if p.is_dir():
        raise EmbtuneError(f"{key}: {p} is a folder; give a file name such as {p / 'embeddings.npy'}")
    if p.exists() and not overwrite:
        raise EmbtuneError(f"{key}: {p} already exists; pass --overwrite to replace it, or choose another name")
    return p


__all__ = ["check_output_dir", "expand", "input_path", "is_embtune_run", "os_error", "output_file"]
