"""One run per output folder: an exclusive ``flock`` held for the whole of ``train``.

The lock file sits next to the output folder (``<parent>/.<name>.lock``), not inside it, so the final save,
which replaces the folder as a whole, never moves it. It holds the pid of the run that owns it, for the
message a second run gets. The kernel drops the lock when its process dies (even SIGKILL), so a lock file
left by a dead run never blocks: the next run simply takes it over.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

from ..errors import EmbtuneError


def lock_path(output_dir: Path | str) -> Path:
    """``<parent>/.<name>.lock`` for an output folder (its real path, so two spellings share one lock)."""
    folder = Path(output_dir).expanduser().resolve()
    return folder.with_name(f".{folder.name}.lock")


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        return f"pid {int(path.read_text(encoding='ascii').strip())}"
    return "another process"


def _acquire(path: Path, output_dir: Path | str) -> int:
    """Open and lock ``path``; the fd of a lock file that is still the one at ``path`` (retry after a race)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise EmbtuneError(
                    f"{output_dir}: another embtune train is writing to this output_dir "
                    f"({_holder(path)}); wait for it to finish, stop it, or choose another output_dir"
                ) from None
            raise
        try:  # the previous holder may have removed the file between our open and our lock
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def output_lock(output_dir: Path | str, enabled: bool = True) -> Iterator[None]:
    """Hold the exclusive lock of ``output_dir`` for the ``with`` block (a no-op when not ``enabled``).

    Raises:
        EmbtuneError: another live process holds the lock (the message names its pid), or the lock file
            cannot be created (permission denied, missing parent that cannot be made).
    """
    if not enabled:
        yield
        return
    path = lock_path(output_dir)
    try:
        fd = _acquire(path, output_dir)
    except OSError as exc:
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):  # a filesystem without locks
            warnings.warn(f"{path}: this filesystem cannot lock files; nothing stops a second run into "
                          f"{output_dir}", stacklevel=3)
            yield
            return
        raise EmbtuneError(
            f"{path}: cannot create the output folder's lock file ({exc.strerror or exc}); choose an output_dir "
            "in a folder you can write to"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # before the unlock: a waiting run then re-opens a fresh file (see _acquire)
        os.close(fd)
