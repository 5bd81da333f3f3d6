"""skebm.io: model files without pickle (skops.io, safetensors), refused
crafted files, fuzzed files that fail cleanly, version warnings."""

import io
import json
import pickle
import warnings
import zipfile

import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skebm import (
    AutoregressiveScoreMatchingDensity,
    EnergyDiscrepancyDensity,
    PseudoLikelihoodIsing,
    RatioMatchingBinary,
    ScoreMatchingDensity,
    SlicedScoreMatchingDensity,
)
from skebm.datasets import make_two_moons
from skebm.exceptions import InconsistentVersionWarning, ModelFileError

skops_io = pytest.importorskip("skops.io")
pytest.importorskip("safetensors")
from skops.io.exceptions import UntrustedTypesFoundException  # noqa: E402

import skebm.io  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
    pytest.mark.filterwarnings("ignore::skebm.exceptions.LogPartitionWarning"),
]


FAST = dict(max_iter=2, early_stopping=False, random_state=0)


def _moons():
    return make_two_moons(300, random_state=0)


def _bits(d=5, n=200):
    return (np.random.RandomState(0).rand(n, d) < 0.3).astype(float)


CASES = {
    "score_matching": (
        lambda: ScoreMatchingDensity(base="gaussian", **FAST),
        _moons,
    ),
    "score_matching_gmm_base": (
        lambda: ScoreMatchingDensity(
            base=GaussianMixture(2, random_state=0), **FAST
        ),
        _moons,
    ),
    "score_matching_quadratic": (
        lambda: ScoreMatchingDensity(energy="quadratic"), _moons
    ),
    "sliced_domain": (
        lambda: SlicedScoreMatchingDensity(
            base="gaussian", domain="nonnegative", **FAST
        ),
        lambda: _moons() - _moons().min(0),
    ),
    "sliced_box_no_base": (
        lambda: SlicedScoreMatchingDensity(
            base=None, domain=(-2.0, 3.0), **FAST
        ),
        _moons,
    ),
    "energy_discrepancy": (
        lambda: EnergyDiscrepancyDensity(base="gaussian", **FAST),
        _moons,
    ),
    "autoregressive": (
        lambda: AutoregressiveScoreMatchingDensity(
            base="gaussian", **FAST
        ),
        _moons,
    ),
    "ratio_matching_mlp": (
        lambda: RatioMatchingBinary(**FAST), _bits
    ),
    "ratio_matching_boltzmann_spins": (
        lambda: RatioMatchingBinary(energy="boltzmann", **FAST),
        lambda: 2 * _bits() - 1,
    ),
    "ising": (lambda: PseudoLikelihoodIsing(), _bits),
    "ising_float32": (lambda: PseudoLikelihoodIsing(), lambda: _bits().astype(
        np.float32)),
    "pipeline": (
        lambda: make_pipeline(
            StandardScaler(),
            ScoreMatchingDensity(base="gaussian", **FAST),
        ),
        _moons,
    ),
}


def _last(est):
    return est[-1] if hasattr(est, "steps") else est


@pytest.mark.parametrize("name", list(CASES))
def test_round_trip_scores_and_samples_identical(name):
    make, data = CASES[name]
    X = data()
    est = make().fit(X)
    loaded = skebm.io.loads(skebm.io.dumps(est))
    assert type(loaded) is type(est)
    np.testing.assert_array_equal(loaded.score_samples(X), est.score_samples(X))
    np.testing.assert_array_equal(
        _last(loaded).sample(7, random_state=3), _last(est).sample(7, random_state=3)
    )
    assert _last(loaded).get_params() .keys() == _last(est).get_params().keys()
    # joblib goes through the same data state
    restored = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(restored.score_samples(X), est.score_samples(X))


def test_file_round_trip_and_skops_load_with_library_types(tmp_path):
    X = _moons()
    est = ScoreMatchingDensity(base="gaussian", **FAST).fit(X)
    path = tmp_path / "model.skops"
    skebm.io.dump(est, path)
    # skops' own loader with the library's types
    loaded = skops_io.load(path, trusted=skebm.io.trusted_types())
    np.testing.assert_array_equal(loaded.score_samples(X), est.score_samples(X))
    assert skebm.io.get_untrusted_types(path) == []
    # without them skops names what it would build
    with pytest.raises(UntrustedTypesFoundException, match="ScoreMatchingDensity"):
        skops_io.load(path)


def test_deferred_log_partition_survives_the_round_trip():
    X = _bits(d=22, n=300)
    est = RatioMatchingBinary(
        energy="boltzmann", max_iter=2, n_ais_chains=16, n_ais_steps=5,
        random_state=0,
    ).fit(X)
    loaded = skebm.io.loads(skebm.io.dumps(est))
    assert "log_partition_" not in vars(loaded)
    assert loaded.log_partition_ == est.log_partition_


def test_unfitted_estimator_round_trip():
    est = RatioMatchingBinary(hidden_layer_sizes=(8,), binarize=0.5)
    loaded = skebm.io.loads(skebm.io.dumps(est))
    assert loaded.get_params() == est.get_params()


class MyEnergy(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(d))
        self.power = 2

    def forward(self, x):
        return 0.5 * (self.scale * x.abs() ** self.power).sum(1)


def test_user_module_needs_explicit_trust():
    X = _moons()
    est = ScoreMatchingDensity(energy=MyEnergy(2), base=None, max_iter=2,
                               random_state=0).fit(X)
    data = skebm.io.dumps(est)
    name = f"{__name__}.MyEnergy"
    assert skebm.io.get_untrusted_types(data) == [name]
    with pytest.raises(UntrustedTypesFoundException, match="MyEnergy"):
        skebm.io.loads(data)
    loaded = skebm.io.loads(data, trusted=[MyEnergy])
    np.testing.assert_array_equal(loaded.score_samples(X), est.score_samples(X))
    assert type(loaded.energy_) is MyEnergy and loaded.energy_.power == 2
    assert skebm.io.loads(data, trusted=[name]).n_features_in_ == 2


def test_module_with_hooks_cannot_be_saved_as_data():
    energy = MyEnergy(2)
    energy.register_forward_hook(lambda *args: None)
    est = ScoreMatchingDensity(energy=energy, base=None, max_iter=1)
    with pytest.raises(ValueError, match="hooks"):
        skebm.io.dumps(est)


# --------------------------------------------------------------- crafted files
def _edit(data, edit):
    """Rewrite a skops file's schema.json with ``edit(schema)``."""
    source = zipfile.ZipFile(io.BytesIO(data))
    schema = json.loads(source.read("schema.json"))
    edit(schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            content = source.read(name)
            if name == "schema.json":
                content = json.dumps(schema).encode()
            target.writestr(name, content)
    return out.getvalue()


def _nodes(node):
    """Every node of a skops schema, depth first."""
    if isinstance(node, dict):
        if "__loader__" in node:
            yield node
        for value in node.values():
            yield from _nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes(value)


def _attribute(schema, name):
    return schema["content"]["content"][name]


class _Payload:
    """Pickling this runs ``touch`` on unpickling: what a crafted pickle does."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickle_file_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    data = pickle.dumps(_Payload(str(marker)))
    with pytest.raises(ModelFileError, match="pickle file is refused"):
        skebm.io.loads(data)
    assert not marker.exists()
    path = tmp_path / "model.joblib"
    path.write_bytes(data)
    with pytest.raises(ModelFileError):
        skebm.io.load(path)
    assert not marker.exists()


def test_crafted_code_in_a_model_file_is_refused(tmp_path):
    est = PseudoLikelihoodIsing().fit(_bits())
    data = skebm.io.dumps(est)
    marker = tmp_path / "ran"

    def inject(schema):
        # a call of builtins.open in the estimator's state, as a pickle's
        # __reduce__ would make it
        _add_key(schema["content"], "payload", {
            "__class__": "open",
            "__module__": "builtins",
            "__loader__": "ConstructorFromReduceNode",
            "content": {
                "__class__": "tuple", "__module__": "builtins",
                "__loader__": "TupleNode",
                "content": [
                    {"__class__": "str", "__module__": "builtins",
                     "__loader__": "JsonNode", "content": json.dumps(str(marker)),
                     "is_json": True},
                ],
            },
        })

    with pytest.raises(UntrustedTypesFoundException, match="builtins.open"):
        skebm.io.loads(_edit(data, inject))
    assert not marker.exists()

    def swap_class(schema):
        # the energy's class replaced by a function (os.system)
        for node in _nodes(schema):
            if node["__loader__"] == "TypeNode" and node["__module__"] != "builtins":
                node["__module__"], node["__class__"] = "os", "system"

    with pytest.raises(UntrustedTypesFoundException, match="os.system"):
        skebm.io.loads(_edit(data, swap_class))


def test_module_record_naming_a_trusted_non_module_is_refused():
    data = skebm.io.dumps(PseudoLikelihoodIsing().fit(_bits()))

    def swap(schema):
        for node in _nodes(schema):
            if node["__loader__"] == "TypeNode" and node["__module__"] != "builtins":
                node["__module__"], node["__class__"] = (
                    "sklearn.preprocessing._data", "StandardScaler")

    scaler = "sklearn.preprocessing._data.StandardScaler"
    with pytest.raises(ModelFileError, match="not a torch.nn.Module"):
        skebm.io.loads(_edit(data, swap), trusted=[scaler])


def _add_key(dict_node, key, value_node):
    """Add an entry to a skops DictNode (its key types are a parallel list)."""
    dict_node["content"][key] = value_node
    key_types = dict_node["key_types"]["content"]
    key_types.append(dict(key_types[0]))


def test_state_that_shadows_methods_is_refused():
    data = skebm.io.dumps(PseudoLikelihoodIsing().fit(_bits()))

    def shadow_estimator_method(schema):
        _add_key(schema["content"], "score_samples", _attribute(schema, "alpha"))

    with pytest.raises(ModelFileError, match="'score_samples', which is code"):
        skebm.io.loads(_edit(data, shadow_estimator_method))

    def shadow_module_forward(schema):
        for node in _nodes(schema):
            content = node.get("content")
            if isinstance(content, dict) and "attributes" in content:
                attributes = content["attributes"]
                _add_key(attributes, "forward", attributes["content"]["n_features"])
                return

    with pytest.raises(ModelFileError, match="'forward', which is code"):
        skebm.io.loads(_edit(data, shadow_module_forward))


# ----------------------------------------------------------------------- fuzz
def _check_fails_cleanly(data):
    """Loading ``data`` either works or raises one of the documented errors."""
    try:
        skebm.io.loads(data)
    except (ModelFileError, UntrustedTypesFoundException):
        return False
    return True


@pytest.mark.parametrize("name", ["ising", "ratio_matching_mlp", "score_matching"])
def test_truncated_files_fail_cleanly(name):
    make, X = CASES[name]
    data = skebm.io.dumps(make().fit(X()))
    cuts = sorted(set(np.linspace(0, len(data) - 1, 40).astype(int)))
    for cut in cuts:
        assert not _check_fails_cleanly(data[:cut]), cut


def test_flipped_bytes_fail_cleanly():
    make, X = CASES["ratio_matching_mlp"]
    data = bytearray(skebm.io.dumps(make().fit(X())))
    rng = np.random.RandomState(0)
    for position in rng.choice(len(data), 40, replace=False):
        corrupted = bytearray(data)
        corrupted[position] ^= 0xFF
        try:
            skebm.io.loads(bytes(corrupted))
        except (ModelFileError, UntrustedTypesFoundException):
            pass


def _json_nodes(schema, key):
    return _attribute(schema, key)


@pytest.mark.parametrize(
    "attribute, content",
    [
        ("n_features_in_", '"five"'),
        ("n_features_in_", "0"),
        ("log_partition_", '"nan"'),
        ("log_partition_", "NaN"),
        ("alpha", '"strong"'),
        ("binarize", "[1, 2]"),
    ],
)
def test_wrong_types_fail_cleanly(attribute, content):
    est = PseudoLikelihoodIsing().fit(_bits())
    data = skebm.io.dumps(est)

    def edit(schema):
        node = _attribute(schema, attribute)
        node.update({"__class__": "str", "__module__": "builtins",
                     "__loader__": "JsonNode", "content": content, "is_json": True})

    with pytest.raises(ModelFileError):
        skebm.io.loads(_edit(data, edit))


def _replace_tensors(data, make_blob):
    """Replace the first safetensors blob of a module in the file."""
    source = zipfile.ZipFile(io.BytesIO(data))
    schema = json.loads(source.read("schema.json"))
    target_file = None
    for node in _nodes(schema):
        if node["__loader__"] == "DictNode" and "tensors" in node.get("content", {}):
            blob = node["content"]["tensors"]
            if blob.get("__loader__") == "BytesNode":
                target_file = blob["file"]
                break
    assert target_file is not None
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            content = source.read(name)
            if name == target_file:
                content = make_blob(content)
            target.writestr(name, content)
    return out.getvalue()


def test_tensors_of_wrong_shape_or_name_fail_cleanly():
    from safetensors.torch import load, save

    est = RatioMatchingBinary(**FAST).fit(_bits())
    data = skebm.io.dumps(est)

    def wrong_shape(blob):
        tensors = load(blob)
        return save({k: torch.zeros(*(s + 1 for s in v.shape)) for k, v in
                     tensors.items()})

    def wrong_names(blob):
        tensors = load(blob)
        return save({k + "_x": v for k, v in tensors.items()})

    def truncated(blob):
        return blob[: len(blob) // 2]

    def huge_header(blob):
        return (10**12).to_bytes(8, "little") + blob[8:]

    for make_blob, match in [
        (wrong_shape, "inconsistent"),
        (wrong_names, "where"),
        (truncated, "cannot be read"),
        (huge_header, "cannot be read"),
    ]:
        with pytest.raises(ModelFileError, match=match):
            skebm.io.loads(_replace_tensors(data, make_blob))


def test_not_bytes_and_not_a_zip():
    with pytest.raises(TypeError, match="bytes"):
        skebm.io.loads("a string")
    with pytest.raises(ModelFileError, match="not a skops model file"):
        skebm.io.loads(b"")


# -------------------------------------------------------------------- versions
def test_loading_a_file_from_another_version_warns():
    data = skebm.io.dumps(PseudoLikelihoodIsing().fit(_bits()))

    def older(schema):
        _attribute(schema, "_skebm_version")["content"] = '"0.0.1"'

    with pytest.warns(InconsistentVersionWarning, match="0.0.1"):
        skebm.io.loads(_edit(data, older))
    with warnings.catch_warnings():
        warnings.simplefilter("error", InconsistentVersionWarning)
        skebm.io.loads(data)


def test_versions_are_recorded():
    data = skebm.io.dumps(PseudoLikelihoodIsing().fit(_bits()))
    schema = json.loads(zipfile.ZipFile(io.BytesIO(data)).read("schema.json"))
    assert json.loads(_attribute(schema, "_skebm_version")["content"]) == (
        skebm.__version__
    )
    assert json.loads(_attribute(schema, "_torch_version")["content"]) == (
        torch.__version__
    )


def test_search_with_a_fitted_best_estimator_round_trips():
    from sklearn.model_selection import GridSearchCV

    X = _moons()
    search = GridSearchCV(
        ScoreMatchingDensity(energy="quadratic"), {"alpha": [0.0, 1.0]}, cv=2
    ).fit(X)
    data = skebm.io.dumps(search)
    # skops does not trust scikit-learn's scorers and splitters by default:
    # reviewed, they are passed as a user would
    untrusted = skebm.io.get_untrusted_types(data)
    assert all(name.startswith("sklearn.") for name in untrusted)
    loaded = skebm.io.loads(data, trusted=untrusted)
    np.testing.assert_array_equal(
        loaded.best_estimator_.score_samples(X), search.score_samples(X)
    )
