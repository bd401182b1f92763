"""Atomic writes: build a file or folder under a temporary name next to its target, then rename it in place.

A crash at any moment leaves either the previous version or the new one, never a half-written mix.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import re
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
    """Give a finished temporary folder normal permissions (mkdtemp makes it private) and flush it to disk.

    A failed fsync (EIO, ENOSPC on delayed allocation or network filesystems) means the data may not be on
    disk, so it aborts the replacement instead of being ignored.
    """
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
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


_STALE = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?P<pid>\d+)-[^/]*$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def recover(target: Path | str, preserve: Sequence[str] = ()) -> None:
    """Clean up after writers of ``target`` that died (SIGKILL, power loss) in the middle of ``atomic_dir``.

    Their temporary folders (``.<name>.tmp-<pid>-*`` / ``.<name>.old-<pid>-*`` whose process is gone) are
    removed; an entry named in ``preserve`` that the dead writer had already moved into its temporary folder
    but not yet into place is moved back into ``target`` first, so it is never lost.
    """
    target = Path(target).absolute()
    parent = target.parent
    if not parent.is_dir():
        return
    for entry in parent.iterdir():
        match = _STALE.match(entry.name)
        if not match or _alive(int(match["pid"])):
            continue
        name = match["name"]
        while (inner := _STALE.match(name)) is not None:  # a save nested in another's temporary folder
            name = inner["name"]
        if name != target.name:
            continue
        if not entry.is_dir() or entry.is_symlink():
            entry.unlink(missing_ok=True)  # a temporary file of atomic_write_bytes
            continue
        if ".old-" in entry.name and not target.exists():
            os.rename(entry, target)  # died between moving the previous version aside and the new one in
            continue
        for name in preserve:
            if (entry / name).exists() and target.is_dir() and not (target / name).exists():
                os.rename(entry / name, target / name)
        shutil.rmtree(entry, ignore_errors=True)


def recover_all(folder: Path | str) -> None:
    """``recover`` every target in ``folder`` that a dead writer left temporaries for (nothing preserved)."""
    folder = Path(folder)
    if folder.is_dir():
        for name in sorted({m["name"] for p in folder.iterdir() if (m := _STALE.match(p.name))}):
            recover(folder / name)


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
        recover(target, preserve)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=parent))
    except OSError as exc:
        raise _friendly(exc, target) from None
    moved: list[str] = []  # preserved entries carried into tmp: put back if anything fails
    aside: Path | None = None  # the previous version, moved aside (fallback without rename-exchange)
    try:
        yield tmp
        if target.exists() and not target.is_dir():
            raise EmbtuneError(f"{target}: exists and is not a folder; remove it or choose another path")
        _settle(tmp)  # before the preserved entries move in: keeps the moment they live in tmp short
        for name in preserve:
            if (target / name).exists() and not (tmp / name).exists():
                os.rename(target / name, tmp / name)
                moved.append(name)
        if not target.exists():
            os.rename(tmp, target)
        elif _exchange(tmp, target):
            moved = []
            shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the previous version
        else:
            aside = parent / f".{target.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.rename(target, aside)  # a crash right here is repaired by recover(): the old version goes back
            os.rename(tmp, target)
            moved, old, aside = [], aside, None
            shutil.rmtree(old, ignore_errors=True)
        moved = []
        _fsync_dir(parent)
    except BaseException as exc:
        if aside is not None and not target.exists():
            with contextlib.suppress(OSError):
                os.rename(aside, target)
        for name in moved:
            with contextlib.suppress(OSError):
                os.rename(tmp / name, target / name)
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise _friendly(exc, target) from None
        raise


@contextlib.contextmanager
def atomic_file(path: Path | str, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block succeeds, it replaces ``path`` in one rename.

    Args:
        path: the file to create or replace.
        fsync: flush the new file to disk before the rename (off for caches that can be rebuilt).
    """
    path = Path(path).absolute()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        recover(path)
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        raise _friendly(exc, path) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
