"""A streamed sweep's trajectory files, ``history-K.npy`` (``[optimizer, config, record,
...]``): created or reopened, written one chunk's block of rows at a time through the
file, and each block's sha256, which the chunk file that commits the block holds
(``bpjax.checkpoint``), so that a block altered, truncated or lost after its chunk
committed is found and named, on resume and before the result seals the files.
"""

import hashlib
import os

import numpy as np

from bpjax.io import WriteError

PREFIX = "history-"


def names(folder: str) -> list[str]:
    """The history files in ``folder``, in order."""
    found = [n for n in os.listdir(folder) if n.startswith(PREFIX) and n.endswith(".npy")]
    return sorted(found, key=lambda n: (len(n), n))


def open_array(path: str, shape: tuple, dtype, committed: list[str]) -> np.memmap:
    """``path`` mapped for writing: the file there if it holds ``shape`` of ``dtype``,
    else a new one (sparse: its rows are written as chunks finish).

    Where chunks have committed (``committed`` names their files) their rows are in the
    file, so a file missing, truncated or of another shape is refused, not recreated.
    (With none committed it is a killed first run's, and no row of it is final.)
    """
    problem = None
    if os.path.exists(path):
        try:  # ("r": "r+" would extend a short file with zeros)
            a = np.load(path, mmap_mode="r")
        except Exception as e:  # noqa: BLE001 - short, garbage header: all "damaged"
            problem = f"is damaged or truncated ({type(e).__name__}: {e})"
        else:
            if a.shape == shape and a.dtype == dtype:
                del a
                return np.load(path, mmap_mode="r+")
            problem = f"holds {a.dtype} of shape {a.shape}, expected {np.dtype(dtype)} {shape}"
    elif committed:
        problem = "is missing"
    if problem is not None and committed:
        listed = ", ".join(committed[:3]) + (", ..." if len(committed) > 3 else "")
        raise ValueError(
            f"{path} {problem}, but {len(committed)} committed chunk file(s) ({listed}) "
            "hold rows of it: delete those chunk files to recompute their chunks (or the "
            "folder to start over)")
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


def write_block(a: np.memmap, o: int, lo: int, block: np.ndarray) -> str:
    """Writes ``block`` as rows ``lo:`` of optimizer ``o`` of the mapped file ``a``,
    through the file (one contiguous block); returns the block's sha256."""
    block = np.ascontiguousarray(block, a.dtype)
    row = block.nbytes // max(1, block.shape[0])
    data = memoryview(block).cast("B")
    try:
        with open(a.filename, "r+b") as f:
            f.seek(a.offset + (o * a.shape[1] + lo) * row)
            f.write(data)
    except OSError as e:  # (ENOSPC) that chunk is not committed: it is recomputed
        raise WriteError(e.errno, f"could not write {a.filename}: {e.strerror}; the "
                         "previous checkpoint is intact; free space and rerun to "
                         "resume") from e
    return hashlib.sha256(data).hexdigest()


def block_digest(path: str, o: int, lo: int, hi: int) -> str:
    """The sha256 of rows ``lo:hi`` of optimizer ``o`` in the history file at ``path``,
    read from the file. Raises ``ValueError`` saying why it cannot be read."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read(f)
            if len(shape) < 2 or not (o < shape[0] and 0 <= lo <= hi <= shape[1]):
                raise ValueError(f"its shape {shape} has no rows {lo}-{hi - 1} of "
                                 f"optimizer {o}")
            row = int(np.prod(shape[2:], dtype=np.int64)) * dtype.itemsize
            f.seek(f.tell() + (o * shape[1] + lo) * row)
            data = f.read((hi - lo) * row)
    except FileNotFoundError:
        raise ValueError("is missing") from None
    except ValueError as e:
        raise ValueError(f"is damaged ({e})") from e
    except Exception as e:  # noqa: BLE001 - EOFError, tokenize.TokenError: a damaged header
        raise ValueError(f"is damaged ({type(e).__name__}: {e})") from e
    if len(data) != (hi - lo) * row:
        raise ValueError("is truncated")
    return hashlib.sha256(data).hexdigest()


def sync(folder: str) -> None:
    """Makes the history rows just written durable (before the chunk commits)."""
    for name in names(folder):
        path = os.path.join(folder, name)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        except OSError as e:
            raise WriteError(e.errno, f"could not sync {path}: {e.strerror}") from e
        finally:
            os.close(fd)
