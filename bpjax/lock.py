"""One writer per folder: an exclusive ``flock`` on ``FOLDER/.lock`` (the OS drops it
when the process dies), with the holder's pid and host written in the file, and the
removal of what killed writers left behind, which only the lock's holder may do.
"""

import fcntl
import gc
import os
import socket
import warnings

from bpjax.io import TMP_PREFIX

LOCK = ".lock"
PROBE = ".write-test-"  # a file written to check that a folder is writable


def take(folder: str) -> int | None:
    """Locks ``folder`` (exclusive, non-blocking) and returns the lock file's descriptor,
    or None (warned) on a file system without ``flock``.

    Raises:
      ValueError: another process (or another open Store of this one) holds it, named.
    """
    path = os.path.join(folder, LOCK)
    collected = False
    for _ in range(8):  # (a holder may remove the file as we open it: open the new one)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ValueError(f"out={folder!r} is not a writable folder: {e.strerror}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid, host = _holder(path)
            if pid == os.getpid() and host == socket.gethostname() and not collected:
                gc.collect()  # a Store of this process that is only garbage now
                collected = True
                continue
            raise ValueError(_in_use(folder, pid, host)) from None
        except OSError as e:  # a file system without flock (some network ones)
            os.close(fd)
            warnings.warn(f"bpjax: cannot lock {folder} ({e.strerror}); nothing stops "
                          "a second process from writing there", RuntimeWarning, stacklevel=3)
            return None
        try:
            ours = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            ours = False
        if ours:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
            return fd
        os.close(fd)
    raise ValueError(f"{folder} is in use (its lock keeps changing hands); "
                     "wait for the other sweep, or use another folder")


def release(folder: str, fd: int) -> None:
    """Releases the lock ``take`` returned, removing ``.lock`` if it is still ours (a
    slice folder may be gone)."""
    try:
        if os.path.samestat(os.fstat(fd), os.stat(os.path.join(folder, LOCK))):
            os.remove(os.path.join(folder, LOCK))
    except OSError:
        pass
    finally:
        os.close(fd)  # (releases the lock)


def remove_leftovers(folder: str) -> None:
    """Removes the temporary files and probes of writers killed in ``folder`` (call it
    holding the lock: no live writer has any)."""
    for name in os.listdir(folder):
        if name.startswith((TMP_PREFIX, PROBE)):
            try:
                os.remove(os.path.join(folder, name))
            except (FileNotFoundError, IsADirectoryError, PermissionError):
                pass


def _in_use(folder: str, pid: int | None, host: str | None) -> str:
    if pid is None:
        who = "another process"
    elif pid == os.getpid() and host == socket.gethostname():
        return (f"{folder} is in use by process {pid}, this one: another Store on it "
                "is still open (a sweep running in another thread, or one that raised "
                "and is still referenced); close it, or use another folder")
    else:
        who = f"process {pid}" + ("" if host in (None, socket.gethostname())
                                  else f" on {host}")
    return (f"{folder} is in use by {who} (a sweep is writing there); "
            "wait for it, or use another folder")


def _holder(path: str) -> tuple[int | None, str | None]:
    """The pid and host written in a lock file (None, None if unreadable)."""
    try:
        with open(path) as f:
            pid, _, host = f.read(200).strip().partition(" ")
        return int(pid), host or None
    except (OSError, ValueError):
        return None, None
