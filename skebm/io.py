"""Save and load fitted estimators without pickle, with :mod:`skops.io`.

Loading a pickle (``joblib.load``, ``pickle.load``) runs whatever code the
file holds: load only pickles you wrote yourself. The files written here are
``skops`` files (a zip of JSON and arrays): a fitted estimator's parameters
and fitted numpy attributes are data, its torch modules (the energy, the base
density) are their classes' names, plain attributes and one ``safetensors``
blob of tensors, and loading builds nothing whose type is not trusted: the
types of skebm (:func:`trusted_types`), those ``skops`` trusts by default
(scikit-learn's estimators, numpy, scipy), and the ones you pass. A module
class of your own (your ``energy``) must be passed in ``trusted``; loading
never calls its ``__init__``.

``skops.io.load(path, trusted=skebm.io.trusted_types())`` loads the same
files: this module adds the trusted types of skebm, a check of what was
loaded, and clear errors.

Examples
--------
>>> import numpy as np
>>> from skebm import ScoreMatchingDensity
>>> from skebm import io
>>> X = np.random.RandomState(0).normal(size=(200, 2))
>>> est = ScoreMatchingDensity(energy="quadratic").fit(X)
>>> data = io.dumps(est)
>>> loaded = io.loads(data)
>>> bool(np.array_equal(loaded.score_samples(X), est.score_samples(X)))
True
"""

import importlib
import json
import pkgutil
import zipfile
from pathlib import Path

import torch

from . import _persistence
from .exceptions import ModelFileError

__all__ = ["dump", "dumps", "get_untrusted_types", "load", "loads", "trusted_types"]


def _skops():
    try:
        import skops.io
    except ImportError as exc:  # pragma: no cover - the optional extra
        raise ImportError(
            "skebm.io needs skops (and safetensors): pip install 'skebm[io]'"
        ) from exc
    return skops.io


def _type_name(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


def _library_classes():
    """Every class defined in skebm that a model file may hold, with every
    name a module of skebm gives it.

    Returns a set of ``(class, full name)``: the defining module's name, and
    the names under which a package re-exports it (``skebm.energies.MLPEnergy``
    for the class defined in ``skebm.energies.continuous``), which files
    written before the energies became a package still use.
    """
    from sklearn.base import BaseEstimator

    import skebm

    from .domains import Domain

    named = set()
    for info in pkgutil.walk_packages(skebm.__path__, prefix="skebm."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for attribute, value in vars(module).items():
            if (
                isinstance(value, type)
                and value.__module__.startswith("skebm.")
                and issubclass(value, torch.nn.Module | Domain | BaseEstimator)
            ):
                named.add((value, _type_name(value)))
                named.add((value, f"{info.name}.{attribute}"))
    return named


def _torch_classes():
    """torch's own layers (``torch.nn``): rebuilt from data, no code of theirs
    runs while loading."""
    return {
        value
        for value in vars(torch.nn).values()
        if isinstance(value, type) and issubclass(value, torch.nn.Module)
    }


def trusted_types():
    """The types that a skebm model file may hold, by their full names.

    skebm's estimators, energies, base densities and domains (found in the
    package, so new ones are included), and the modules of ``torch.nn``.
    Pass it to ``skops.io.load(file, trusted=...)``; :func:`load` adds it
    itself.

    Returns
    -------
    names : list of str
        Sorted fully qualified type names.

    Examples
    --------
    >>> from skebm.io import trusted_types
    >>> "skebm._score_matching.ScoreMatchingDensity" in trusted_types()
    True
    """
    names = {name for _, name in _library_classes()}
    return sorted(names | {_type_name(c) for c in _torch_classes()})


def _check_savable(obj):
    """Every skebm estimator in ``obj`` (a Pipeline's steps too) as data."""
    from ._base import _BaseEnergyDensity

    for est in _estimators(obj):
        if isinstance(est, _BaseEnergyDensity):
            _persistence.check_data(
                _persistence.to_data(dict(vars(est))), type(est).__name__
            )


def _estimators(obj, depth=0, seen=None):
    """``obj`` and the estimators held in its attributes, parameters and
    fitted ones alike (a Pipeline's steps, a search's ``best_estimator_``)."""
    from sklearn.base import BaseEstimator

    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 20:
        return
    seen.add(id(obj))
    yield obj
    values = list(vars(obj).values()) if isinstance(obj, BaseEstimator) else []
    while values:
        value = values.pop()
        if isinstance(value, list | tuple):
            values.extend(value)
        elif isinstance(value, dict):
            values.extend(value.values())
        elif isinstance(value, BaseEstimator):
            yield from _estimators(value, depth + 1, seen)


def dumps(obj):
    """Save ``obj`` (an estimator, a Pipeline...) as bytes in the skops format.

    Parameters
    ----------
    obj : object
        A fitted or unfitted skebm estimator, or a scikit-learn object
        holding one.

    Returns
    -------
    data : bytes
        The file's content; :func:`loads` reads it.

    Examples
    --------
    >>> from skebm import PseudoLikelihoodIsing
    >>> from skebm.io import dumps
    >>> dumps(PseudoLikelihoodIsing())[:2]
    b'PK'
    """
    _check_savable(obj)
    return _skops().dumps(obj, compression=zipfile.ZIP_DEFLATED)


def dump(obj, file):
    """Save ``obj`` to ``file`` in the skops format (no pickle).

    Parameters
    ----------
    obj : object
        A fitted or unfitted skebm estimator, or a scikit-learn object
        holding one (a ``Pipeline``, a ``GridSearchCV``).
    file : str, path or binary file object
        Where to write; ``.skops`` is the usual extension.

    Examples
    --------
    >>> import numpy as np
    >>> import tempfile, os
    >>> from skebm import RatioMatchingBinary
    >>> from skebm.io import dump, load
    >>> X = (np.random.RandomState(0).rand(100, 4) < 0.5).astype(float)
    >>> est = RatioMatchingBinary(energy="boltzmann", max_iter=2,
    ...                           random_state=0).fit(X)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.skops")
    >>> dump(est, path)
    >>> load(path).n_features_in_
    4
    """
    data = dumps(obj)
    if isinstance(file, str | Path):
        with open(file, "wb") as f:
            f.write(data)
    else:
        file.write(data)


def _trusted(trusted):
    if trusted is None:
        trusted = []
    elif isinstance(trusted, str | type):
        trusted = [trusted]
    elif trusted is True:
        raise TypeError(
            "trusted must be a list of types (or their names), not True: name "
            "the classes you trust (see get_untrusted_types)."
        )
    names = [t if isinstance(t, str) else _type_name(t) for t in trusted]
    return trusted_types() + names


def _read(data, trusted):
    skops_io = _skops()
    from skops.io.exceptions import UntrustedTypesFoundException

    try:
        return skops_io.loads(data, trusted=_trusted(trusted))
    except UntrustedTypesFoundException:
        raise  # names the types; nothing was built
    except (ModelFileError, ImportError):
        raise
    except (zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise ModelFileError(
            f"not a skops model file (a zip archive with schema.json): {exc}. A "
            "joblib or pickle file is refused here: it can run code when loaded."
        ) from exc
    except Exception as exc:  # whatever a damaged or crafted file provokes
        raise ModelFileError(
            f"the model file is damaged or was not written by skebm.io.dump: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _check_loaded(obj):
    """Evaluate every loaded skebm estimator once: a file whose tensors or
    arrays do not fit together fails here, not later."""
    from ._base import _BaseEnergyDensity

    for est in _estimators(obj):
        if not isinstance(est, _BaseEnergyDensity) or "energy_" not in vars(est):
            continue
        name = type(est).__name__
        try:
            est._check_loaded()
        except Exception as exc:
            raise ModelFileError(
                f"the loaded {name} is inconsistent ({type(exc).__name__}: {exc}): "
                "the file is damaged or was not written by skebm.io.dump."
            ) from exc
    return obj


def loads(data, trusted=None):
    """Load an object from bytes written by :func:`dumps`.

    Parameters
    ----------
    data : bytes
        The content of a file written by :func:`dump` or :func:`dumps`.
    trusted : list of type or str, default=None
        Types trusted besides skebm's own (:func:`trusted_types`) and those
        ``skops`` trusts by default: the class of your own energy module,
        say. Give only classes whose code you trust.

    Returns
    -------
    obj : object
        The loaded object.

    Raises
    ------
    skops.io.exceptions.UntrustedTypesFoundException
        The file holds a type that is not trusted (nothing was built).
    ValueError
        The file is not a skops file, or its content is damaged or
        inconsistent (:class:`skebm.exceptions.ModelFileError`).

    Examples
    --------
    >>> from skebm import PseudoLikelihoodIsing
    >>> from skebm.io import dumps, loads
    >>> loads(dumps(PseudoLikelihoodIsing(alpha=0.5))).alpha
    0.5
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"data must be bytes, got {type(data).__name__}.")
    return _check_loaded(_read(bytes(data), trusted))


def load(file, trusted=None):
    """Load an object saved by :func:`dump`, building only trusted types.

    Parameters
    ----------
    file : str, path or binary file object
        The file written by :func:`dump`.
    trusted : list of type or str, default=None
        Types trusted besides skebm's own (:func:`trusted_types`) and those
        ``skops`` trusts by default: pass the class of your own energy
        module, e.g. ``trusted=[MyEnergy]``, after reading
        :func:`get_untrusted_types`. Give only classes whose code you trust.

    Returns
    -------
    obj : object
        The loaded object. A file written by another skebm release warns
        with :class:`~skebm.exceptions.InconsistentVersionWarning`.

    Raises
    ------
    skops.io.exceptions.UntrustedTypesFoundException
        The file holds a type that is not trusted (nothing was built).
    ValueError
        The file is not a skops file (a pickle, say), or it is damaged or
        inconsistent (:class:`skebm.exceptions.ModelFileError`).

    Examples
    --------
    >>> import io
    >>> import numpy as np
    >>> from skebm import ScoreMatchingDensity
    >>> from skebm.io import dump, load
    >>> buffer = io.BytesIO()
    >>> X = np.random.RandomState(0).normal(size=(100, 3))
    >>> dump(ScoreMatchingDensity(energy="quadratic").fit(X), buffer)
    >>> load(io.BytesIO(buffer.getvalue())).n_features_in_
    3
    """
    if isinstance(file, str | Path):
        with open(file, "rb") as f:
            data = f.read()
    else:
        data = file.read()
    return loads(data, trusted=trusted)


def get_untrusted_types(file):
    """Types in ``file`` that :func:`load` would refuse without ``trusted``.

    Parameters
    ----------
    file : str, path, bytes or binary file object
        A file written by :func:`dump`, or its content.

    Returns
    -------
    names : list of str
        Fully qualified names of the types neither skebm nor ``skops``
        trusts: review them before passing them to :func:`load`.

    Examples
    --------
    >>> from skebm import PseudoLikelihoodIsing
    >>> from skebm.io import dumps, get_untrusted_types
    >>> get_untrusted_types(dumps(PseudoLikelihoodIsing()))
    []
    """
    if isinstance(file, bytes | bytearray):
        data = bytes(file)
    elif isinstance(file, str | Path):
        data = Path(file).read_bytes()
    else:
        data = file.read()
    library = set(trusted_types())
    names = _skops().get_untrusted_types(data=data)
    return sorted(n for n in names if n not in library)

