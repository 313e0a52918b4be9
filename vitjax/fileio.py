"""Atomic file writes that respect the umask.

`tempfile.mkstemp` creates its file `-rw-------` whatever the umask, and `os.replace` keeps that
mode, so outputs written through it were private while every other file of the user is 0644.
These writers give the final file the mode a plain `open(path, "w")` would (0o666 & ~umask).
"""

from __future__ import annotations

import os
import shutil
import tempfile


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back (a process-wide value that no
    # other code here changes).
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode() -> int:
    """The permission bits `open(path, "w")` gives a new file under the current umask."""
    return 0o666 & ~_umask()


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems (and Windows) cannot sync a directory
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path`: temporary sibling, fsync, chmod to the umask's mode, os.replace.

    The folder is created if needed. A reader sees either the old file or the new one, never a
    partial write; on any error the temporary file is removed and `path` is left as it was.
    """
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix="-" + os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(folder)


def write_text_atomic(path: str | os.PathLike, data: str) -> None:
    """`write_bytes_atomic` of `data` encoded as UTF-8."""
    write_bytes_atomic(path, data.encode("utf-8"))


def replace_dir_atomic(tmp_dir: str | os.PathLike, final_dir: str | os.PathLike) -> None:
    """Moves the finished folder `tmp_dir` to `final_dir`, replacing a previous `final_dir`.

    `tmp_dir` must be a sibling of `final_dir` (same filesystem). The old folder is first renamed
    aside and removed only once the new one is in place, so an interruption leaves either the old
    or the new folder under `final_dir` (plus, at worst, the aside copy). The caller decides
    whether `final_dir` may be replaced at all. The new folder's mode follows the umask.
    """
    tmp_dir = os.path.abspath(os.fspath(tmp_dir))
    final_dir = os.path.abspath(os.fspath(final_dir))
    os.chmod(tmp_dir, 0o777 & ~_umask())
    if not os.path.lexists(final_dir):
        os.replace(tmp_dir, final_dir)
        _fsync_dir(os.path.dirname(final_dir))
        return
    aside = tempfile.mkdtemp(dir=os.path.dirname(final_dir), prefix=".old-")
    old = os.path.join(aside, os.path.basename(final_dir))
    os.replace(final_dir, old)
    try:
        os.replace(tmp_dir, final_dir)
    except BaseException:
        os.replace(old, final_dir)
        os.rmdir(aside)
        raise
    _fsync_dir(os.path.dirname(final_dir))
    shutil.rmtree(aside, ignore_errors=True)
