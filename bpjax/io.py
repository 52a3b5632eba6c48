"""Atomic writes (a kill or a full disk leaves the old file or the new one, never half)
and a bounded ``.npz`` reader (a crafted file cannot make it allocate more than the
file holds).

Each write goes to a temporary file beside its target (``.tmp-*``), is flushed and
fsynced, renamed over the target, and the folder is fsynced so that the rename itself
survives a crash. A write that fails (a full disk) raises ``WriteError`` naming the
file; the temporary file is removed and the target keeps its previous content.
"""

import errno
import json
import math
import os
import tempfile
import zipfile

import numpy as np

TMP_PREFIX = ".tmp-"
MAX_INFLATED = 1 << 28  # bytes a file's compressed members may expand to (bpjax writes none)


class WriteError(OSError):
    """A write that failed (``errno`` kept, e.g. ENOSPC); the message names the file."""


def atomic_write(path, write, suffix: str = "") -> None:
    """Calls ``write(binary_file)`` on a temporary file beside ``path``, then renames it.

    Args:
      path: the file to (re)place.
      write: a function writing the whole content to the open binary file it is given.
      suffix: the temporary file's suffix (``np.savez`` wants ``.npz``).

    Raises:
      WriteError: an ``OSError`` (same errno) naming ``path``, if writing failed.

    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> atomic_write(p, lambda f: f.write(b"hi"))
    >>> p.read_text()
    'hi'
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp, renamed = None, False
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=TMP_PREFIX, suffix=suffix)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        renamed = True
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        if renamed:  # the new content is in place; its rename may not survive a crash
            raise WriteError(e.errno, f"wrote {path} but could not sync its folder: "
                             f"{e.strerror or e}") from e
        space = e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        hint = "its previous content, if any, is intact" + (
            "; free some space and try again" if space else "")
        raise WriteError(e.errno, f"could not write {path}: {e.strerror or e}; {hint}") from e
    finally:
        if not renamed and tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


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


def read_npz(path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (as ``np.load`` would give them, never pickle),
    after checking every member's ``.npy`` header against the member's size.

    Nothing is allocated before every header is checked: an array must declare
    exactly as many bytes as its member holds, a stored member no more than the file,
    and compressed members (``np.savez_compressed``) at most ``MAX_INFLATED`` bytes in
    all, so a crafted header or a zip bomb is refused, not allocated.

    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError: anything else (not a zip, a damaged member or header, a size that
        disagrees, an object array); the message names the member, not the file.

    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.npz"
    >>> np.savez(p, x=np.arange(3))
    >>> read_npz(p)["x"].tolist()
    [0, 1, 2]
    """
    path = os.fspath(path)
    with open(path, "rb") as fh:  # (FileNotFoundError as such)
        try:
            size = os.fstat(fh.fileno()).st_size
            with zipfile.ZipFile(fh) as zf:
                members = zf.infolist()
                inflated = 0
                for info in members:
                    _check_member(zf, info, size)
                    if info.compress_type != zipfile.ZIP_STORED:
                        inflated += info.file_size
                        if inflated > MAX_INFLATED:
                            raise ValueError(
                                f"its compressed arrays expand to more than {MAX_INFLATED} "
                                f"bytes (at {info.filename!r}); refused")
                out = {}
                for info in members:
                    with zf.open(info) as f:
                        out[info.filename[:-4]] = np.lib.format.read_array(
                            f, allow_pickle=False)
                return out
        except MemoryError:
            raise
        except ValueError:
            raise
        except Exception as e:  # noqa: BLE001 - zipfile, zlib, tokenize: all "damaged"
            raise ValueError(f"{type(e).__name__}: {e}") from e


def _check_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, size: int) -> None:
    """Refuses a member whose header's shape and dtype disagree with its size."""
    name = info.filename
    if not name.endswith(".npy"):
        raise ValueError(f"member {name!r} is not a .npy array")
    if info.compress_size > size or (info.compress_type == zipfile.ZIP_STORED
                                     and info.file_size != info.compress_size):
        raise ValueError(f"array {name[:-4]!r} declares {info.file_size} bytes, more than "
                         f"the file's {size}")
    try:
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f".npy format version {version} is not supported")
            header = f.tell()
    except ValueError as e:
        raise ValueError(f"array {name[:-4]!r} has a damaged header ({e})") from e
    except Exception as e:  # noqa: BLE001 - EOFError, tokenize.TokenError, zlib.error
        raise ValueError(f"array {name[:-4]!r} has a damaged header "
                         f"({type(e).__name__}: {e})") from e
    if dtype.hasobject:
        raise ValueError(f"array {name[:-4]!r} holds Python objects (pickle); refused")
    declared = header + math.prod(shape) * dtype.itemsize
    if declared != info.file_size:
        raise ValueError(f"array {name[:-4]!r} declares shape {shape} of {dtype} "
                         f"({declared} bytes with its header) but its member holds "
                         f"{info.file_size} bytes")
