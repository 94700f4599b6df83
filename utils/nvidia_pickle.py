"""Reading NVIDIA's network pickles (stylegan2-ada-pytorch, stylegan3) without running them.

Those `.pkl` files are plain pickles of a dict (`G`, `D`, `G_ema`, `augment_pipe`,
`training_set_kwargs`, or only some). Every network in them is an instance of a class wrapped by
NVIDIA's `torch_utils.persistence.persistent_class`, pickled as a call of
`torch_utils.persistence._reconstruct_persistent_obj(meta)` with meta = {type: 'class', version,
module_src: the source text of the defining module, class_name, state: the instance __dict__}.
NVIDIA's loader executes `module_src`. This reader never does: a restricted unpickler resolves only
the globals of ALLOWED_GLOBALS, each to a function of this module or a plain constructor, and a
persistent object becomes an inert `NetworkRecord` (its source kept as text). Any other global is
refused by name before anything runs. numpy values are rebuilt from their bytes as numbers, and
BUILD (setting an object's state) runs only for them and NVIDIA's EasyDicts: numpy's own
reconstruction takes dtypes that read bytes as pointers, and state set on an allowed class
would change every later load.

Tensors inside are what torch's Tensor.__reduce_ex__ writes: `torch._utils._rebuild_tensor_v2`
(or `_rebuild_parameter` around it) of a storage written by `torch.storage._load_from_bytes`, a
legacy torch.save of that one storage, read back here with torch.load(weights_only=True); a view
that would reach past its storage is refused.
"""

import collections
import io
import pickle
import struct
from dataclasses import dataclass

import numpy as np
import torch

# NVIDIA's persistent-object reconstruction, and its dict with attribute access
PERSISTENT_RECONSTRUCT = ("torch_utils.persistence", "_reconstruct_persistent_obj")
EASYDICT = ("dnnlib.util", "EasyDict")


class NvidiaPickleError(Exception):
    """A file that is not an NVIDIA network pickle this reader can take, or that it refuses."""


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside ALLOWED_GLOBALS: it would run code."""


@dataclass
class NetworkRecord:
    """One persistent object of the pickle, inert: its class name, its instance __dict__
    (`state`: `_parameters`, `_buffers`, `_modules`, `_init_kwargs`, ...), and the source text
    of its module, never executed."""

    class_name: str
    state: dict
    module_src: str
    version: object = None

    @property
    def init_kwargs(self):
        """The constructor's keyword arguments (`_init_kwargs`), EasyDicts as plain dicts."""
        return plain(self.state.get("_init_kwargs") or {})

    @property
    def modules(self):
        """{name: NetworkRecord} of the direct submodules (None entries dropped)."""
        return {name: module for name, module in (self.state.get("_modules") or {}).items() if module is not None}

    def state_dict(self, prefix=""):
        """{name: tensor} as torch's Module.state_dict() under NVIDIA's names: parameters and
        persistent buffers (the `_non_persistent_buffers_set` left out), submodules recursively."""
        non_persistent = set(self.state.get("_non_persistent_buffers_set") or ())
        tensors = {}
        for name, tensor in (self.state.get("_parameters") or {}).items():
            if tensor is not None:
                tensors[prefix + name] = tensor
        for name, tensor in (self.state.get("_buffers") or {}).items():
            if tensor is not None and name not in non_persistent:
                tensors[prefix + name] = tensor
        for name, tensor in tensors.items():
            if not isinstance(tensor, torch.Tensor):
                raise NvidiaPickleError(f"{name} is a {type(tensor).__name__}, not a tensor")
        for name, module in self.modules.items():
            if not isinstance(module, NetworkRecord):
                raise NvidiaPickleError(f"submodule {prefix}{name} is a {type(module).__name__}, not a network record")
            tensors.update(module.state_dict(f"{prefix}{name}."))
        return tensors


class EasyDict(dict):
    """Stands in for dnnlib.util.EasyDict: the pickle fills it as the dict it is."""


def reconstruct_persistent(meta):
    """`_reconstruct_persistent_obj(meta)` made inert: a NetworkRecord, nothing imported or run."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
        raise pickle.UnpicklingError("a persistent object whose meta is not {type: 'class', state: {...}}")
    return NetworkRecord(
        str(meta.get("class_name")), dict(meta["state"]), str(meta.get("module_src", "")), meta.get("version")
    )


def load_storage(data):
    """`torch.storage._load_from_bytes(data)`: a legacy torch.save of one storage, read with
    torch.load(weights_only=True), which itself refuses anything but tensors and storages."""
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def rebuild_tensor(storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    """`torch._utils._rebuild_tensor_v2`: a view of `storage`, refused unless it lies inside it
    (torch would grow a short storage with uninitialised memory); gradients and hooks dropped."""
    size, stride = tuple(size), tuple(stride)
    whole = all(isinstance(value, int) for value in (offset, *size, *stride))
    if not whole or offset < 0 or len(size) != len(stride) or min((*size, *stride), default=0) < 0:
        raise pickle.UnpicklingError(f"a tensor of size {size}, stride {stride} and offset {offset}")
    elements = storage._size()  # TypedStorage's count, without its public methods' deprecation warning
    if all(size) and offset + sum((length - 1) * step for length, step in zip(size, stride)) >= elements:
        raise pickle.UnpicklingError(f"a tensor of size {size} and stride {stride} past its storage's {elements}")
    return torch._utils._rebuild_tensor(storage, offset, size, stride)


def rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    """`torch._utils._rebuild_parameter(_with_state)`: the tensor itself (weights only)."""
    return data


# numpy values are rebuilt here from their bytes, never by numpy's own __setstate__, which takes
# any dtype state (fields of objects whose flags say they hold none: raw bytes read as pointers)
NUMERIC_KINDS = "biufc"


class DtypeRecord:
    """Stands in for numpy.dtype while the pickle is read: a numeric dtype code, and the byte
    order its state gives (`build`); `dtype` is the numpy dtype."""

    def __init__(self, code, align=False, copy=False):
        dtype = np.dtype(str(code))
        if dtype.kind not in NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise pickle.UnpicklingError(f"a numpy dtype {code!r}: only numbers are read")
        self.dtype = dtype

    def build(self, state):
        """numpy's dtype state (version, byte order, subarray, names, fields, ...): a plain one only."""
        if not isinstance(state, tuple) or len(state) < 5 or any(item is not None for item in state[2:5]):
            raise pickle.UnpicklingError("a numpy dtype state with fields or a subarray: only numbers are read")
        if state[1] in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(state[1])
        return self


class ArrayRecord:
    """Stands in for numpy's `_reconstruct(ndarray, shape, typecode)`: `build` makes the array
    from the state's raw bytes."""

    def build(self, state):
        """ndarray state (version, shape, DtypeRecord, Fortran order, raw bytes) -> the array."""
        if not isinstance(state, tuple) or len(state) != 5:
            raise pickle.UnpicklingError("a numpy array state that is not (version, shape, dtype, order, bytes)")
        _, shape, dtype, fortran, data = state
        if not isinstance(dtype, DtypeRecord) or not isinstance(data, (bytes, bytearray)):
            raise pickle.UnpicklingError("a numpy array of objects: only numbers are read")
        array = np.frombuffer(bytes(data), dtype=dtype.dtype)
        try:
            return array.reshape(tuple(shape), order="F" if fortran else "C").copy()
        except ValueError as error:
            raise pickle.UnpicklingError(f"a numpy array whose bytes do not fill its shape ({error})") from None


def reconstruct_array(cls, shape, typecode):
    """numpy's `_reconstruct`: an empty ArrayRecord, which the BUILD after it fills."""
    return ArrayRecord()


def numpy_scalar(dtype, data=None):
    """numpy's `scalar(dtype, bytes)`: the number the bytes hold."""
    if not isinstance(dtype, DtypeRecord) or not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("a numpy scalar that is not a number's bytes")
    if len(data) != dtype.dtype.itemsize:
        raise pickle.UnpicklingError(f"a numpy scalar of {len(data)} bytes for a {dtype.dtype}")
    return np.frombuffer(bytes(data), dtype=dtype.dtype)[0]


def numpy_globals():
    """numpy's array, dtype and scalar reconstruction under both spellings of its core module,
    as the stand-ins above."""
    names = {"_reconstruct": reconstruct_array, "scalar": numpy_scalar, "ndarray": np.ndarray, "dtype": DtypeRecord}
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): DtypeRecord}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed.update({(module, name): value for name, value in names.items()})
    return allowed


ALLOWED_GLOBALS = {
    PERSISTENT_RECONSTRUCT: reconstruct_persistent,
    EASYDICT: EasyDict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    # sets: a module's _non_persistent_buffers_set, pickled as builtins.set below protocol 4
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): load_storage,
    **numpy_globals(),
}


class RestrictedUnpickler(pickle._Unpickler):
    """An unpickler that resolves ALLOWED_GLOBALS only, refuses persistent ids, and runs BUILD
    (an object's __setstate__ or __dict__ update) only for the numpy stand-ins and for EasyDicts
    given a dict: on anything else, an allowed class or function included, it could change what
    later loads do. (The Python implementation of pickle, whose opcodes can be overridden,
    unlike the C one's.)"""

    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"{module}.{name}") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError(f"a persistent id ({pid!r}): torch.save files are not network pickles")

    def load_build(self):
        state = self.stack.pop()
        target = self.stack[-1]
        if isinstance(target, (DtypeRecord, ArrayRecord)):
            self.stack[-1] = target.build(state)
        elif type(target) is EasyDict and isinstance(state, dict) and all(isinstance(key, str) for key in state):
            # older Pythons pickle an EasyDict's (empty) instance __dict__ after its items
            target.__dict__.update(state)
        else:
            raise pickle.UnpicklingError(
                f"BUILD on a {type(target).__name__}: NVIDIA's pickles set state on numpy values only"
            )

    dispatch = {**pickle._Unpickler.dispatch, pickle.BUILD[0]: load_build}


def plain(value):
    """EasyDicts and OrderedDicts as dicts, recursively (kwargs to read, not objects)."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(item) for item in value)
    return value


def load_network_pickle(path):
    """{'G' | 'D' | 'G_ema': NetworkRecord} of the networks an NVIDIA pickle at `path` holds.

    Raises NvidiaPickleError naming the reason: a refused global (with its name; nothing from the
    file has run), a truncated or unreadable file, or a pickle without such networks.
    """
    with open(path, "rb") as file:
        head = file.read(4)
        file.seek(0)
        if head.startswith(b"PK"):
            raise NvidiaPickleError(
                f"{path} is a zip file (a torch.save checkpoint), not an NVIDIA network pickle: "
                "pass it to the scripts' --ckpt directly"
            )
        try:
            content = RestrictedUnpickler(file).load()
        except RefusedGlobal as refused:
            hint = " (a TensorFlow pickle: only the PyTorch ones are read)" if "tflib" in str(refused) else ""
            raise NvidiaPickleError(
                f"{path} refused: it needs the global {refused}{hint}, which an NVIDIA network pickle does not use "
                "and which could run code. Nothing from the file was executed."
            ) from None
        except (  # what pickle's pure-Python reader raises on bytes that are no pickle
            EOFError,
            pickle.UnpicklingError,
            ValueError,
            TypeError,
            AttributeError,
            IndexError,
            KeyError,
            RuntimeError,
            OverflowError,
            MemoryError,
            struct.error,
        ) as error:
            raise NvidiaPickleError(
                f"{path} cannot be read as an NVIDIA network pickle: it is truncated (an interrupted download?) "
                f"or not a pickle ({type(error).__name__}: {error})"
            ) from None
    networks = {key: content[key] for key in ("G", "D", "G_ema") if isinstance(content, dict) and key in content}
    if not networks or not all(isinstance(record, NetworkRecord) for record in networks.values()):
        raise NvidiaPickleError(
            f"{path} is a pickle but not an NVIDIA network pickle: it holds no G, D or G_ema network"
        )
    return networks
