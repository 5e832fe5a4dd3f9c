"""Hostile model files and checkpoints: forged content, decompression bombs, damaged bytes.

A forger here rewrites the file *with* a matching member list and checksum
(the checksum guards against edits and damage, not against someone who
recomputes it), so each case reaches the schema or parameter check it targets.
"""

import io
import json
import struct
import time
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cfe_fast import CFEnsembleClassifier, ModelFileError, config, make_ensemble
from cfe_fast.estimator import FITTED_ATTRIBUTES
from cfe_fast.io.archive import METADATA_KEY, content_digest
from cfe_fast.io.model_file import SCHEMA

BASE = dict(latent_dim=3, max_iter=6, tol=0.0, random_state=0)


@pytest.fixture(scope="module")
def data():
    return make_ensemble(n_classifiers=6, n_instances=120, random_state=3)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("model") / "model.npz"
    CFEnsembleClassifier(**BASE).fit(data.P, data.labels).save(path, include_training_factors=True)
    return path.read_bytes()


def members_of(raw):
    with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
        members = {key: archive[key] for key in archive.files}
    return json.loads(str(members.pop(METADATA_KEY))), members


def pack(metadata, members, checksum=True, compress=False):
    if checksum:
        metadata = {**metadata, "members": sorted(members)}
        metadata["checksum"] = content_digest(metadata, members)
    buffer = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buffer, **{METADATA_KEY: np.array(json.dumps(metadata))},
                                                    **members)
    return buffer.getvalue()


def load(tmp_path, raw):
    path = tmp_path / "model.npz"
    path.write_bytes(raw)
    return CFEnsembleClassifier.load(path)


def forged(saved, change, **options):
    metadata, members = members_of(saved)
    change(metadata, members)
    return pack(metadata, members, **options)


def test_every_fitted_attribute_has_a_rule():
    assert set(FITTED_ATTRIBUTES) == set(SCHEMA)


def test_the_untouched_file_loads(tmp_path, saved, data):
    model = load(tmp_path, saved)
    assert np.isfinite(model.predict_proba(data.P)).all()


def _set_attr(name, value):
    return lambda md, mb: md["attributes"].__setitem__(name, value)


def _set_array(name, value):
    def change(metadata, members):
        members[f"attr/{name}"] = value
        metadata["arrays"] = sorted(set(metadata["arrays"]) | {name})
    return change


@pytest.mark.parametrize("change, match", [
    (_set_attr("intercept_", float("nan")), "intercept_ holds NaN"),
    (_set_attr("intercept_", float("inf")), "intercept_ holds NaN"),
    (_set_attr("intercept_", "0.5"), "intercept_ is '0.5'"),
    (_set_attr("intercept_", None), "intercept_ is None"),
    (_set_attr("intercept_", True), "intercept_ is True"),
    (_set_attr("aggregator_", "bogus"), "aggregator_ is 'bogus'"),
    (_set_attr("n_features_in_", 0), "n_features_in_ is below 1"),
    (_set_attr("n_features_in_", 6.0), "n_features_in_ is 6.0"),
    (_set_attr("latent_dim_", 4), r"classifier_factors_ has shape \(3, 6\), expected \(4, 6\)"),
    (_set_attr("lam", 1e6), r"unknown fitted attribute\(s\) \['lam'\]"),
    (_set_attr("predict_proba", 0), r"unknown fitted attribute\(s\) \['predict_proba'\]"),
    (_set_attr("converged_", 1), "converged_ is 1"),
    (_set_attr("n_iter_", -1), "n_iter_ is below 0"),
    (_set_attr("held_out_positive_rate_", 1.5), "held_out_positive_rate_ is above 1"),
    (_set_array("coef_", np.full(6, np.nan)), "coef_ holds NaN"),
    (_set_array("coef_", np.array(["a"] * 6)), "coef_ has dtype <U1"),
    (_set_array("coef_", np.zeros((6, 1))), r"coef_ has shape \(6, 1\)"),
    (_set_array("classifier_factors_", np.full((3, 6), np.inf)), "classifier_factors_ holds NaN"),
    (_set_array("classes_", np.array([5, 5])), "not two classes"),
    (_set_array("classes_", np.array([0, 1, 2])), r"classes_ has shape \(3,\)"),
    (_set_array("transductive_proba_", np.full(120, 2.0)), "transductive_proba_ is above 1"),
    (_set_array("transductive_proba_", np.full(119, 0.5)), r"transductive_proba_ has shape \(119,\), expected \(120,\)"),
    (lambda md, mb: (md["arrays"].remove("instance_factors_"), mb.pop("attr/instance_factors_")),
     r"holds \['transductive_proba_'\] without \['instance_factors_'\]: .* all together or not at all"),
    (_set_array("feature_names_in_", np.array(["a", "b"])), r"feature_names_in_ has shape \(2,\)"),
    (lambda md, mb: md["params"].update(lam=-1.0), "invalid parameter: lam must be >= 0"),
    (lambda md, mb: md["params"].update(backend="evil"), "invalid parameter: backend has an unknown backend"),
    (lambda md, mb: md["params"].update(trainer="exact", rho=0.0), "invalid parameter: trainer='exact' needs"),
    (lambda md, mb: md.update(attributes=[]), "lacks the fitted values"),
    (lambda md, mb: md["history"]["keys"].remove("loss"), r"history lacks the entries \['loss'\]"),
    (lambda md, mb: md["history"]["kinds"].pop("loss"), "history entry 'loss' has no kind"),
    (lambda md, mb: md.update(history="x"), "history description is malformed"),
    (lambda md, mb: mb.update({"history/loss": mb["history/loss"][:2]}),
     r"history member .* has 6 entries, the others 2"),
])
def test_forged_content_is_refused_with_the_reason(tmp_path, saved, change, match):
    with pytest.raises(ModelFileError, match=match):
        load(tmp_path, forged(saved, change))


def test_an_edit_without_a_new_checksum_is_refused(tmp_path, saved):
    raw = forged(saved, _set_attr("intercept_", 3.0), checksum=False)
    with pytest.raises(ModelFileError, match="does not match its checksum"):
        load(tmp_path, raw)


def test_a_member_the_metadata_does_not_list_is_refused(tmp_path, saved):
    metadata, members = members_of(saved)
    raw = pack(metadata, {**members, "attr/extra": np.zeros(2)}, checksum=False)
    with pytest.raises(ModelFileError, match=r"unexpected member\(s\) \['attr/extra'\]"):
        load(tmp_path, raw)


def _bomb_member(path, name, nbytes):
    """Add member ``name`` declaring ``nbytes`` of zeros, deflated (a few KB on disk per GB declared)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (nbytes // 8,)})
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open(name + ".npy", "w", force_zip64=True) as member:
            member.write(header.getvalue())
            block = bytes(2**24)
            for _ in range(nbytes // len(block)):
                member.write(block)


def test_a_decompression_bomb_is_refused_before_it_is_decompressed(tmp_path, saved, monkeypatch):
    """A member not in the list, and a listed member larger than the cap: refused from the headers alone."""
    path = tmp_path / "model.npz"
    path.write_bytes(saved)
    _bomb_member(path, "extra", 2**28)
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match="unexpected member"):
        CFEnsembleClassifier.load(path)
    assert time.perf_counter() - start < 0.2  # decompressing 256 MB takes longer
    monkeypatch.setattr(config, "NPZ_MEMBER_MAX_BYTES", 2**20)
    metadata, members = members_of(saved)
    members["attr/transductive_proba_"] = np.zeros(2**18)
    path.write_bytes(pack(metadata, members))
    limit = r"would decompress to 2 MiB .* limit of 1 MiB \(cfe_fast.config.NPZ_MEMBER_MAX_BYTES\)"
    with pytest.raises(ModelFileError, match=limit):
        CFEnsembleClassifier.load(path)


def test_a_header_that_lies_about_the_size_is_refused(tmp_path, saved):
    """A member whose .npy header promises fewer bytes than the zip entry holds (or more) is corrupt."""
    metadata, members = members_of(saved)
    raw = pack(metadata, members)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (2,)})
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            content = source.read(info)
            if info.filename == "attr/coef_.npy":
                content = header.getvalue() + content[len(header.getvalue()):]
            target.writestr(info.filename, content)
    with pytest.raises(ModelFileError, match="'attr/coef_' declares .* bytes but its header"):
        load(tmp_path, out.getvalue())


def test_pickled_members_are_refused_from_the_header(tmp_path, saved):
    metadata, members = members_of(saved)
    members["attr/coef_"] = np.array([{"code": 1}] * 6, dtype=object)
    buffer = io.BytesIO()
    np.savez(buffer, **{METADATA_KEY: np.array(json.dumps(metadata))}, **members)
    with pytest.raises(ModelFileError, match="pickled object array"):
        load(tmp_path, buffer.getvalue())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.floats(0, 1), value=st.integers(0, 255))
def test_a_damaged_byte_is_a_model_file_error_or_harmless(tmp_path, saved, data, position, value):
    """Any single byte changed anywhere: the file loads and predicts finite values, or is refused as
    a ModelFileError (never tokenize, KeyError or a NumPy error)."""
    raw = bytearray(saved)
    raw[min(int(position * len(raw)), len(raw) - 1)] = value
    try:
        model = load(tmp_path, bytes(raw))
    except ModelFileError:
        return
    assert np.isfinite(model.predict_proba(data.P[:5])).all()


@pytest.mark.parametrize("field", [6, 10])  # the central directory's "version needed" and "compression method"
def test_an_unsupported_zip_version_or_method_is_a_model_file_error(tmp_path, saved, field):
    raw = bytearray(saved)
    entry = raw.index(b"PK\x01\x02")  # the first member's central directory record
    raw[entry + field:entry + field + 2] = struct.pack("<H", 64 if field == 6 else 99)
    with pytest.raises(ModelFileError):
        load(tmp_path, bytes(raw))


@pytest.mark.parametrize("offset", range(0, 200, 7))
def test_a_flipped_byte_in_the_metadata_header_is_a_model_file_error(tmp_path, saved, offset):
    """Bytes of the metadata member's .npy header (just after its zip local header)."""
    raw = bytearray(saved)
    start = raw.index(b"__metadata__.npy") + len(b"__metadata__.npy")
    (extra,) = struct.unpack("<H", raw[start - len(b"__metadata__.npy") - 2:start - len(b"__metadata__.npy")])
    raw[start + extra + offset] ^= 0x20
    with pytest.raises(ModelFileError):
        load(tmp_path, bytes(raw))


def test_a_checkpoint_is_validated_like_a_model(tmp_path, data):
    checkpoint = tmp_path / "ckpt.npz"
    model = CFEnsembleClassifier(**BASE)
    model.fit(data.P, data.labels, checkpoint=checkpoint, checkpoint_every=2)
    metadata, members = members_of(checkpoint.read_bytes())
    members["state/w"] = np.full_like(members["state/w"], np.nan)
    checkpoint.write_bytes(pack(metadata, members))
    with pytest.raises(ModelFileError, match="hold NaN"):
        CFEnsembleClassifier(**BASE).fit(data.P, data.labels, resume_from=checkpoint)
    metadata["history"]["keys"].remove("loss")
    checkpoint.write_bytes(pack(metadata, members))
    with pytest.raises(ModelFileError, match=r"history lacks the entries \['loss'\]"):
        CFEnsembleClassifier(**BASE).fit(data.P, data.labels, resume_from=checkpoint)


def test_resuming_with_a_max_iter_below_the_checkpoint_is_refused(tmp_path, data):
    checkpoint = tmp_path / "ckpt.npz"
    CFEnsembleClassifier(**BASE).fit(data.P, data.labels, checkpoint=checkpoint, checkpoint_every=6)
    with pytest.raises(ModelFileError, match="at iteration 6, beyond max_iter=1; use max_iter >= 6"):
        CFEnsembleClassifier(**{**BASE, "max_iter": 1}).fit(data.P, data.labels, resume_from=checkpoint)


def test_a_member_stored_twice_is_refused(tmp_path, saved):
    """Two zip entries of one name: which one NumPy would read is not defined, so neither is trusted."""
    path = tmp_path / "model.npz"
    path.write_bytes(saved)
    with zipfile.ZipFile(path, "a") as archive, pytest.warns(UserWarning, match="Duplicate name"):
        archive.writestr("attr/coef_.npy", archive.read("attr/coef_.npy"))
    with pytest.raises(ModelFileError, match="holds member 'attr/coef_' twice"):
        CFEnsembleClassifier.load(path)
