"""On-disk feature store: chunk-resumable, memory-mapped, keyed by everything that shaped the features.

Layout (all JSON is human-readable, all names stable)::

    root/
      store.json                               {"format": "vitjax-feature-store/1"}
      <model-name>-<hash16>/                   one group: model + weights + geometry + user key
        key.json                               the full group key and its sha256
        meta/<name>.npy                        per-image metadata arrays [N, ...] (image_id, labels)
        layer_<i>/                             one entry per layer (key = group key + layer)
          manifest.json                        key, status, array shapes/dtypes, checksums
          patch.npy      [N, h, w, D]          preallocated .npy, read back with np.load(mmap_mode)
          cls.npy        [N, D]
          registers.npy  [N, R, D]             only for models with register tokens
          chunks/rows_<start>_<stop>.json      done-markers of an incomplete entry

Why one preallocated `.npy` per array instead of zarr or tensorstore: the reader is plain
`np.load(path, mmap_mode="r")`, which gives engines a real `np.memmap` [N, ...] with no extra
dependency or API, random row access costs one page fault, and rows of a fixed-shape array map to
byte ranges, so resumable writing needs nothing more than `pwrite` at an offset. zarr is not
installed; tensorstore is (via orbax) but its chunked formats would force every engine through its
read API and its async writes add nothing when the device, not the disk, is the bottleneck.

Crash safety (SIGKILL at any instant leaves a store that resumes to the same bytes):
  * entries are built in a temporary directory and renamed into place, so a half-created entry is
    never seen; the data area is reserved with `posix_fallocate`, so a full disk shows up before any
    work is done wherever the filesystem supports it;
  * rows are written with `pwrite` (never through the memory map, where a full disk is a SIGBUS), the
    files are fsync'ed (unless `FeatureStore(fsync=False)`: then SIGKILL-safe but not power-loss
    safe), and only then is a done-marker for that row range renamed into `chunks/`; rows without a
    marker are recomputed, so a half-written chunk is never read as valid;
  * a resumed run writes only rows that no marker covers, so rows already done keep their bytes;
  * once every row is covered, the manifest is atomically replaced by a "complete" one carrying a
    CRC32 of each array, and the markers are deleted. Only complete entries are ever returned.

Several processes (multi-host extraction) may create the same entry at once: directory rename is
atomic and fails on an existing non-empty target, so exactly one creation wins and the others
open it. Each process writes disjoint row ranges with their own markers. The root must be on a
filesystem every process sees (NFS, Filestore, GCS-fuse), and one process finalises after a barrier.

Examples:
  >>> store = FeatureStore("/tmp/features")
  >>> group = store.group({"model": "dino_vits16", "split": "val"}, name="dino_vits16")
  >>> entry = group.entry(11, {"patch": ((4, 14, 14, 384), "float16")})
  >>> entry.write_rows(0, {"patch": np.zeros((4, 14, 14, 384), np.float16)})
  >>> entry.finalize()
  >>> entry.open_arrays()["patch"].shape
  (4, 14, 14, 384)
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
from absl import logging

from vitjax import canonical, fileio
from vitjax.errors import StoreError

FORMAT = "vitjax-feature-store/1"
STORE_FILE = "store.json"
KEY_FILE = "key.json"
MANIFEST_FILE = "manifest.json"
CHUNKS_DIR = "chunks"
META_DIR = "meta"

# Dtypes a store may hold, with the numpy dtype of their bytes on disk. bfloat16 has no .npy
# descriptor, so its bits are stored as uint16 and viewed back as ml_dtypes.bfloat16.
STORAGE_DTYPES = {
    "float32": (np.dtype(np.float32), np.dtype(np.float32)),
    "float16": (np.dtype(np.float16), np.dtype(np.float16)),
    "bfloat16": (np.dtype(ml_dtypes.bfloat16), np.dtype(np.uint16)),
}

_MARKER_RE = re.compile(r"^rows_(\d+)_(\d+)\.json$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_CRC_BLOCK = 64 << 20


# ---------------------------------------------------------------------------------------------
# Keys


def canonical_json(key: Mapping[str, Any]) -> str:
    """The canonical JSON text of a key (`vitjax.canonical`); StoreError names a bad field."""
    return canonical.canonical_json(key, StoreError)


def key_hash(key: Mapping[str, Any]) -> str:
    """sha256 hex digest of `canonical_json(key)`."""
    return canonical.key_hash(key, StoreError)


def _key_differences(stored: Any, wanted: Any, path: str = "") -> list[str]:
    """Human-readable list of fields where two canonical keys differ."""
    if isinstance(stored, dict) and isinstance(wanted, dict):
        diffs = []
        for k in sorted(set(stored) | set(wanted)):
            sub = f"{path}.{k}" if path else k
            if k not in stored:
                diffs.append(f"{sub}: missing in store, wanted {wanted[k]!r}")
            elif k not in wanted:
                diffs.append(f"{sub}: stored {stored[k]!r}, not in request")
            else:
                diffs += _key_differences(stored[k], wanted[k], sub)
        return diffs
    if stored != wanted:
        return [f"{path or '<root>'}: stored {stored!r}, wanted {wanted!r}"]
    return []


# ---------------------------------------------------------------------------------------------
# Atomic file helpers


def _fsync_dir(path: Path) -> None:
    fileio.fsync_dir(path)


def _disk_full(err: OSError) -> bool:
    return err.errno in (errno.ENOSPC, errno.EDQUOT)


def atomic_write_bytes(path: Path, data: bytes, fsync: bool = True) -> None:
    """Writes `data` to `path` via a unique temporary name (fsync'ed) and os.replace.

    The file's mode follows the umask (see `vitjax.fileio`).
    """
    fileio.atomic_write_bytes(path, data, fsync)


def atomic_write_json(path: Path, obj: Any, fsync: bool = True) -> None:
    """Writes indented JSON to `path` atomically."""
    fileio.atomic_write_json(path, obj, fsync)


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """Saves `array` as .npy at `path` atomically (no pickles); the mode follows the umask."""
    fileio.atomic_write_with(path, lambda f: np.save(f, np.asarray(array), allow_pickle=False))


def read_json(path: Path, what: str) -> dict:
    """Reads a JSON object, raising StoreError naming the file if it is missing or corrupt."""
    try:
        with open(path) as f:
            obj = json.load(f)
    except FileNotFoundError:
        raise StoreError(f"{what} {path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StoreError(f"{what} {path} is corrupted (not valid JSON: {err})") from None
    if not isinstance(obj, dict):
        raise StoreError(f"{what} {path} is corrupted: expected a JSON object")
    return obj


def pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    """Writes all of `data` at `offset` of the open file `fd` (loops over short writes).

    The single place where feature bytes reach the disk: tests replace it to simulate a full disk.
    """
    while len(data):
        written = os.pwrite(fd, data, offset)
        data = data[written:]
        offset += written


def _npy_header(shape: tuple[int, ...], disk_dtype: np.dtype) -> bytes:
    """Bytes of a .npy (v1.0) header for a C-order array."""
    buf = io.BytesIO()
    header = {
        "descr": np.lib.format.dtype_to_descr(disk_dtype),
        "fortran_order": False,
        "shape": tuple(int(s) for s in shape),
    }
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def _npy_data_offset(path: Path) -> tuple[int, tuple[int, ...], np.dtype]:
    """Offset of the data area, shape and dtype of a .npy file."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        if fortran:
            raise StoreError(f"array file {path}: expected C order, found Fortran order")
        return f.tell(), tuple(shape), dtype


def _reserve(fd: int, offset: int, nbytes: int) -> None:
    """Reserves the data area so a full disk fails now rather than mid-extraction."""
    if nbytes == 0:
        return
    try:
        os.posix_fallocate(fd, offset, nbytes)
    except OSError as err:
        if _disk_full(err):
            raise
        # Filesystems without fallocate (some network mounts): a sparse file still works.
        os.ftruncate(fd, offset + nbytes)


def _crc32_file_data(path: Path, offset: int) -> str:
    crc = 0
    with open(path, "rb") as f:
        f.seek(offset)
        while block := f.read(_CRC_BLOCK):
            crc = zlib.crc32(block, crc)
    return f"crc32:{crc:08x}"


# ---------------------------------------------------------------------------------------------
# Store, groups, entries


class FeatureStore:
    """A directory of feature groups. Creating one on a missing or empty directory initialises it.

    Args:
      root: directory of the store.
      fsync: fsync feature rows before marking them done. A SIGKILL never loses marked rows
        either way (the page cache outlives the process); fsync=True also survives an OS crash or
        power loss, at the cost of waiting for the disk on every batch.

    Raises:
      StoreError: `root` holds something that is not a vitjax feature store of this format.
    """

    def __init__(self, root: str | os.PathLike, fsync: bool = True):
        self.root = Path(root)
        self.fsync = fsync
        marker = self.root / STORE_FILE
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"feature store root {self.root} exists and is not a directory")
        self.root.mkdir(parents=True, exist_ok=True)
        if not marker.exists():
            leftovers = [p.name for p in self.root.iterdir() if not p.name.startswith(".")]
            if leftovers:
                raise StoreError(
                    f"feature store root {self.root} is not empty and has no {STORE_FILE}: "
                    f"refusing to use a directory that is not a vitjax store (found {leftovers[:5]})"
                )
            try:
                atomic_write_json(marker, {"format": FORMAT})
            except OSError as err:
                raise StoreError(f"cannot initialise feature store {self.root}: {err}") from err
        info = read_json(marker, "store file")
        if info.get("format") != FORMAT:
            raise StoreError(
                f"store file {marker}: format {info.get('format')!r}, expected {FORMAT!r}"
            )

    def group_dir(self, key: Mapping[str, Any], name: str = "features") -> Path:
        """Directory of the group for `key` (it need not exist)."""
        safe = re.sub(r"[^A-Za-z0-9_.\-]+", "_", name).strip("._") or "features"
        return self.root / f"{safe}-{key_hash(key)[:16]}"

    def group(self, key: Mapping[str, Any], name: str = "features") -> Group:
        """Opens the group for `key`, creating it atomically if missing.

        Args:
          key: JSON-like dict of everything that shaped the features except the layer.
          name: human-readable prefix of the directory (the model name).

        Raises:
          StoreError: the directory holds a group written for another key (another model or
            geometry), or its key.json is corrupted.
        """
        path = self.group_dir(key, name)
        record = {
            "format": FORMAT,
            "key_hash": key_hash(key),
            "key": json.loads(canonical_json(key)),
        }
        if not path.exists():
            tmp = Path(fileio.make_temp_dir(path))
            try:
                (tmp / META_DIR).mkdir()
                atomic_write_json(tmp / KEY_FILE, record)
                # Another process may have created it first: fine, Group() checks the key.
                fileio.publish_dir(tmp, path)
            except OSError as err:
                if _disk_full(err):
                    raise StoreError(f"disk full creating feature group {path}") from err
                raise
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        return Group(path, record, fsync=self.fsync)

    def groups(self) -> list[dict]:
        """The key records (key.json contents plus 'path') of every group in the store."""
        out = []
        for path in sorted(self.root.iterdir()):
            if path.is_dir() and not path.name.startswith(".") and (path / KEY_FILE).exists():
                record = read_json(path / KEY_FILE, "group key file")
                record["path"] = str(path)
                out.append(record)
        return out


class Group:
    """Features of one model on one set of images: per-layer entries plus shared metadata."""

    def __init__(self, path: Path, record: dict, fsync: bool = True):
        self.path = Path(path)
        self.fsync = fsync
        stored = read_json(self.path / KEY_FILE, "group key file")
        if stored.get("format") != FORMAT:
            raise StoreError(
                f"group key file {self.path / KEY_FILE}: format {stored.get('format')!r}, "
                f"expected {FORMAT!r}"
            )
        diffs = _key_differences(stored.get("key"), record["key"])
        if diffs or stored.get("key_hash") != record["key_hash"]:
            raise StoreError(
                f"feature group {self.path} was written by another model or geometry: "
                + "; ".join(diffs or ["key_hash differs"])
            )
        self.key: dict = record["key"]
        self.key_hash: str = record["key_hash"]

    def entry_dir(self, layer: int) -> Path:
        return self.path / f"layer_{int(layer):02d}"

    def entry(
        self,
        layer: int,
        arrays: Mapping[str, tuple[tuple[int, ...], str]],
        info: Mapping[str, Any] | None = None,
    ) -> Entry:
        """Opens the entry of `layer`, creating it (preallocated, incomplete) if missing.

        Args:
          layer: non-negative block index.
          arrays: {name: (shape, dtype name)}: what the entry holds; each shape starts with N.
            dtype names are the keys of STORAGE_DTYPES.
          info: extra human-readable fields for the manifest (grid, patch size, ...).

        Raises:
          StoreError: the existing entry holds another key or other array shapes, its manifest
            is corrupted, or the disk is full.
        """
        layer = int(layer)
        path = self.entry_dir(layer)
        key = dict(self.key, layer=layer)
        array_specs = {}
        for name, (shape, dtype) in arrays.items():
            if dtype not in STORAGE_DTYPES:
                raise StoreError(
                    f"array {name}: dtype {dtype!r}, expected one of {sorted(STORAGE_DTYPES)}"
                )
            if not _NAME_RE.match(name):
                raise StoreError(f"array name {name!r}: expected letters, digits, '_', '.', '-'")
            array_specs[name] = {
                "file": f"{name}.npy",
                "shape": [int(s) for s in shape],
                "dtype": dtype,
            }
        rows = {spec["shape"][0] for spec in array_specs.values()}
        if len(rows) != 1:
            raise StoreError(f"entry {path}: arrays disagree on the number of rows: {arrays}")
        manifest = {
            "format": FORMAT,
            "key_hash": key_hash(key),
            "key": json.loads(canonical_json(key)),
            "status": "incomplete",
            "num_rows": rows.pop(),
            "arrays": array_specs,
            "info": json.loads(canonical_json(info or {})),
        }
        if not path.exists():
            self._create_entry(path, manifest)
        return Entry(path, manifest, fsync=self.fsync)

    def _create_entry(self, path: Path, manifest: dict) -> None:
        tmp = Path(fileio.make_temp_dir(path))
        try:
            (tmp / CHUNKS_DIR).mkdir()
            for spec in manifest["arrays"].values():
                disk_dtype = STORAGE_DTYPES[spec["dtype"]][1]
                header = _npy_header(tuple(spec["shape"]), disk_dtype)
                nbytes = int(np.prod(spec["shape"])) * disk_dtype.itemsize
                with open(tmp / spec["file"], "wb") as f:
                    f.write(header)
                    f.flush()
                    _reserve(f.fileno(), len(header), nbytes)
                    os.fsync(f.fileno())
            atomic_write_json(tmp / MANIFEST_FILE, manifest)
            # Another process may have created it first: fine, Entry() checks it is the same entry.
            fileio.publish_dir(tmp, path)
        except OSError as err:
            if _disk_full(err):
                raise StoreError(
                    f"disk full creating feature entry {path} "
                    f"({sum(_array_nbytes(s) for s in manifest['arrays'].values())} bytes needed)"
                ) from err
            raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def write_metadata(self, metadata: Mapping[str, np.ndarray], num_rows: int) -> None:
        """Stores per-image arrays [N, ...] under meta/ (atomically, only when changed)."""
        meta_dir = self.path / META_DIR
        meta_dir.mkdir(exist_ok=True)
        for name, value in metadata.items():
            if not _NAME_RE.match(name):
                raise StoreError(f"metadata {name!r}: expected letters, digits, '_', '.', '-'")
            array = np.asarray(value)
            if array.dtype == object:
                raise StoreError(f"metadata {name!r}: object arrays cannot be stored")
            if array.ndim == 0 or array.shape[0] != num_rows:
                raise StoreError(
                    f"metadata {name!r}: expected shape [N={num_rows}, ...], got {array.shape}"
                )
            path = meta_dir / f"{name}.npy"
            if path.exists():
                old = np.load(path, allow_pickle=False)
                if old.dtype == array.dtype and np.array_equal(old, array):
                    continue
                logging.info("Replacing stored metadata %s (values differ).", path)
            try:
                atomic_save_npy(path, array)
            except OSError as err:
                if _disk_full(err):
                    raise StoreError(f"disk full writing metadata {path}") from err
                raise

    def read_metadata(self) -> dict[str, np.ndarray]:
        """All stored per-image metadata arrays."""
        meta_dir = self.path / META_DIR
        if not meta_dir.is_dir():
            return {}
        out = {}
        for path in sorted(meta_dir.glob("*.npy")):
            try:
                out[path.stem] = np.load(path, allow_pickle=False)
            except ValueError as err:
                raise StoreError(f"metadata file {path} is corrupted: {err}") from err
        return out


def _array_nbytes(spec: Mapping[str, Any]) -> int:
    return int(np.prod(spec["shape"])) * STORAGE_DTYPES[spec["dtype"]][1].itemsize


class Entry:
    """One layer's arrays in a group: written row range by row range, then finalised."""

    def __init__(self, path: Path, wanted: dict, fsync: bool = True):
        self.path = Path(path)
        self.fsync = fsync
        self.manifest_path = self.path / MANIFEST_FILE
        manifest = read_json(self.manifest_path, "manifest")
        if manifest.get("format") != FORMAT:
            raise StoreError(
                f"manifest {self.manifest_path}: format {manifest.get('format')!r}, "
                f"expected {FORMAT!r}"
            )
        diffs = _key_differences(manifest.get("key"), wanted["key"])
        diffs += _key_differences(manifest.get("arrays"), wanted["arrays"], "arrays")
        if diffs:
            raise StoreError(
                f"feature entry {self.path} (manifest {self.manifest_path}) was written by another "
                "model or geometry: " + "; ".join(diffs)
            )
        if manifest.get("status") not in ("incomplete", "complete"):
            raise StoreError(
                f"manifest {self.manifest_path}: status {manifest.get('status')!r}, expected "
                "'incomplete' or 'complete'"
            )
        self.manifest = manifest
        self.num_rows: int = int(manifest["num_rows"])
        self._layout = {}
        for name, spec in manifest["arrays"].items():
            file = self.path / spec["file"]
            if not file.exists():
                raise StoreError(f"feature entry {self.path}: array file {file} is missing")
            offset, shape, dtype = _npy_data_offset(file)
            disk_dtype = STORAGE_DTYPES[spec["dtype"]][1]
            if shape != tuple(spec["shape"]) or dtype != disk_dtype:
                raise StoreError(
                    f"array file {file}: shape {shape} dtype {dtype}, manifest "
                    f"{self.manifest_path} says {tuple(spec['shape'])} {disk_dtype}"
                )
            if file.stat().st_size < offset + _array_nbytes(spec):
                raise StoreError(f"array file {file} is truncated")
            row_bytes = _array_nbytes(spec) // max(self.num_rows, 1)
            self._layout[name] = (file, offset, row_bytes, disk_dtype, tuple(spec["shape"]))
        # CRC32 of each array's rows written so far by this object, while they arrive in order
        # from row 0 (one uninterrupted single-process run): finalize() then needs no read-back.
        self._running_crc: dict[str, tuple[int, int] | None] = dict.fromkeys(self._layout, (0, 0))

    @property
    def is_complete(self) -> bool:
        return self.manifest["status"] == "complete"

    def done_rows(self) -> np.ndarray:
        """bool [N]: rows covered by a done-marker (all True once complete)."""
        done = np.zeros(self.num_rows, bool)
        if self.is_complete:
            done[:] = True
            return done
        chunks = self.path / CHUNKS_DIR
        if chunks.is_dir():
            for marker in chunks.iterdir():
                match = _MARKER_RE.match(marker.name)
                if match:
                    done[int(match.group(1)) : int(match.group(2))] = True
        return done

    def write_rows(self, start: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Writes rows [start, start + n) of every array durably, then marks them done.

        Args:
          start: first row.
          arrays: {name: array [n, ...]} for every array of the entry, in its stored dtype.

        Raises:
          StoreError: a full disk (the rows stay unmarked: the entry resumes after space is
            freed), or arrays that do not match the entry.
        """
        if self.is_complete:
            raise StoreError(f"feature entry {self.path} is complete; it cannot be rewritten")
        if set(arrays) != set(self._layout):
            raise StoreError(
                f"feature entry {self.path}: got arrays {sorted(arrays)}, "
                f"expected {sorted(self._layout)}"
            )
        n = None
        try:
            for name, (file, offset, row_bytes, disk_dtype, shape) in self._layout.items():
                array = np.ascontiguousarray(arrays[name])
                if array.shape[1:] != shape[1:] or array.itemsize != disk_dtype.itemsize:
                    raise StoreError(
                        f"array {name} of {self.path}: rows of shape {array.shape[1:]} dtype "
                        f"{array.dtype}, expected {shape[1:]} of {disk_dtype.itemsize}-byte items"
                    )
                n = array.shape[0] if n is None else n
                if array.shape[0] != n or start < 0 or start + n > self.num_rows:
                    raise StoreError(
                        f"array {name} of {self.path}: rows {start}:{start + array.shape[0]} "
                        f"outside [0, {self.num_rows}) or unequal row counts"
                    )
                data = memoryview(array.view(np.uint8).reshape(-1))
                fd = os.open(file, os.O_WRONLY)
                try:
                    pwrite_all(fd, data, offset + start * row_bytes)
                    if self.fsync:
                        os.fsync(fd)
                finally:
                    os.close(fd)
                running = self._running_crc[name]
                in_order = running is not None and running[0] == start
                self._running_crc[name] = (
                    (start + n, zlib.crc32(data, running[1])) if in_order else None
                )
            # Only now, with every array's rows on disk, may the rows count as done.
            atomic_write_json(
                self.path / CHUNKS_DIR / f"rows_{start:010d}_{start + n:010d}.json",
                {"start": start, "stop": start + n},
                fsync=self.fsync,
            )
        except OSError as err:
            if _disk_full(err):
                raise StoreError(
                    f"disk full writing rows {start}:{start + (n or 0)} of feature entry "
                    f"{self.path}; those rows stay unmarked and the entry is resumable: free "
                    "space and run the same extraction again"
                ) from err
            raise

    def finalize(self) -> None:
        """Marks a fully written entry complete (with checksums) and drops its done-markers.

        Raises:
          StoreError: some rows have not been written yet.
        """
        if self.is_complete:
            return
        missing = np.flatnonzero(~self.done_rows())
        if missing.size:
            raise StoreError(
                f"feature entry {self.path}: {missing.size} rows are not written yet "
                f"(first: {missing[:5].tolist()})"
            )
        manifest = dict(self.manifest, status="complete")
        manifest["checksums"] = {}
        for name, (file, offset, *_rest) in self._layout.items():
            running = self._running_crc[name]
            if running is not None and running[0] == self.num_rows:
                manifest["checksums"][name] = f"crc32:{running[1]:08x}"
            else:  # resumed or multi-process: rows came from elsewhere, read them back
                manifest["checksums"][name] = _crc32_file_data(file, offset)
        atomic_write_json(self.manifest_path, manifest)
        self.manifest = manifest
        shutil.rmtree(self.path / CHUNKS_DIR, ignore_errors=True)

    def reload(self) -> None:
        """Re-reads the manifest (after another process finalised the entry)."""
        manifest = read_json(self.manifest_path, "manifest")
        if manifest.get("key_hash") != self.manifest["key_hash"]:
            raise StoreError(f"manifest {self.manifest_path} changed to another key")
        self.manifest = manifest

    def verify(self) -> None:
        """Recomputes the checksums of a complete entry.

        Raises:
          StoreError: the entry is incomplete or an array's bytes changed since it was finalised.
        """
        if not self.is_complete:
            raise StoreError(f"feature entry {self.path} is incomplete")
        for name, (file, offset, *_rest) in self._layout.items():
            got = _crc32_file_data(file, offset)
            want = self.manifest.get("checksums", {}).get(name)
            if got != want:
                raise StoreError(f"array file {file}: checksum {got}, manifest says {want}")

    def open_arrays(self) -> dict[str, np.memmap]:
        """Read-only memory maps of a complete entry's arrays, in their logical dtypes."""
        if not self.is_complete:
            raise StoreError(f"feature entry {self.path} is incomplete; it cannot be read")
        out = {}
        for name, (file, _offset, _rb, disk_dtype, _shape) in self._layout.items():
            array = np.load(file, mmap_mode="r", allow_pickle=False)
            logical = STORAGE_DTYPES[self.manifest["arrays"][name]["dtype"]][0]
            out[name] = array.view(logical) if logical != disk_dtype else array
        return out
