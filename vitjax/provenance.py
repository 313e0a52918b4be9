"""Which code produced a number: digests of vitjax's own sources, for cache keys.

A cached feature or result is only reusable if the code that made it is the code that would make it
again. A version string is bumped by hand and forgotten; a digest of the source files is not.
"""

import functools
import hashlib
import os

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

# The modules whose code shapes extracted features (the model and the extraction itself).
FEATURE_CODE = ("models", "extract.py")


@functools.cache
def source_digest(*paths: str) -> str:
    """sha256 (hex, 16 chars) of the `.py` files under `paths`, relative to the vitjax package.

    Args:
      paths: files or folders inside `vitjax/` (e.g. "models", "extract.py"); none = the whole package.

    Returns:
      A digest that changes whenever any of those files changes (name or content).
    """
    roots = [os.path.join(_PACKAGE_DIR, p) for p in paths] or [_PACKAGE_DIR]
    files = []
    for root in roots:
        if os.path.isfile(root):
            files.append(root)
            continue
        for folder, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            files.extend(os.path.join(folder, n) for n in names if n.endswith(".py"))
    digest = hashlib.sha256()
    for path in sorted(set(files)):
        digest.update(os.path.relpath(path, _PACKAGE_DIR).encode() + b"\0")
        with open(path, "rb") as f:
            digest.update(f.read() + b"\0")
    return digest.hexdigest()[:16]
