"""Atomic writes: build a file or folder under a temporary name next to its target, then rename it in place.

A crash at any moment leaves either the previous version or the new one, never a half-written mix.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import EmbtuneError

_RENAME_EXCHANGE = 2  # linux/fs.h
_libc = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically with renameat2(RENAME_EXCHANGE) where the OS offers it."""
    global _libc
    if not hasattr(os, "uname") or os.uname().sysname != "Linux":
        return False
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = _libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    res = fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), _RENAME_EXCHANGE)
    if res == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _friendly(exc: OSError, target: Path) -> EmbtuneError:
    if exc.errno == errno.ENOSPC:
        return EmbtuneError(f"{target}: the disk is full; free some space and try again (nothing was replaced)")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return EmbtuneError(f"{target}: permission denied; choose a folder you can write to (nothing was replaced)")
    return EmbtuneError(f"{target}: could not write ({exc.strerror or exc}); nothing was replaced")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _settle(folder: Path) -> None:
    """Give a finished temporary folder normal permissions (mkdtemp makes it private) and flush it to disk."""
    mask = _umask()
    os.chmod(folder, 0o777 & ~mask)
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o777 & ~mask)
        for f in files:
            path = os.path.join(root, f)
            with contextlib.suppress(OSError):
                os.chmod(path, 0o666 & ~mask)
                fd = os.open(path, os.O_RDONLY)
                os.fsync(fd)
                os.close(fd)


@contextlib.contextmanager
def atomic_dir(target: Path | str, preserve: Sequence[str] = ()) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces ``target`` in one step.

    Args:
        target: the folder to create or replace.
        preserve: names of entries of an existing ``target`` to carry over into the new folder
            (for example ``checkpoints`` in a training output folder) when they are not written anew.
    """
    target = Path(target).absolute()
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=parent))
    except OSError as exc:
        raise _friendly(exc, target) from None
    try:
        yield tmp
        for name in preserve:
            old = target / name
            if old.exists() and not (tmp / name).exists():
                os.rename(old, tmp / name)
        _settle(tmp)
        if target.exists():
            if not target.is_dir():
                raise EmbtuneError(f"{target}: exists and is not a folder; remove it or choose another path")
            if _exchange(tmp, target):
                shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the previous version
            else:
                old = parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
                os.rename(target, old)
                os.rename(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
        _fsync_dir(parent)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _friendly(exc, target) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise _friendly(exc, path) from None


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
