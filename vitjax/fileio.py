"""Atomic writes that respect the umask.

A file is written to a temporary sibling, given the mode a normal `open()` would have given it
(0o666 & ~umask; `tempfile.mkstemp` creates 0o600), and renamed into place with `os.replace`, so
an interrupted run never leaves a half-written file and readers never see one.
"""

from __future__ import annotations

import os
import shutil
import tempfile


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Writes `data` to `path` (parent folders created) via a temporary sibling and os.replace."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix="-" + os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Writes `text` (UTF-8) to `path` atomically; see `write_bytes_atomic`."""
    write_bytes_atomic(path, text.encode("utf-8"))


def replace_dir_atomic(tmp_dir: str | os.PathLike[str], final_dir: str | os.PathLike[str]) -> None:
    """Moves the finished folder `tmp_dir` (a sibling of `final_dir`) to `final_dir`.

    The folder gets mode 0o777 & ~umask (`tempfile.mkdtemp` creates 0o700). An existing
    `final_dir` is first renamed aside and removed only once the new folder is in place; the
    caller decides whether it may be replaced at all.
    """
    tmp_dir, final_dir = os.fspath(tmp_dir), os.fspath(final_dir)
    os.chmod(tmp_dir, 0o777 & ~_umask())
    if not os.path.lexists(final_dir):
        os.replace(tmp_dir, final_dir)
        return
    parent, name = os.path.split(os.path.abspath(final_dir))
    old = tempfile.mkdtemp(dir=parent, prefix=f".old-{name}-")
    aside = os.path.join(old, name)
    os.replace(final_dir, aside)
    try:
        os.replace(tmp_dir, final_dir)
    except BaseException:
        os.replace(aside, final_dir)
        os.rmdir(old)
        raise
    shutil.rmtree(old)
