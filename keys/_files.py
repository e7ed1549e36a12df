"""File handling for secrets: owner-only modes, atomic replacement, an exclusive lock.

Modes are set explicitly after creation rather than trusted to the umask, and checked on every
read, because a key file that others can read is a leaked key.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from keys._errors import KeyStoreError

DIR_MODE = 0o700
FILE_MODE = 0o600

# What identifies one version of a file: os.replace gives a new inode, and mtime_ns plus size
# catch an in-place edit.
FileVersion = tuple[int, int, int]


def ensure_private_dir(path: Path) -> None:
    """Create `path` with mode 0700 if absent; refuse an existing one others can enter."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=DIR_MODE)
    except FileExistsError:
        pass
    else:
        os.chmod(path, DIR_MODE)  # mkdir's mode is filtered through the umask
    info = os.stat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise KeyStoreError(f"key directory {path} is not a directory")
    if info.st_mode & 0o077:
        raise KeyStoreError(
            f"key directory {path} is accessible to group or others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run `chmod 700 {path}`"
        )


def read_private(path: Path) -> tuple[bytes, FileVersion]:
    """The content of an owner-only regular file and its version; KeyStoreError otherwise.

    FileNotFoundError passes through so callers can tell "absent" from "unsafe".
    """
    # O_NOFOLLOW and fstat on the open descriptor: what is checked is what is read.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyStoreError(f"{path} is not a regular file")
        if info.st_mode & 0o077:
            raise KeyStoreError(
                f"refusing to use {path}: it is readable or writable by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); run `chmod 600 {path}`"
            )
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks), (info.st_mtime_ns, info.st_size, info.st_ino)
    finally:
        os.close(fd)


def check_private(path: Path) -> None:
    """Refuse a file others can read; a missing file is not an error here."""
    with contextlib.suppress(FileNotFoundError):
        read_private(path)


def file_version(path: Path) -> FileVersion | None:
    """The version of `path` as `read_private` reports it, or None if it does not exist."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash leaves either the old or the new file, mode 0600.

    Temp file in the same directory, fsync, os.replace, then fsync of the directory so the
    rename itself survives a power cut.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(
        tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE
    )
    try:
        try:
            os.fchmod(fd, FILE_MODE)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created 0600) for the duration of the block.

    A fresh descriptor per call, so the lock also excludes other threads and other KeyStore
    instances in this process, not only other processes.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
