"""Atomic writes: a kill or a full disk leaves the old file or the new one, never half.

Each write goes to a temporary file beside its target, is flushed and fsynced, renamed
over the target, and the folder is fsynced so that the rename itself survives a crash.
"""

import json
import os
import tempfile

import numpy as np


def atomic_write(path, write, suffix: str = "") -> None:
    """Calls ``write(binary_file)`` on a temporary file beside ``path``, then renames it.

    Args:
      path: the file to (re)place.
      write: a function writing the whole content to the open binary file it is given.
      suffix: the temporary file's suffix (``np.savez`` wants ``.npz``).

    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> atomic_write(p, lambda f: f.write(b"hi"))
    >>> p.read_text()
    'hi'
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_savez(path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez(path, **arrays)``, atomically."""
    atomic_write(path, lambda f: np.savez(f, **arrays), ".npz")


def atomic_write_text(path, text: str) -> None:
    """Writes ``text`` (UTF-8), atomically."""
    atomic_write(path, lambda f: f.write(text.encode()))


def write_json(path, obj, indent: int | None = 2) -> None:
    """Writes ``json.dumps(obj, indent=indent)``, atomically.

    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.json"
    >>> write_json(p, {"lr": [0.1, 0.2]}, indent=None)
    >>> p.read_text()
    '{"lr": [0.1, 0.2]}'
    """
    atomic_write_text(path, json.dumps(obj, indent=indent))
