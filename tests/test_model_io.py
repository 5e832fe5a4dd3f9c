"""Safe model files: round trips, refusal of forged/broken files, checkpoint/resume."""

import io
import json
import zipfile

import numpy as np
from sklearn.base import clone
import pytest

from cfe_fast import CFEnsembleClassifier, ModelFileError, make_ensemble
from cfe_fast.io.archive import FORMAT_VERSION, METADATA_KEY, content_digest

BASE = dict(latent_dim=3, max_iter=12, tol=0.0, random_state=0)


@pytest.fixture(scope="module")
def data():
    return make_ensemble(n_classifiers=7, n_instances=250, random_state=4)


@pytest.fixture(scope="module")
def fitted(data):
    return CFEnsembleClassifier(**BASE).fit(data.P, data.labels)


def _members(path):
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def _rewrite(path, members):
    buffer = io.BytesIO()
    np.savez(buffer, **members)
    path.write_bytes(buffer.getvalue())


@pytest.mark.parametrize(
    "params",
    [{}, {"dtype": "float32"}, {"confidence": "calibration"}, {"aggregator": "mean", "backend": "numpy"},
     {"input_type": "scores"}],
)
def test_round_trip_predicts_bit_identically(tmp_path, data, params):
    model = CFEnsembleClassifier(**{**BASE, **params}).fit(data.P, data.labels)
    model.save(tmp_path / "m.npz")
    loaded = CFEnsembleClassifier.load(tmp_path / "m.npz")
    P_new = make_ensemble(n_classifiers=7, n_instances=60, random_state=9).P
    np.testing.assert_array_equal(loaded.predict_proba(P_new), model.predict_proba(P_new))
    np.testing.assert_array_equal(loaded.transform(P_new), model.transform(P_new))
    assert loaded.get_params() == model.get_params()
    assert list(loaded.history_) == list(model.history_)
    for key, values in model.history_.items():
        np.testing.assert_array_equal(np.asarray(loaded.history_[key]), np.asarray(values), err_msg=key)
    assert (loaded.n_iter_, loaded.converged_, loaded.intercept_) == (model.n_iter_, model.converged_, model.intercept_)
    print(loaded.diagnose())  # the collapse report needs the history only


def test_a_default_file_holds_nothing_of_the_size_of_the_fitted_instances(tmp_path):
    """The file of a fit on 4x the instances is as large: no member grows with n."""
    sizes = []
    for n in (200, 800):
        data = make_ensemble(n_classifiers=7, n_instances=n, random_state=4)
        CFEnsembleClassifier(**BASE).fit(data.P, data.labels).save(tmp_path / f"{n}.npz")
        assert all(n not in value.shape for value in _members(tmp_path / f"{n}.npz").values())
        sizes.append((tmp_path / f"{n}.npz").stat().st_size)
    assert abs(sizes[1] - sizes[0]) < 64  # the metadata's numbers may differ by a few characters


def test_a_model_without_training_factors_says_so(tmp_path, fitted):
    fitted.save(tmp_path / "m.npz")
    loaded = CFEnsembleClassifier.load(tmp_path / "m.npz")
    for name in ("instance_factors_", "transductive_proba_"):
        assert not hasattr(loaded, name)
        with pytest.raises(AttributeError, match=f"no {name}: .* saved without .*include_training_factors=True"):
            getattr(loaded, name)
    with pytest.raises(ValueError, match=r"include_training_factors=True: this model holds no \['instance_factors_'"):
        loaded.save(tmp_path / "again.npz", include_training_factors=True)
    with pytest.raises(AttributeError, match="has no attribute 'no_such_thing'"):
        loaded.no_such_thing


def test_training_factors_are_kept_on_request(tmp_path, fitted):
    fitted.save(tmp_path / "m.npz", include_training_factors=True)
    loaded = CFEnsembleClassifier.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.instance_factors_, fitted.instance_factors_)
    np.testing.assert_array_equal(loaded.transductive_proba_, fitted.transductive_proba_)
    loaded.save(tmp_path / "again.npz", include_training_factors=True)  # kept again by the loaded model
    np.testing.assert_array_equal(CFEnsembleClassifier.load(tmp_path / "again.npz").instance_factors_,
                                  fitted.instance_factors_)


def test_user_confidence_matrix_is_stored_as_an_array(tmp_path, data):
    C = np.random.default_rng(0).uniform(0.1, 1.0, data.P.shape)
    model = CFEnsembleClassifier(confidence=C, **BASE).fit(data.P, data.labels)
    model.save(tmp_path / "m.npz")
    metadata = json.loads(str(_members(tmp_path / "m.npz")[METADATA_KEY]))
    assert metadata["params"]["confidence"] == {"__array__": "param/confidence"}
    loaded = CFEnsembleClassifier.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.confidence, C)
    np.testing.assert_array_equal(loaded.predict_proba(data.P), model.predict_proba(data.P))


def test_vector_history_and_feature_names_round_trip(tmp_path, fitted):
    fitted.history_["coef"] = [np.arange(7.0) * k for k in range(fitted.n_iter_)]
    fitted.feature_names_in_ = np.array([f"m{u}" for u in range(7)], dtype=object)
    try:
        fitted.save(tmp_path / "m.npz")
        loaded = CFEnsembleClassifier.load(tmp_path / "m.npz")
    finally:
        del fitted.history_["coef"], fitted.feature_names_in_
    np.testing.assert_array_equal(np.array(loaded.history_["coef"]), np.arange(7.0) * np.arange(12)[:, None])
    assert loaded.feature_names_in_.dtype == object and list(loaded.feature_names_in_) == [f"m{u}" for u in range(7)]


def test_save_refuses_to_overwrite_and_unfitted(tmp_path, fitted):
    fitted.save(tmp_path / "m.npz")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        fitted.save(tmp_path / "m.npz")
    fitted.save(tmp_path / "m.npz", overwrite=True)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        CFEnsembleClassifier().save(tmp_path / "other.npz")


def _forge(path, change, checksum=True):
    """Rewrite the file with ``change`` applied, as a forger would: members list and checksum made to match."""
    members = _members(path)
    metadata = json.loads(str(members.pop(METADATA_KEY)))
    change(metadata, members)
    if checksum:
        metadata["members"] = sorted(members)
        metadata["checksum"] = content_digest(metadata, members)
    members[METADATA_KEY] = np.array(json.dumps(metadata))
    _rewrite(path, members)


def _add(metadata, members, name, value):
    """A fitted array the file did not hold."""
    metadata["arrays"].append(name)
    members[f"attr/{name}"] = value


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda md, mb: md.update(format_version=FORMAT_VERSION + 1), f"format version {FORMAT_VERSION + 1}"),
        (lambda md, mb: md.update(format="cfe_fast.checkpoint"), "not a cfe_fast.model file"),
        (lambda md, mb: md["params"].update(warp_drive="on"), r"parameter\(s\) \['warp_drive'\] unknown"),
        (lambda md, mb: mb.pop("attr/coef_"), "missing member 'attr/coef_'"),
        (lambda md, mb: mb.update({"attr/coef_": np.zeros(3)}), r"coef_ has shape \(3,\), expected \(7,\)"),
        (lambda md, mb: mb.update({"extra": np.zeros(1)}), r"unexpected member\(s\) \['extra'\]"),
        (lambda md, mb: md["attributes"].pop("latent_dim_"), "missing fitted attribute latent_dim_"),
        (lambda md, mb: mb.update({"attr/classes_": np.array([0.5j, 1j])}), "classes_ has dtype complex128"),
        (lambda md, mb: _add(md, mb, "feature_names_in_", np.arange(7)), "feature_names_in_ has dtype int64"),
        (lambda md, mb: _add(md, mb, "score_quantiles_", np.ones((1, 7))),
         r"score_quantiles_ has shape \(1, 7\), expected \(2, 7\)"),
        (lambda md, mb: _add(md, mb, "score_quantiles_", -np.eye(7)), "score_quantiles_ is not finite and non-decreasing"),
    ],
)
def test_forged_or_incompatible_files_are_refused(tmp_path, fitted, change, match):
    path = tmp_path / "m.npz"
    fitted.save(path)
    _forge(path, change)
    with pytest.raises(ModelFileError, match=match):
        CFEnsembleClassifier.load(path)


def test_pickled_member_is_refused_without_unpickling(tmp_path, fitted):
    path = tmp_path / "m.npz"
    fitted.save(path)
    members = _members(path)
    members["attr/coef_"] = np.array([{"payload": "code"}], dtype=object)
    buffer = io.BytesIO()
    np.savez(buffer, **members)  # allow_pickle defaults to True when saving
    path.write_bytes(buffer.getvalue())
    with pytest.raises(ModelFileError, match="pickled object array.*'attr/coef_'.*refused"):
        CFEnsembleClassifier.load(path)


def test_truncated_corrupt_and_foreign_files_are_refused(tmp_path, fitted):
    path = tmp_path / "m.npz"
    fitted.save(path)
    raw = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        CFEnsembleClassifier.load(tmp_path / "cut.npz")
    (tmp_path / "text.npz").write_text("not a model")
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        CFEnsembleClassifier.load(tmp_path / "text.npz")
    np.save(tmp_path / "array.npy", np.zeros(3))
    with pytest.raises(ModelFileError, match="single .npy array"):
        CFEnsembleClassifier.load(tmp_path / "array.npy")
    _rewrite(tmp_path / "plain.npz", {"a": np.zeros(2)})
    with pytest.raises(ModelFileError, match="no __metadata__"):
        CFEnsembleClassifier.load(tmp_path / "plain.npz")
    with pytest.raises(FileNotFoundError, match="no such file"):
        CFEnsembleClassifier.load(tmp_path / "missing.npz")
    with zipfile.ZipFile(path) as archive:  # a flipped byte inside a member fails the CRC check
        name = archive.namelist()[-1]
        offset = archive.getinfo(name).header_offset + 30 + len(name) + 20
    broken = bytearray(raw)
    broken[offset] ^= 0xFF
    (tmp_path / "flip.npz").write_bytes(bytes(broken))
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        CFEnsembleClassifier.load(tmp_path / "flip.npz")


def test_resume_from_checkpoint_is_bit_identical(tmp_path, data):
    full = CFEnsembleClassifier(**BASE).fit(data.P, data.labels)
    ckpt = tmp_path / "ckpt.npz"
    CFEnsembleClassifier(**{**BASE, "max_iter": 7}).fit(data.P, data.labels, checkpoint=ckpt, checkpoint_every=3)
    resumed = CFEnsembleClassifier(**BASE).fit(data.P, data.labels, resume_from=ckpt)  # continues after iteration 6
    np.testing.assert_array_equal(resumed.transductive_proba_, full.transductive_proba_)
    np.testing.assert_array_equal(resumed.classifier_factors_, full.classifier_factors_)
    np.testing.assert_array_equal(resumed.coef_, full.coef_)
    assert resumed.n_iter_ == full.n_iter_
    for key in ("loss", "reconstruction", "supervised", "aggregator_steps"):
        assert resumed.history_[key] == full.history_[key]


class _Killed(Exception):
    pass


@pytest.mark.parametrize(
    "params",
    [dict(trainer="exact"), dict(trainer="joint", joint_steps_per_iter=3),
     dict(aggregator_solver="adam", aggregator_steps=2)],
)
def test_interrupted_fit_of_every_trainer_resumes_bit_identically(tmp_path, data, params):
    """Trainer state beyond (X, Y, w, b) — Adam moments and step count — is checkpointed too."""
    model = CFEnsembleClassifier(**{**BASE, **params})
    full = clone(model).fit(data.P, data.labels)
    ckpt = tmp_path / "ckpt.npz"

    def kill_after_seven(iteration, history):
        if iteration == 7:
            raise _Killed

    with pytest.raises(_Killed):
        clone(model).fit(data.P, data.labels, checkpoint=ckpt, checkpoint_every=3, callback=kill_after_seven)
    resumed = clone(model).fit(data.P, data.labels, resume_from=ckpt)  # continues after iteration 6
    np.testing.assert_array_equal(resumed.transductive_proba_, full.transductive_proba_)
    np.testing.assert_array_equal(resumed.coef_, full.coef_)
    assert resumed.history_["loss"] == full.history_["loss"]


def test_resume_refuses_other_data_or_parameters(tmp_path, data):
    ckpt = tmp_path / "ckpt.npz"
    CFEnsembleClassifier(**{**BASE, "max_iter": 2}).fit(data.P, data.labels, checkpoint=ckpt)
    with pytest.raises(ModelFileError, match="other data"):
        CFEnsembleClassifier(**BASE).fit(data.P[::-1], data.labels, resume_from=ckpt)
    with pytest.raises(ModelFileError, match=r"other values of \['lam'\]"):
        CFEnsembleClassifier(**{**BASE, "lam": 0.5}).fit(data.P, data.labels, resume_from=ckpt)
    with pytest.raises(ModelFileError, match="not a cfe_fast.checkpoint file"):
        CFEnsembleClassifier(**BASE).fit(data.P, data.labels).save(tmp_path / "m.npz")
        CFEnsembleClassifier(**BASE).fit(data.P, data.labels, resume_from=tmp_path / "m.npz")
