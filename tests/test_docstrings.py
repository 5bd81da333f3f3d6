"""The documentation contract of the public API.

Every public class and function (a name in the ``__all__`` of a public
module) is listed in the API reference, ``doc/api.rst``, and its docstring has
complete numpydoc sections, including an Examples section whose doctest runs
with the test suite (``--doctest-modules``).
"""

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import skebm

numpydoc_validate = pytest.importorskip("numpydoc.validate")

API_RST = Path(__file__).resolve().parents[1] / "doc" / "api.rst"

# numpydoc.validate codes: GL06/GL07 unknown / misordered section, GL08 no
# docstring, SS01 no summary, PR01 parameter not documented, PR02 documented
# parameter that does not exist, RT01 no Returns section, EX01 no Examples.
OBJECT_CHECKS = {"GL06", "GL07", "GL08", "SS01", "PR01", "PR02", "RT01", "EX01"}
# A public method (fit, sample, boundary_weight, ...) is documented on its
# class page: its sections must be right, its own Examples are optional.
METHOD_CHECKS = {"GL06", "GL07", "SS01", "PR01", "PR02", "RT01"}


def _public_modules():
    names = ["skebm"]
    for info in pkgutil.walk_packages(skebm.__path__, "skebm."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


def _public_objects():
    """``{id: (qualified name, object)}``, each object at its first public name."""
    found = {}
    for modname in _public_modules():
        module = importlib.import_module(modname)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                found.setdefault(id(obj), (f"{modname}.{name}", obj))
    return found


def _api_reference_objects():
    """Ids of the objects the autosummary tables of ``doc/api.rst`` name."""
    documented = set()
    module = None
    in_autosummary = False
    for line in API_RST.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\.\. currentmodule:: (\S+)", line)
        if match:
            module = match.group(1)
            continue
        if line.startswith(".. autosummary::"):
            in_autosummary = True
            continue
        if in_autosummary:
            entry = line.strip()
            if line and not line.startswith(" "):
                in_autosummary = False
            elif entry and not entry.startswith(":"):
                obj = importlib.import_module(module)
                for part in entry.split("."):
                    obj = getattr(obj, part)
                documented.add(id(obj))
    return documented


PUBLIC = sorted(_public_objects().values(), key=lambda item: item[0])


def _own_public_methods(cls):
    """Public methods defined by skebm itself (not inherited from sklearn/torch)."""
    for name, member in vars(cls).items():
        if name.startswith("_") or not inspect.isfunction(member):
            continue
        if member.__doc__ is None:
            continue  # undocumented helpers are not shown by the API reference
        yield f"{cls.__module__}.{cls.__qualname__}.{name}"
    for base in cls.__mro__[1:]:
        if base.__module__.startswith("skebm") and not base.__name__.startswith("_"):
            continue  # checked as a public object of its own
        if base.__module__.startswith("skebm"):
            yield from _own_public_methods(base)


def test_public_objects_are_in_the_api_reference():
    documented = _api_reference_objects()
    missing = [name for name, obj in PUBLIC if id(obj) not in documented]
    assert not missing, (
        f"Public objects missing from doc/api.rst: {missing}. Add each with one "
        "line in the autosummary list of its module."
    )


def _errors(name, checks):
    result = numpydoc_validate.validate(name)
    return [f"{code}: {msg}" for code, msg in result["errors"] if code in checks]


@pytest.mark.parametrize("name", [name for name, _ in PUBLIC])
def test_public_docstring_sections(name):
    errors = _errors(name, OBJECT_CHECKS)
    assert not errors, f"{name}:\n" + "\n".join(errors)


@pytest.mark.parametrize(
    "name",
    sorted(
        {
            method
            for _, obj in PUBLIC
            if inspect.isclass(obj)
            for method in _own_public_methods(obj)
        }
    ),
)
def test_public_method_docstring_sections(name):
    errors = _errors(name, METHOD_CHECKS)
    assert not errors, f"{name}:\n" + "\n".join(errors)
