"""A fitted estimator's state as data: torch modules and tensors without pickle
(layer B).

:func:`to_data` replaces, anywhere in an estimator's state (its ``__dict__``),

- a ``torch.nn.Module`` by a record: its class (a type object, which
  ``skops.io`` audits against the types the user trusts), its plain
  attributes, its submodules (records too) and its parameters and buffers as
  one ``safetensors`` blob;
- a tensor by a ``safetensors`` blob; a ``torch.dtype`` or ``torch.device`` by
  its name;

and :func:`from_data` reverses it, rebuilding each module with
``cls.__new__`` and ``torch.nn.Module.__init__`` (never the class's own
``__init__``), so that no code of the module's class runs while loading. The
same state serves ``pickle``/``joblib`` and ``skops.io``: with skops, every
type in the file (the estimator, each module class, each domain) is checked
against the trusted types before anything is built.

Everything is driven by the objects themselves (their ``__dict__``), not by a
list per estimator: a new estimator or energy is saved the same way.
"""

import inspect

import numpy as np
import torch

from .exceptions import ModelFileError

# Markers of the records (dict keys no estimator attribute uses).
MODULE = "__skebm_module__"
TENSOR = "__skebm_tensor__"
DTYPE = "__skebm_torch_dtype__"
DEVICE = "__skebm_torch_device__"
OBJECT = "__skebm_object__"
# The format of the module records; a newer one is refused with a clear error.
FORMAT = 1

# What torch.nn.Module.__init__ sets: rebuilt by it, never saved.
_MODULE_INTERNALS = frozenset(vars(torch.nn.Module()))
_HOOKS = tuple(
    name for name in _MODULE_INTERNALS if "hook" in name and name.startswith("_")
)


class _NotData(Exception):
    """A module that cannot be written as data (hooks, shared tensors...)."""


def _is_domain(value):
    from .domains import Domain

    return isinstance(value, Domain)


def _tensor_blob(tensors):
    """Tensors as a ``safetensors`` blob (bytes), or, without the package, as
    numpy arrays (``{"arrays": {name: ndarray}}``)."""
    tensors = {
        name: t.detach().to("cpu").contiguous().clone() for name, t in tensors.items()
    }
    try:
        from safetensors.torch import save
    except ImportError:
        try:
            return {"arrays": {name: t.numpy() for name, t in tensors.items()}}
        except (TypeError, RuntimeError) as exc:  # bfloat16: not a numpy dtype
            raise _NotData(str(exc)) from exc
    try:
        return save(tensors)
    except Exception as exc:  # safetensors' own error types
        raise _NotData(str(exc)) from exc


def _module_record(module):
    for name in _HOOKS:
        if getattr(module, name, None):
            raise _NotData(
                f"{type(module).__name__} has hooks registered ({name}); hooks are "
                "code and cannot be saved as data"
            )
    state = vars(module)
    parameters = {k: v for k, v in state["_parameters"].items() if v is not None}
    buffers = {k: v for k, v in state["_buffers"].items() if v is not None}
    try:
        blob = _tensor_blob({**parameters, **buffers})
    except _NotData as exc:
        raise _NotData(f"the tensors of {type(module).__name__}: {exc}") from exc
    return {
        MODULE: FORMAT,
        "class": type(module),
        "training": bool(module.training),
        "attributes": {
            k: to_data(v) for k, v in state.items() if k not in _MODULE_INTERNALS
        },
        "modules": {
            k: None if v is None else _module_record(v)
            for k, v in state["_modules"].items()
        },
        "parameters": {k: bool(v.requires_grad) for k, v in parameters.items()},
        "empty_parameters": [k for k, v in state["_parameters"].items() if v is None],
        "buffers": list(buffers),
        "empty_buffers": [k for k, v in state["_buffers"].items() if v is None],
        "non_persistent": sorted(state["_non_persistent_buffers_set"]),
        "tensors": blob,
    }


def to_data(value):
    """``value`` with its modules, tensors, dtypes and devices as data.

    A module that cannot be written as data (hooks, tensors safetensors
    refuses) is left as it is: pickle still takes it, and
    :func:`check_data` names it for a caller that needs data only.
    """
    if isinstance(value, torch.nn.Module):
        try:
            return _module_record(value)
        except _NotData:
            return value
    if isinstance(value, torch.Tensor):
        try:
            return {TENSOR: _tensor_blob({"tensor": value})}
        except _NotData:
            return value
    if isinstance(value, torch.dtype):
        return {DTYPE: str(value).removeprefix("torch.")}
    if isinstance(value, torch.device):
        return {DEVICE: str(value)}
    if _is_domain(value):
        return {
            OBJECT: FORMAT,
            "class": type(value),
            "attributes": {k: to_data(v) for k, v in vars(value).items()},
        }
    if type(value) is dict:
        return {k: to_data(v) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(to_data(v) for v in value)
    return value


def check_data(value, where="the estimator"):
    """Raise ValueError where :func:`to_data` left a module or a tensor."""
    if isinstance(value, torch.nn.Module | torch.Tensor):
        try:
            _module_record(value) if isinstance(value, torch.nn.Module) else None
            reason = "safetensors cannot store it"
        except _NotData as exc:
            reason = str(exc)
        raise ValueError(
            f"{where} holds a {type(value).__name__} that cannot be saved as data: "
            f"{reason}. Save it with joblib instead (pickle: load only files you "
            "trust), or remove what holds code."
        )
    if isinstance(value, dict):
        for k, v in value.items():
            check_data(v, f"{where}[{k!r}]")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            check_data(v, f"{where}[{i}]")


def _fail(message):
    raise ModelFileError(message)


def check_attribute_names(cls, names):
    """Refuse state that would shadow the class's code: an instance attribute
    named like a method or property (``forward``, ``score_samples``) would
    replace it with whatever the file holds."""
    for name in names:
        if not isinstance(name, str):
            _fail(f"{cls.__name__}: invalid attribute name {name!r}")
        attr = inspect.getattr_static(cls, name, None)
        if attr is not None and (callable(attr) or hasattr(attr, "__get__")):
            _fail(f"{cls.__name__}: the file sets {name!r}, which is code of the "
                  "class (a method or property), as an attribute")


def _load_blob(blob, what):
    """The tensors of a :func:`_tensor_blob`, checked."""
    if isinstance(blob, dict) and set(blob) == {"arrays"}:
        arrays = blob["arrays"]
        if not isinstance(arrays, dict) or not all(
            isinstance(k, str)
            and isinstance(v, np.ndarray)
            and v.dtype.kind in "biuf"
            for k, v in arrays.items()
        ):
            _fail(f"the tensors of {what} are not numeric arrays")
        return {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}
    if not isinstance(blob, bytes | bytearray):
        _fail(f"the tensors of {what} are {type(blob).__name__}, not bytes")
    try:
        from safetensors.torch import load
    except ImportError as exc:  # pragma: no cover - the optional extra
        raise ImportError(
            "This model's tensors are stored with safetensors: pip install "
            "safetensors (or 'skebm[io]')."
        ) from exc
    try:
        return load(bytes(blob))
    except Exception as exc:  # safetensors' own errors: a damaged blob
        _fail(f"the tensors of {what} cannot be read: {exc}")


def _names(value, what, field):
    if not isinstance(value, list | tuple | dict) or not all(
        isinstance(v, str) for v in value
    ):
        _fail(f"{what}: '{field}' must be a list of names")
    return value


def _module_from_record(record):
    cls = record.get("class")
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        _fail(f"a module record names {cls!r}, which is not a torch.nn.Module class")
    what = cls.__name__
    if record.get(MODULE) != FORMAT:
        _fail(f"{what}: module record format {record.get(MODULE)!r} is not "
              f"{FORMAT} (written by another skebm version?)")
    attributes = record.get("attributes")
    modules = record.get("modules")
    if not isinstance(attributes, dict) or not isinstance(modules, dict):
        _fail(f"{what}: 'attributes' and 'modules' must be dicts")
    parameters = _names(record.get("parameters"), what, "parameters")
    buffers = _names(record.get("buffers"), what, "buffers")
    tensors = _load_blob(record.get("tensors"), what)
    expected = set(parameters) | set(buffers)
    if set(tensors) != expected:
        _fail(f"{what}: the file holds tensors {sorted(tensors)} where "
              f"{sorted(expected)} were recorded")
    check_attribute_names(cls, attributes)
    check_attribute_names(cls, list(modules) + list(parameters) + list(buffers))
    module = cls.__new__(cls)
    torch.nn.Module.__init__(module)
    for name, value in attributes.items():
        if name in _MODULE_INTERNALS:
            _fail(f"{what}: invalid attribute name {name!r}")
        module.__dict__[name] = from_data(value)
    for name in _names(record.get("empty_parameters", []), what, "empty_parameters"):
        module._parameters[name] = None
    for name in parameters:
        requires_grad = parameters[name] if isinstance(parameters, dict) else True
        module._parameters[name] = torch.nn.Parameter(
            tensors[name], requires_grad=bool(requires_grad)
        )
    for name in buffers:
        module._buffers[name] = tensors[name]
    for name in _names(record.get("empty_buffers", []), what, "empty_buffers"):
        module._buffers[name] = None
    non_persistent = _names(record.get("non_persistent", []), what, "non_persistent")
    module._non_persistent_buffers_set.update(non_persistent)
    for name, sub in modules.items():
        if not isinstance(name, str):
            _fail(f"{what}: invalid submodule name {name!r}")
        if sub is not None and not (isinstance(sub, dict) and MODULE in sub):
            _fail(f"{what}: submodule {name!r} is not a module record")
        module._modules[name] = None if sub is None else _module_from_record(sub)
    module.train(bool(record.get("training", False)))
    return module


def _object_from_record(record):
    cls = record.get("class")
    if not (isinstance(cls, type) and _is_domain_class(cls)):
        _fail(f"an object record names {cls!r}, which is not a skebm Domain class")
    attributes = record.get("attributes")
    if not isinstance(attributes, dict) or not all(
        isinstance(k, str) for k in attributes
    ):
        _fail(f"{cls.__name__}: 'attributes' must be a dict of names")
    check_attribute_names(cls, attributes)
    obj = cls.__new__(cls)
    obj.__dict__.update({k: from_data(v) for k, v in attributes.items()})
    return obj


def _is_domain_class(cls):
    from .domains import Domain

    return issubclass(cls, Domain)


def from_data(value):
    """Rebuild what :func:`to_data` wrote as data (checked; see ModelFileError)."""
    if type(value) is dict:
        if MODULE in value:
            return _module_from_record(value)
        if OBJECT in value:
            return _object_from_record(value)
        if TENSOR in value:
            tensors = _load_blob(value[TENSOR], "a tensor")
            if set(tensors) != {"tensor"}:
                _fail("a tensor record holds no tensor named 'tensor'")
            return tensors["tensor"]
        if DTYPE in value:
            dtype = getattr(torch, str(value[DTYPE]), None)
            if not isinstance(dtype, torch.dtype):
                _fail(f"unknown torch dtype {value[DTYPE]!r}")
            return dtype
        if DEVICE in value:
            try:
                return torch.device(str(value[DEVICE]))
            except RuntimeError:
                _fail(f"unknown torch device {value[DEVICE]!r}")
        return {k: from_data(v) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(from_data(v) for v in value)
    return value
