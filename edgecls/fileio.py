"""Atomic writes and hashing, shared by training, export and the runtime (no torch here).

A file is written to a temporary name in the same directory, flushed, fsynced and renamed into place,
so a crash leaves either the old file or the new one, never a half-written file with the final name.
A directory (a bundle) is built beside its final place and exchanged with the old one in one rename.
Temporary names carry the writer's pid, so what a killed writer left behind is recognised and removed
by the next writer, while a live writer's files are left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(directory: Path, name: str, kind: str) -> list[Path]:
    """Remove `.{name}.{kind}-{pid}-*` left in `directory` by writers that no longer run; return what went."""
    pattern = re.compile(rf"^\.{re.escape(name)}\.{kind}-(\d+)-[A-Za-z0-9_]+(\.partial)?$")  # mkstemp's or token_hex
    removed = []
    for path in directory.glob(f".{name}.{kind}-*") if directory.is_dir() else ():
        match = pattern.match(path.name)
        if match and not _pid_alive(int(match.group(1))):
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)
            removed.append(path)
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike, private: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is renamed onto `path`. `private`: mode 0600 from the first
    byte (mkstemp's), for secrets such as signing keys; otherwise the usual mode under the umask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent, path.name, "write")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.write-{os.getpid()}-", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    if not private:
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; give the final file the usual permissions
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any], private: bool = False) -> Path:
    """Call `write(file)` on a temporary file and move it onto `path` only if it succeeds."""
    with atomic_path(path, private) as tmp, open(tmp, "wb") as f:
        write(f)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, private: bool = False) -> Path:
    return atomic_write(path, lambda f: f.write(data), private)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
    return atomic_write_bytes(path, text.encode())


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directory entries in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError, TypeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this filesystem or kernel cannot exchange
        return False
    raise OSError(err, f"cannot exchange {a} and {b}: {os.strerror(err)}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def staged_directory(final: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty directory beside `final`; on success it replaces `final` in one rename.

    On Linux the old and the new directory are exchanged atomically, then the old one is deleted. Elsewhere
    the old one is first renamed aside (`.NAME.old-PID-*`); a crash in that instant leaves it there, whole.
    On failure the staging directory is deleted and `final` is untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(final):
        remove_stale(final.parent, final.name, "stage")
        stage = final.parent / f".{final.name}.stage-{os.getpid()}-{secrets.token_hex(4)}"
        stage.mkdir()
        os.chmod(stage, 0o777 & ~_umask())
        try:
            yield stage
            _fsync_dir(stage)
            if not final.exists():
                os.rename(stage, final)
            elif _exchange(stage, final):
                shutil.rmtree(stage)
            else:
                aside = final.parent / f".{final.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
                os.rename(final, aside)
                os.rename(stage, final)
                shutil.rmtree(aside)
            _fsync_dir(final.parent)
        finally:
            if stage.exists():
                shutil.rmtree(stage, ignore_errors=True)


@contextmanager
def _exclusive(final: Path) -> Iterator[None]:
    """One writer of `final` at a time (an advisory lock on `.NAME.lock` beside it, removed by its holder): a second
    one fails at once instead of silently replacing the first one's result after both said they wrote it."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    from edgecls.errors import BusyError

    path = final.parent / f".{final.name}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise BusyError(
                f"another edgecls process (pid {holder}) is writing {final}; wait for it to finish, or write elsewhere"
            ) from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder removed that file between our open and our lock: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def cache_dir(name: str) -> Path:
    """`$EDGECLS_CACHE/name` (default ~/.cache/edgecls/name): engines, timing caches, decoded image folders."""
    return Path(os.environ.get("EDGECLS_CACHE", Path.home() / ".cache" / "edgecls")) / name


@contextmanager
def atomic_npy(path: str | os.PathLike, shape: tuple[int, ...], dtype=np.uint8) -> Iterator[np.ndarray]:
    """Yield a writable memory map of a new .npy file; it takes the name `path` only once filled and flushed."""
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        yield out
        out.flush()
        del out


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
