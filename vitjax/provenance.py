"""Which code produced a number: digests of vitjax's own code, for cache keys.

A cached feature or result is only reusable if the code that made it is the code that would make it
again. A version string is bumped by hand and forgotten; a digest of the source files is not. The
digest is taken over each module's parsed syntax tree with docstrings removed, so editing a comment,
a docstring or the formatting keeps hours of extracted features valid, while any change to what the
code computes (a constant, an operator, a name) invalidates them.
"""

import ast
import functools
import hashlib
import os

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

# The modules whose code shapes extracted features (the model and the extraction itself).
FEATURE_CODE = ("models", "extract.py")


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    """Removes the docstring statement of every module, class and function body (in place)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                # A body cannot be empty: a function that was only a docstring keeps a `pass`.
                node.body = body[1:] or [ast.Pass()]
    return tree


def code_fingerprint(source: str | bytes, filename: str = "<source>") -> bytes:
    """The part of a Python module's source that computes: its syntax tree without docstrings.

    Args:
      source: the module's text.
      filename: named in the SyntaxError if `source` does not parse.

    Returns:
      `ast.dump` of the docstring-free tree (no line numbers, comments or formatting), as UTF-8.
    """
    tree = _strip_docstrings(ast.parse(source, filename=filename))
    return ast.dump(tree, include_attributes=False).encode()


@functools.cache
def source_digest(*paths: str) -> str:
    """sha256 (hex, 16 chars) of the code of the `.py` files under `paths`, relative to the package.

    Args:
      paths: files or folders inside `vitjax/` (e.g. "models", "extract.py"); none = the whole package.

    Returns:
      A digest that changes whenever any of those files changes what it computes or is added,
      removed or renamed, and stays the same under edits of comments, docstrings and formatting.
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
            digest.update(code_fingerprint(f.read(), filename=path) + b"\0")
    return digest.hexdigest()[:16]
