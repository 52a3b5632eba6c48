"""A ``Result``'s file: one ``.npz`` whose metadata is JSON.

The file is an ordinary NumPy archive: ``np.load(path)`` reads every array without
pickle, and ``json.loads(str(np.load(path)["meta.json"]))`` gives the metadata (format
version, grid, optimizers, versions, fingerprint and a SHA-256 of every array, which
``load`` checks). Params may be any pytree of numeric arrays (dicts, lists, tuples,
NamedTuples, dataclasses, equinox modules, flax ``nnx.State``); each leaf is stored under
its field and ``jax.tree_util.keystr`` path: ``final_params['layers'][1]['w']``,
``params.w``. ``meta["trees"]`` describes each tree in JSON: null, ``{"leaf": name}``,
``{"list": [...]}``, ``{"tuple": [...]}`` or ``{"dict": [[key, spec], ...]}``, with
``"type"`` naming the class of a node that is not a dict. ``load(path, like=params)``
rebuilds the user's own types; without ``like``, dicts, lists, tuples and None come back
as such, any other node as a dict keyed by its fields. Version-1 files still load.
"""

import hashlib
import json
import os
from typing import Any

import jax
import numpy as np

from bpjax.io import atomic_savez, read_npz
from bpjax.result import ARRAYS, PARAMS, TREES, Result

FORMAT = "bpjax-result"
FORMAT_VERSION = 2


def save(result: Result, path, external: dict[str, np.ndarray] | None = None) -> None:
    """``result.save(path, external)``: see ``Result.save``."""
    arrays = {n: np.asanyarray(getattr(result, n)) for n in ARRAYS
              if getattr(result, n) is not None}
    for name, value in result.coords.items():
        arrays[f"coords/{name}"] = np.asarray(value)
    trees = {name: getattr(result, name) for name in TREES if getattr(result, name) is not None}
    for name, tree in trees.items():
        for key_path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            key = name + jax.tree_util.keystr(key_path)
            if key in arrays:
                raise ValueError(f"two leaves of {name} are both named {key}")
            arrays[key] = _storable(key, leaf)
        trees[name] = _describe(tree, name, ())
    meta = dict(result.meta)
    meta.update(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        dims=list(result.dims),
        trees=trees,
        sha256={k: _digest(v) for k, v in arrays.items()},
    )
    files = {}
    for file in (external or {}).values():
        for name, a in list(arrays.items()):
            if np.shares_memory(a, file) and a.nbytes == file.nbytes:
                files[name] = [os.path.basename(file.filename), list(a.shape)]
                del arrays[name]
    meta["external"] = files
    arrays["meta.json"] = np.array(json.dumps(meta))
    atomic_savez(path, arrays)


def load(path, like: Any = None) -> Result:
    """Reads a file written by ``Result.save``, checking format and checksums.

    Args:
      path: the ``.npz`` file.
      like: optional, a pytree shaped like one run's params (e.g. the ``init`` of one
        config): ``final_params``, ``params`` and ``best_params`` are then rebuilt with
        its types. Its key paths must be those saved; the first that differs raises.

    Returns:
      The ``Result``; without ``like``, params come back as described in the module
      docstring (dicts, lists, tuples and None; any other node as a dict).
    """
    path = os.fspath(path)
    try:
        arrays = read_npz(path)  # (every header checked against its size first)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as e:
        raise ValueError(
            f"{path} is not a readable bpjax result (truncated or corrupt): {e}") from e
    if "meta.json" not in arrays:
        raise ValueError(f"{path} has no meta.json: not a bpjax result")
    try:
        meta = json.loads(str(arrays.pop("meta.json")))
    except ValueError as e:
        raise ValueError(f"{path}: its meta.json is damaged ({e})") from e
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: its meta.json is not an object: not a bpjax result")
    version = meta.get("format_version")
    if meta.get("format") != FORMAT or version not in (1, FORMAT_VERSION):
        raise ValueError(
            f"{path}: format {meta.get('format')!r} v{version}, "
            f"expected {FORMAT!r} v{FORMAT_VERSION} (or v1)"
        )
    sums = meta.pop("sha256", None)
    external = meta.pop("external", {})
    if not isinstance(sums, dict) or not isinstance(external, dict):
        raise ValueError(f"{path}: its meta.json lacks the checksums: file was altered")
    folder = os.path.dirname(os.path.abspath(path))
    for name, entry in external.items():
        file, shape = _external(path, name, entry)
        try:
            arrays[name] = np.load(os.path.join(folder, file), mmap_mode="r",
                                   allow_pickle=False).reshape(shape)
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: its array {name!r} lives in {file}, which is missing "
                             f"or unreadable beside it ({e})") from e
    if set(sums) != set(arrays):
        missing = sorted(set(sums) ^ set(arrays))
        raise ValueError(f"{path}: arrays {missing} missing or unexpected; file was altered")
    for name, digest in sums.items():
        if _digest(arrays[name]) != digest:
            raise ValueError(f"{path}: checksum mismatch in {name!r}; file was altered")
    dims = meta.pop("dims", None)
    if not (isinstance(dims, list) and all(isinstance(d, str) for d in dims)):
        raise ValueError(f"{path}: its meta.json has no dims: file was altered")
    dims = tuple(dims)
    coords = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("coords/")}
    if version == 1:  # one spec per tree, ``{"dict": {key: spec}}``, leaves at ``name/a/0``
        specs = {name: meta.pop(f"{name}_tree", None) for name in TREES}
    else:
        specs = meta.pop("trees", None)
    if not isinstance(specs, dict):
        raise ValueError(f"{path}: its meta.json describes no trees: file was altered")
    trees = {}
    for name in TREES:
        try:
            trees[name] = _rebuild(specs.get(name), arrays.__getitem__)
        except (KeyError, TypeError, AttributeError) as e:  # a spec naming no array
            raise ValueError(f"{path}: its meta.json describes {name} with arrays it lacks "
                             f"({e!r}): file was altered") from e
        if like is not None and name in PARAMS:
            trees[name] = _like(path, name, specs.get(name), like, arrays, version)
    return Result(dims=dims, coords=coords, meta=meta, **trees,
                  **{name: arrays.get(name) for name in ARRAYS})


def _external(path: str, name: str, entry) -> tuple[str, list[int]]:
    """An "external" entry: a plain file name in the result's folder, and a shape."""
    if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], list)
            and all(type(d) is int and d >= 0 for d in entry[1])):
        raise ValueError(f"{path}: its external entry for {name!r} is not [file, shape]: "
                         "file was altered")
    file = entry[0]
    plain = (isinstance(file, str) and file not in ("", ".", "..") and "\0" not in file
             and os.path.basename(file) == file and not os.path.isabs(file)
             and os.sep not in file and (os.altsep is None or os.altsep not in file))
    if not plain:
        raise ValueError(f"{path} refers to {file!r} outside its folder (for {name!r}): "
                         "refused")
    return file, entry[1]


def _storable(key: str, leaf) -> np.ndarray:
    """``leaf`` as an array NumPy stores without pickle, or a ValueError naming it."""
    a = np.asanyarray(leaf)
    if a.dtype.kind in "biufc":
        return a
    if isinstance(leaf, (np.ndarray, jax.Array)):
        raise ValueError(f"{key} has dtype {a.dtype}, which NumPy cannot store without "
                         "pickle; cast it (e.g. to float32) before saving")
    raise ValueError(f"{key} is a {type(leaf).__name__}: only arrays of numbers can be saved "
                     "(nothing is pickled); split it off the params first, e.g. with "
                     "eqx.partition(model, eqx.is_array) or eqx.filter")


def _describe(node, name: str, key_path: tuple) -> Any:
    """The JSON spec of ``node`` (see the module docstring), one level at a time."""
    if node is None:
        return None
    kids = jax.tree_util.tree_flatten_with_path(node, is_leaf=lambda x: x is not node)[0]
    if len(kids) == 1 and kids[0][0] == ():
        return {"leaf": name + jax.tree_util.keystr(key_path)}
    specs = [_describe(kid, name, key_path + k) for k, kid in kids]
    if type(node) in (list, tuple):
        return {type(node).__name__: specs}
    spec: dict[str, Any] = {"dict": [[_key(k[-1]), s] for (k, _), s in zip(kids, specs)]}
    if type(node) is not dict:
        spec["type"] = f"{type(node).__module__}.{type(node).__qualname__}"
    return spec


def _key(entry) -> Any:
    """DictKey -> key, SequenceKey and FlattenedIndexKey -> index, GetAttrKey -> name."""
    k = getattr(entry, "key", getattr(entry, "idx", getattr(entry, "name", str(entry))))
    return k if isinstance(k, (str, int)) else str(k)


def _rebuild(spec, leaf) -> Any:
    """The tree ``spec`` describes, with ``leaf(name)`` at each leaf (either version)."""
    if spec is None:
        return None
    if "leaf" in spec:
        return leaf(spec["leaf"])
    if "list" in spec:
        return [_rebuild(s, leaf) for s in spec["list"]]
    if "tuple" in spec:
        return tuple(_rebuild(s, leaf) for s in spec["tuple"])
    items = spec["dict"].items() if isinstance(spec["dict"], dict) else spec["dict"]
    return {k: _rebuild(s, leaf) for k, s in items}


def _like(path: str, name: str, spec, like, arrays: dict, version: int) -> Any:
    """The saved tree ``name`` in the structure of ``like``, matched by key path."""
    if spec is None:
        return None
    stored = set(jax.tree.leaves(_rebuild(spec, lambda n: n)))
    key_paths = [k for k, _ in jax.tree_util.tree_flatten_with_path(like)[0]]
    if version == 1:
        keys = [name + "".join(f"/{_key(e)}" for e in k) for k in key_paths]
    else:
        keys = [name + jax.tree_util.keystr(k) for k in key_paths]
    for key_path, key in zip(key_paths, keys):
        if key not in stored:
            raise ValueError(f"{path}: like has {name}{jax.tree_util.keystr(key_path)}, which "
                             f"the file lacks; it holds {', '.join(sorted(stored)[:6])}...")
    if len(stored) != len(keys):
        raise ValueError(f"{path}: the file's {sorted(stored - set(keys))[0]} is not in like")
    return jax.tree.unflatten(jax.tree.structure(like), [arrays[k] for k in keys])


def _digest(a: np.ndarray) -> str:
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    if _whole_file(a):  # read the file, not the mapping: page cache is not our memory
        with open(a.filename, "rb") as f:
            f.seek(a.offset)
            while block := f.read(64 << 20):
                h.update(block)
        return h.hexdigest()
    flat = a.reshape(-1) if a.flags.c_contiguous else np.ascontiguousarray(a).reshape(-1)
    step = max(1, (64 << 20) // max(1, a.itemsize))  # 64 MB at a time: no copy of a file
    for i in range(0, flat.size, step):
        h.update(flat[i: i + step].tobytes())
    return h.hexdigest()


def _whole_file(a: np.ndarray) -> bool:
    """Whether ``a`` is a memory-mapped array covering all of its file's data."""
    if not isinstance(a, np.memmap) or not a.filename or not a.flags.c_contiguous:
        return False
    try:
        return a.nbytes == os.path.getsize(a.filename) - a.offset
    except OSError:
        return False
