"""``Grid(**axes)``: the cartesian product of named 1-D axes, in the given order.

Numeric axes are traced: one compiled program serves all their values. Axes of
strings (``activation=["tanh", "relu"]``) and axes wrapped in ``static([...])``
(integers such as ``width`` or ``depth``) are static: ``init``, ``loss_fn`` and the
optimizer get the Python value, and a sweep compiles once per combination of them.

>>> g = Grid(lr=[0.5, 0.25], seed=range(3))
>>> g.shape, g.size, g.dims
((2, 3), 6, ('lr', 'seed'))
>>> g.flat()["lr"].tolist()
[0.5, 0.5, 0.5, 0.25, 0.25, 0.25]
>>> Grid(lr=[0.1], activation=["tanh", "relu"], width=static([4, 8])).static_dims
('activation', 'width')
"""

import jax
import numpy as np

RESERVED = ("optimizer", "step")


class static(tuple):  # noqa: N801 - used like a function: static([4, 8])
    """Marks a grid axis static: its values reach ``init``, ``loss_fn`` and the optimizer
    as Python values (ints, strings), one compiled program per value."""

    def __new__(cls, values=()):
        return super().__new__(cls, values)


class Grid:
    def __init__(self, **axes):
        if not axes:
            raise ValueError("Grid needs at least one axis, e.g. Grid(lr=[0.1, 0.01])")
        self.axes: dict[str, np.ndarray] = {}
        self.static_dims: tuple[str, ...] = ()
        for name, values in axes.items():
            if isinstance(values, static) or _strings(values):
                self.axes[name] = _static_axis(name, values)
                self.static_dims += (name,)
            else:
                self.axes[name] = _axis(name, values)

    @property
    def dims(self) -> tuple[str, ...]:
        return tuple(self.axes)

    @property
    def traced_dims(self) -> tuple[str, ...]:
        return tuple(d for d in self.axes if d not in self.static_dims)

    def part(self, dims) -> "Grid":
        """The grid of axes ``dims`` only (in this grid's order)."""
        out = Grid.__new__(Grid)
        out.axes = {d: v for d, v in self.axes.items() if d in dims}
        out.static_dims = tuple(d for d in self.static_dims if d in dims)
        return out

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.axes.values())

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def flat(self) -> dict[str, np.ndarray]:
        """Each axis broadcast to the grid and flattened in C order, shape (size,)."""
        mesh = np.meshgrid(*self.axes.values(), indexing="ij")
        return {n: m.reshape(-1) for n, m in zip(self.axes, mesh)}

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={'static ' * (n in self.static_dims)}{len(v)}"
                          for n, v in self.axes.items())
        return f"Grid({inner})"


def _strings(values) -> bool:
    values = list(values) if not hasattr(values, "__array__") else values
    return len(values) > 0 and all(isinstance(v, str) for v in values)


def _static_axis(name: str, values) -> np.ndarray:
    _name(name)
    values = list(values)
    if not values:
        raise ValueError(f"grid axis {name!r} is empty; give it at least one value")
    kinds = {type(v) for v in values}
    if not (kinds <= {str, np.str_} or all(isinstance(v, (int, np.integer)) and
                                            not isinstance(v, bool) for v in values)):
        raise ValueError(f"static axis {name!r} must hold strings or integers (one kind), "
                         f"got {values!r}")
    if len(set(values)) != len(values):
        dup = sorted({v for v in values if values.count(v) > 1})
        raise ValueError(f"static axis {name!r} repeats the values {dup}; each value once")
    return np.array(values)


def _name(name: str) -> None:
    if name in RESERVED:
        raise ValueError(f"grid axis name {name!r} is reserved; choose another name")
    if not name.isidentifier():
        raise ValueError(f"grid axis name {name!r} must be a Python identifier")


def _axis(name: str, values) -> np.ndarray:
    _name(name)
    try:
        arr = np.asarray(list(values) if not hasattr(values, "__array__") else values)
    except TypeError:
        raise ValueError(
            f"grid axis {name!r} must be a 1-D sequence of numbers, got {values!r}") from None
    if arr.ndim != 1:
        raise ValueError(f"grid axis {name!r} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"grid axis {name!r} is empty; give it at least one value")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"grid axis {name!r} must hold numbers (a traced axis), strings, "
                         f"or be bpjax.static([...]) (a static axis); got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise ValueError(f"grid axis {name!r} must be real, got complex values")
    if not np.all(np.isfinite(arr)):
        bad = arr[~np.isfinite(arr)][:3].tolist()
        raise ValueError(f"grid axis {name!r} holds non-finite values {bad}; all must be finite")
    if name == "seed":
        if not np.all(arr == np.round(arr)) or arr.min() < 0 or arr.max() >= 2**31:
            raise ValueError(f"grid axis 'seed' must hold integers in [0, 2**31), got {arr[:5]}")
        return arr.astype(np.int32)
    # Every other axis is a traced value of JAX's default float dtype: float32, or
    # float64 under jax_enable_x64 (architecture is static, not an axis).
    dtype = np.dtype(jax.dtypes.canonicalize_dtype(np.float64))
    big = np.abs(arr) > np.finfo(dtype).max
    if big.any():
        raise ValueError(f"grid axis {name!r} holds {arr[big][:3].tolist()}, beyond {dtype}'s "
                         f"range (|x| <= {np.finfo(dtype).max:.3g})")
    return arr.astype(dtype)
