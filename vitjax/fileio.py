"""Atomic, umask-respecting writes of files and whole directories.

Every writer in vitjax that must not leave a half-written file or destroy what it did not create
goes through here:

  * `atomic_write_bytes`/`atomic_write_text`/`atomic_write_json` write a unique temporary sibling
    and `os.replace` it onto the target, so a reader sees the old file or the new one, never a
    mixture. The temporary file is created with mode 0o666 filtered by the process umask, like
    `open(path, "w")`: `tempfile.mkstemp` would create it 0o600 and the final file would then be
    unreadable to the group and others whatever the user's umask says.
  * `make_temp_dir` + `replace_dir` build a directory next to its destination and rename it into
    place (`publish_dir` instead keeps a destination that already exists: content-addressed
    outputs such as feature-store groups). `check_output_dir` decides beforehand whether the destination may be replaced at all:
    only an empty directory, or (with `overwrite=True`) a directory that holds nothing but what a
    previous run of the same writer produced. Anything else is refused with an error naming it.

Examples:
  >>> atomic_write_json("/runs/a/results.json", {"x": 1})
  >>> tmp = make_temp_dir("/ckpt/dino_vitb16")
  >>> ...  # write into tmp
  >>> replace_dir(tmp, "/ckpt/dino_vitb16")
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from collections.abc import Callable, Collection
from typing import Any

from absl import logging

from vitjax.errors import VitjaxError


def _tmp_sibling(path: str, kind: str) -> str:
    parent, name = os.path.split(os.path.abspath(path))
    return os.path.join(parent, f".{name}.{kind}-{uuid.uuid4().hex}")


def fsync_dir(path: str | os.PathLike) -> None:
    """fsyncs a directory so that a rename inside it survives a power loss."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = True) -> None:
    """Writes `data` to `path` through a temporary sibling and `os.replace`.

    The file gets the mode a plain `open(path, "wb")` would give (0o666 minus the umask); missing
    parent folders are created.
    With `fsync`, the data and the directory entry are flushed to disk before returning.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = _tmp_sibling(path, "tmp")
    # O_EXCL: never write through a file or link someone else put at the temporary name.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.remove(tmp)
        raise
    if fsync:
        fsync_dir(os.path.dirname(os.path.abspath(path)))


def atomic_write_text(path: str | os.PathLike, text: str, fsync: bool = True) -> None:
    """`atomic_write_bytes` of UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"), fsync)


def atomic_write_json(path: str | os.PathLike, obj: Any, fsync: bool = True) -> None:
    """Writes `obj` as indented, key-sorted JSON (with a final newline) atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n", fsync)


def atomic_write_with(
    path: str | os.PathLike, write: Callable[[Any], None], fsync: bool = True
) -> None:
    """Calls `write(binary file)` on a temporary sibling, then renames it onto `path`.

    For writers that stream into a file object (`np.save`, PIL, matplotlib).
    """
    path = os.fspath(path)
    tmp = _tmp_sibling(path, "tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.remove(tmp)
        raise


def check_output_dir(
    path: str | os.PathLike,
    *,
    overwrite: bool,
    marker: str,
    allowed: Collection[str],
    what: str,
    error: type[VitjaxError],
    flag: str = "overwrite=True",
    protect: Collection[str | os.PathLike] = (),
) -> bool:
    """Decides whether directory `path` may be (re)written; raises `error` when it may not.

    Args:
      path: destination directory.
      overwrite: the caller asked to replace a previous output.
      marker: file whose presence identifies a previous output of this writer (e.g. spec.json).
      allowed: every name a previous output may hold (the marker included); anything else in
        the directory means it is not (only) a previous output, so it is never replaced.
      what: what the writer writes, for messages ("vitjax checkpoint").
      error: the VitjaxError subclass to raise.
      flag: how the user asks for `overwrite` (named in the message).
      protect: paths that must never be inside `path` (e.g. the input file).

    Returns:
      True when `path` exists (an empty directory or a previous output that will be replaced),
      False when it does not exist yet.

    Raises:
      error: `path` is a file; holds a protected path; or is non-empty and either `overwrite`
        is False or it holds anything other than a previous output.
    """
    path = os.path.abspath(os.fspath(path))
    real = os.path.realpath(path)
    for item in protect:
        item_real = os.path.realpath(os.fspath(item))
        if item_real == real or item_real.startswith(real.rstrip(os.sep) + os.sep):
            raise error(
                f"{path}: the output directory contains {os.fspath(item)}, which must not be "
                f"replaced; choose an output directory of its own (e.g. a new sub-folder)"
            )
    if not os.path.lexists(path):
        return False
    if not os.path.isdir(path) or os.path.islink(path):
        raise error(f"{path}: exists and is not a directory; choose another output directory")
    names = sorted(os.listdir(path))
    if not names:
        return True
    if marker not in names:
        raise error(
            f"{path}: directory is not empty and holds no {what} (no {marker}; found "
            f"{names[:6]}{' ...' if len(names) > 6 else ''}); nothing in it is replaced. Choose "
            "an empty or new output directory"
        )
    foreign = [n for n in names if n not in allowed]
    if foreign:
        raise error(
            f"{path}: holds a previous {what} but also other files {foreign[:6]}; it is never "
            "replaced. Move those files away or choose a new output directory"
        )
    if not overwrite:
        raise error(
            f"{path}: already holds a {what}; pass {flag} to replace it, or choose a new "
            "output directory"
        )
    return True


def make_temp_dir(dest: str | os.PathLike) -> str:
    """Creates an empty temporary sibling of `dest` (parents too), mode 0o777 minus the umask."""
    dest = os.path.abspath(os.fspath(dest))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = _tmp_sibling(dest, "tmp")
    os.mkdir(tmp)
    return tmp


def publish_dir(tmp: str | os.PathLike, dest: str | os.PathLike) -> bool:
    """Renames the finished directory `tmp` to `dest` unless `dest` already holds something.

    For content-addressed outputs (a feature-store group or entry, named by its key): when another
    writer got there first, its directory holds the same thing, so it is kept and `tmp` is removed.
    Nothing is ever replaced (a directory cannot be renamed over a non-empty one).

    Returns:
      True when `tmp` became `dest`; False when `dest` already existed (then `tmp` is gone).
    """
    tmp, dest = os.fspath(tmp), os.fspath(dest)
    try:
        os.rename(tmp, dest)
    except OSError as err:
        if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    fsync_dir(os.path.dirname(os.path.abspath(dest)))
    return True


def replace_dir(
    tmp: str | os.PathLike, dest: str | os.PathLike, allowed: Collection[str] = ()
) -> None:
    """Renames the finished directory `tmp` onto `dest`, replacing what `dest` held.

    The caller must have checked with `check_output_dir` that `dest` may be replaced. A directory
    cannot be renamed over a non-empty one, so an existing `dest` is first renamed aside and
    emptied only after the new one is in place: a crash leaves either the old or the new
    directory under `dest` (plus at worst a hidden `.name.old-*` sibling). Only the `allowed`
    names are deleted from the old directory; if anything else appeared in it since the check,
    the old directory is kept (renamed) and a warning says where.
    """
    tmp, dest = os.path.abspath(os.fspath(tmp)), os.path.abspath(os.fspath(dest))
    if os.path.isdir(dest) and not os.path.islink(dest):
        old = _tmp_sibling(dest, "old")
        os.replace(dest, old)
        try:
            os.replace(tmp, dest)
        except BaseException:
            os.replace(old, dest)
            raise
        for name in os.listdir(old):
            if name in allowed:
                item = os.path.join(old, name)
                if os.path.isdir(item) and not os.path.islink(item):
                    shutil.rmtree(item)
                else:
                    os.remove(item)
        try:
            os.rmdir(old)
        except OSError:
            logging.warning(
                "%s: kept the replaced directory as %s (it held other files)", dest, old
            )
    else:
        os.replace(tmp, dest)
    fsync_dir(os.path.dirname(dest))
