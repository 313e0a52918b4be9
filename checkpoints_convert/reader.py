"""Reads PyTorch (.pth/.pt), safetensors and big_vision .npz checkpoints into numpy dicts, safely.

PyTorch files are unpickled with `torch.load(..., weights_only=True)`: only tensors, containers and
plain values are rebuilt, so a file cannot run code. Training checkpoints also pickle a few metadata
objects (DINO/MAE `args` is an `argparse.Namespace`, SimMIM `config` a yacs `CfgNode`); those known
names are rebuilt as inert stand-ins instead of the real classes. Any other global is refused.
"""

from __future__ import annotations

import collections
import hashlib
import os
import pickle
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from vitjax.errors import CheckpointError

SAFETENSORS_SUFFIXES = (".safetensors",)
NPZ_SUFFIXES = (".npz",)


class OpaqueObject:
    """Inert stand-in for a pickled metadata object (an `argparse.Namespace`, a numpy scalar...).

    It records what the pickle would have passed to the real class and never calls anything.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> OpaqueObject:
        del kwargs
        instance = super().__new__(cls)
        instance.args = args
        instance.state = None
        return instance

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        del args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"OpaqueObject(args={self.args!r}, state={self.state!r})"


# Globals that official training checkpoints pickle next to their tensors, mapped to inert
# stand-ins. yacs' CfgNode is a dict subclass: torch only lets a plain dict/OrderedDict receive
# items during unpickling, so it becomes an OrderedDict.
_METADATA_STAND_INS: dict[str, Any] = {
    "argparse.Namespace": OpaqueObject,
    "yacs.config.CfgNode": collections.OrderedDict,
    "numpy.core.multiarray.scalar": OpaqueObject,
    "numpy._core.multiarray.scalar": OpaqueObject,
    "numpy.dtype": OpaqueObject,
    "pathlib.PosixPath": OpaqueObject,
    "pathlib.PurePosixPath": OpaqueObject,
    "pathlib.WindowsPath": OpaqueObject,
}
_NUMPY_DTYPE_CLASSES = [f"numpy.dtypes.{n}DType" for n in ("Float64", "Float32", "Int64", "Int32")]
_METADATA_STAND_INS.update(dict.fromkeys(_NUMPY_DTYPE_CLASSES, OpaqueObject))


def file_sha256(path: str | os.PathLike[str], chunk_bytes: int = 1 << 22) -> str:
    """Returns the hex sha256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads a checkpoint file into a nested dict whose tensors are numpy arrays.

    Args:
      path: a `.safetensors` file, a big_vision `.npz` (numpy, no pickle), or a PyTorch file (any
        other name: `.pth`, `.pt`, `.bin`...).

    Returns:
      The file's top-level mapping. Tensors become numpy arrays (bfloat16 as float32, other dtypes
      kept); metadata objects become `OpaqueObject` or plain dicts.

    Raises:
      CheckpointError: the file is missing, truncated or corrupted, is not a mapping, or pickles
        an object outside the tensor allowlist (nothing from the file is executed).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.endswith(SAFETENSORS_SUFFIXES):
        return _read_safetensors(path)
    if path.endswith(NPZ_SUFFIXES):
        return _read_npz(path)
    content = _read_pytorch(path)
    if not isinstance(content, Mapping):
        raise CheckpointError(
            f"{path}: expected a mapping (state dict or training checkpoint) at the top level, "
            f"got {type(content).__name__}"
        )
    return _to_numpy(content)


def _read_safetensors(path: str) -> dict[str, Any]:
    import safetensors.numpy  # why: optional (the `convert` extra); only .safetensors inputs need it

    try:
        return dict(safetensors.numpy.load_file(path))
    except Exception as err:  # SafetensorError and numpy dtype errors carry no common base
        raise CheckpointError(
            f"{path}: cannot read safetensors file ({os.path.getsize(path)} bytes; truncated or "
            f"corrupted?): {err}"
        ) from err


def _read_npz(path: str) -> dict[str, Any]:
    """A big_vision parameter file: a flat `.npz` of '/'-joined names, read without pickle."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: np.asarray(archive[name]) for name in archive.files}
    except Exception as err:  # BadZipFile, ValueError (object arrays), EOFError, OSError
        raise CheckpointError(
            f"{path}: cannot read .npz parameter file ({os.path.getsize(path)} bytes; truncated, "
            f"corrupted, or holding pickled objects, which are refused): {err}"
        ) from err


def _read_pytorch(path: str) -> Any:
    import torch  # why: optional heavy dependency (the `convert` extra), loaded on first use

    if not zipfile.is_zipfile(path) and not _looks_like_legacy_torch(path):
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint ({os.path.getsize(path)} bytes): neither a torch zip "
            "archive nor a legacy torch pickle; the file may be truncated or corrupted"
        )
    if zipfile.is_zipfile(path):
        _refuse_torchscript(path)
    stand_ins = [(obj, name) for name, obj in _METADATA_STAND_INS.items()]
    try:
        with torch.serialization.safe_globals(stand_ins):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        refused = _unsafe_globals(path)
        listed = ", ".join(refused) if refused else "see the error below"
        raise CheckpointError(
            f"{path}: refused to unpickle: the file contains objects outside the tensor allowlist "
            f"({listed}). Nothing from the file was executed. Unpickler said: {err}"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as err:
        raise CheckpointError(
            f"{path}: cannot read PyTorch checkpoint ({os.path.getsize(path)} bytes; truncated or "
            f"corrupted?): {err}"
        ) from err


def _refuse_torchscript(path: str) -> None:
    """TorchScript archives (OpenAI's own CLIP `.pt` files) hold code that loading them runs."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    parts = [name.split("/", 1)[-1] for name in names]
    if "constants.pkl" in parts or any(p.startswith("code/") for p in parts):
        raise CheckpointError(
            f"{path}: a TorchScript archive (it has constants.pkl and code/, like OpenAI's own "
            "CLIP .pt files): loading it runs the code it carries, so it is refused and was not "
            "read. Convert a weights-only file of the same model instead: open_clip's "
            "'open_clip_pytorch_model.bin' or 'open_clip_model.safetensors' (e.g. Hub repo "
            "timm/vit_base_patch16_clip_224.openai; --family=clip for OpenAI weights, "
            "--family=openclip for OpenCLIP ones), or the transformers 'model.safetensors' of "
            "openai/clip-vit-base-patch16 (--family=clip_hf)"
        )


def _looks_like_legacy_torch(path: str) -> bool:
    # Pre-1.6 torch files are a raw pickle stream starting with the PROTO opcode.
    with open(path, "rb") as f:
        return f.read(1) == b"\x80"


def _unsafe_globals(path: str) -> list[str]:
    import torch  # why: optional heavy dependency (the `convert` extra), loaded on first use

    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # best effort: only used to enrich the error message
        return []
    return sorted(n for n in names if n not in _METADATA_STAND_INS)


def _to_numpy(value: Any) -> Any:
    import torch  # why: optional heavy dependency (the `convert` extra), loaded on first use

    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.float()
        return tensor.numpy()
    if isinstance(value, Mapping):
        return {key: _to_numpy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_numpy(item) for item in value)
    return value
