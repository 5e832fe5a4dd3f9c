"""Model files of more than two classes, and of two classes of any kind: round trips and forged files."""

import io
import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest

from cfe_fast import CFEnsembleClassifier, CollapseWarning, ModelFileError, QualityWarning
from cfe_fast.io.archive import METADATA_KEY, content_digest
from cfe_fast.io.model_file import MULTICLASS_SCHEMA, TRAINING_ATTRIBUTES

K, M, N = 3, 4, 150


def probabilities(codes, n_classes, rng):
    logits = rng.normal(size=(codes.size, M, n_classes)) + 2.0 * np.eye(n_classes)[codes][:, None, :]
    return np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)


@pytest.fixture(scope="module")
def data():
    """(P (n, m, K), codes, labeled mask)."""
    rng = np.random.default_rng(5)
    codes = rng.integers(0, K, N)
    return probabilities(codes, K, rng), codes, rng.random(N) < 0.6


def named(P):
    """P as a DataFrame of StackingClassifier's layout, columns named by classifier and class."""
    return pd.DataFrame(P.reshape(len(P), M * K), columns=[f"clf{j}_{k}" for j in range(M) for k in "abc"])


def labels_of(kinds, codes, labeled):
    y = np.asarray(kinds, dtype=object)[codes]
    y[~labeled] = None
    return y


def fit(X, y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (CollapseWarning, QualityWarning, UserWarning))
        return CFEnsembleClassifier(latent_dim=2, max_iter=8, random_state=0, **params).fit(X, y)


def round_trip(tmp_path, model, **options):
    path = tmp_path / "model.npz"
    model.save(path, overwrite=True, **options)
    return CFEnsembleClassifier.load(path)


@pytest.mark.parametrize("kinds", [["a", "b", "c"], [1, 2, 3], [-5, 0, 7]])
@pytest.mark.parametrize("params", [{}, {"input_type": "scores"}, {"dtype": "float32"}])
def test_a_multi_class_model_predicts_bit_identically_after_a_round_trip(tmp_path, data, kinds, params):
    P, codes, labeled = data
    model = fit(P, labels_of(kinds, codes, labeled), **params)
    loaded = round_trip(tmp_path, model)
    assert loaded.classes_.tolist() == model.classes_.tolist() == sorted(kinds)
    assert np.array_equal(loaded.predict_proba(P), model.predict_proba(P))
    assert np.array_equal(loaded.predict(P), model.predict(P)) and np.array_equal(loaded.transform(P), model.transform(P))
    assert (loaded.n_iter_, loaded.converged_, loaded.latent_dim_) == (model.n_iter_, model.converged_, model.latent_dim_)
    assert all(member.history_["loss"] == original.history_["loss"] for member, original in zip(loaded.estimators_, model.estimators_))
    assert str(loaded.diagnose()) == str(model.diagnose())


def test_column_names_round_trip_and_keep_matching_by_name(tmp_path, data):
    P, codes, labeled = data
    X = named(P)
    columns = list(X.columns)
    model = fit(X, labels_of(list("abc"), codes, labeled))
    loaded = round_trip(tmp_path, model)
    assert list(loaded.feature_names_in_) == columns
    shuffled = X[columns[::-1]]
    assert np.array_equal(loaded.predict_proba(shuffled), model.predict_proba(X))
    with pytest.raises(ValueError, match="clf0_a"):
        loaded.predict_proba(X.rename(columns={"clf0_a": "other"}))


def test_the_default_file_holds_nothing_of_the_size_of_the_fitted_instances(tmp_path, data):
    P, codes, labeled = data
    model = fit(P, labels_of(list("abc"), codes, labeled))
    model.save(tmp_path / "slim.npz")
    with np.load(tmp_path / "slim.npz", allow_pickle=False) as archive:
        assert not [name for name in archive.files if name.split("/")[-1] in TRAINING_ATTRIBUTES]
        assert all(N not in archive[name].shape for name in archive.files if name != METADATA_KEY)
    loaded = CFEnsembleClassifier.load(tmp_path / "slim.npz")
    with pytest.raises(AttributeError, match="include_training_factors=True"):
        loaded.transductive_proba_  # noqa: B018
    with pytest.raises(ValueError, match="include_training_factors=True: this model holds no"):
        loaded.save(tmp_path / "again.npz", include_training_factors=True)
    assert not (tmp_path / "again.npz").exists()


def test_training_factors_are_kept_on_request(tmp_path, data):
    P, codes, labeled = data
    model = fit(P, labels_of(list("abc"), codes, labeled))
    loaded = round_trip(tmp_path, model, include_training_factors=True)
    assert np.array_equal(loaded.transductive_proba_, model.transductive_proba_)
    for member, original in zip(loaded.estimators_, model.estimators_):
        assert np.array_equal(member.instance_factors_, original.instance_factors_)


@pytest.mark.parametrize("kinds", [["no", "yes"], [1, 2], [False, True], [-1, 1]])
def test_a_two_class_model_of_any_labels_round_trips(tmp_path, data, kinds):
    P, codes, labeled = data
    y = labels_of(kinds, codes % 2, labeled)
    model = fit(P[:, :, 0], y, unlabeled=None)
    loaded = round_trip(tmp_path, model)
    assert loaded.classes_.tolist() == model.classes_.tolist() == kinds
    assert np.array_equal(loaded.predict_proba(P[:, :, 0]), model.predict_proba(P[:, :, 0]))
    assert loaded.predict(P[:, :, 0]).tolist() == model.predict(P[:, :, 0]).tolist()


# ------------------------------------------------------------------ forged files
@pytest.fixture(scope="module")
def saved(tmp_path_factory, data):
    P, codes, labeled = data
    X = named(P)
    path = tmp_path_factory.mktemp("model") / "model.npz"
    fit(X, labels_of(list("abc"), codes, labeled)).save(path, include_training_factors=True)
    return path.read_bytes()


def forged(raw, change):
    """The file with ``change(metadata, members)`` applied, its member list and checksum made to match."""
    with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
        members = {key: archive[key] for key in archive.files}
    metadata = json.loads(str(members.pop(METADATA_KEY)))
    change(metadata, members)
    metadata["members"] = sorted(members)
    metadata["checksum"] = content_digest(metadata, members)
    buffer = io.BytesIO()
    np.savez(buffer, **{METADATA_KEY: np.array(json.dumps(metadata))}, **members)
    return buffer.getvalue()


def load(tmp_path, raw):
    path = tmp_path / "model.npz"
    path.write_bytes(raw)
    return CFEnsembleClassifier.load(path)


def set_member(name, value):
    return lambda metadata, members: members.__setitem__(name, value)


def drop_class(k):
    def change(metadata, members):
        metadata["per_class"].pop(k)
        for name in [name for name in members if name.startswith(f"class/{k}/")]:
            members.pop(name)
    return change


def drop_training_values(k):
    def change(metadata, members):
        for name in TRAINING_ATTRIBUTES:
            metadata["per_class"][k]["arrays"].remove(name)
            members.pop(f"class/{k}/attr/{name}")
    return change


def test_the_untouched_file_loads(tmp_path, saved, data):
    assert load(tmp_path, saved).predict_proba(named(data[0])).shape == (N, K)


def test_what_a_multi_class_file_holds_besides_its_per_class_models_has_a_rule():
    assert set(MULTICLASS_SCHEMA) == {"classes_", "n_features_in_", "feature_names_in_"}


@pytest.mark.parametrize("change, match", [
    (drop_class(2), r"holds 2 per-class models for the 3 fitted classes_ \['a', 'b', 'c'\]"),
    (set_member("attr/classes_", np.array(["a", "b", "c", "d"])), r"holds 3 per-class models for the 4 fitted"),
    (set_member("attr/classes_", np.array(["a", "b"])), r"fitted classes_ \['a', 'b'\] are 2: .* at least three"),
    (set_member("attr/classes_", np.array(["a", "a", "c"])), r"classes_ \['a', 'a', 'c'\] are not distinct"),
    (set_member("attr/classes_", np.array(["c", "b", "a"])), r"classes_ \['c', 'b', 'a'\] are not distinct .* sorted"),
    (set_member("attr/classes_", np.array([0.0, np.nan, 2.0])), "fitted classes_ holds NaN"),
    (set_member("attr/classes_", np.array([[0, 1, 2]])), r"classes_ has shape \(1, 3\), expected \(1,\)"),
    (set_member("attr/classes_", np.array([0j, 1j, 2j])), "classes_ has dtype complex128"),
    (lambda md, mb: (md["attributes"].update(n_features_in_=13), md["arrays"].remove("feature_names_in_"),
                     mb.pop("attr/feature_names_in_")),
     r"the model of class 'a': fitted n_features_in_ is 4, expected 13 / 3"),
    (lambda md, mb: md["attributes"].update(intercept_=0.0), r"unknown fitted attribute\(s\) \['intercept_'\]"),
    (set_member("class/1/attr/coef_", np.zeros(5)), r"the model of class 'b': fitted array coef_ has shape \(5,\)"),
    (set_member("class/2/attr/classes_", np.array([1.0, 2.0])),
     r"the model of class 'c': fitted classes_ \[1.0, 2.0\] are not \[0, 1\]"),
    (set_member("class/0/attr/classifier_factors_", np.zeros((3, 4))),
     r"the model of class 'a': fitted array classifier_factors_ has shape \(3, 4\), expected \(2, 4\)"),
    (set_member("class/1/attr/transductive_proba_", np.full(N - 1, 0.5)),
     r"the model of class 'b': fitted array transductive_proba_ has shape"),
    (drop_training_values(2), r"the model of class 'c': it holds the values of None fitted instances"),
    (set_member("class/1/attr/feature_names_in_", np.array(["x0", "x1", "x2", "x3"])),
     r"the model of class 'b': fitted feature_names_in_ \['x0', .*\] are not the model's columns"),
    (set_member("attr/feature_names_in_", np.array(["x"] * 11)), r"feature_names_in_ has shape \(11,\), expected"),
    (lambda md, mb: md.update(per_class={}), "its per_class metadata is not a list"),
    (lambda md, mb: md["per_class"].__setitem__(0, []), "the fitted values"),
    (lambda md, mb: md["per_class"][1]["history"]["keys"].remove("loss"), r"history lacks the entries \['loss'\]"),
    (lambda md, mb: mb.pop("class/2/attr/coef_"), r"missing member 'class/2/attr/coef_'"),
    (lambda md, mb: md["per_class"][0]["attributes"].update(n_iter_=99), r"history has \[\d+\] entries for n_iter_=99"),
    (lambda md, mb: md["per_class"][0]["attributes"].update(aggregator_="bogus"),
     r"the model of class 'a': fitted attribute aggregator_ is 'bogus'"),
    (lambda md, mb: md["params"].update(dtype="float32"),
     r"the model of class 'a': classifier_factors_ has dtype float64 but dtype='float32'"),
])
def test_forged_multi_class_content_is_refused_naming_the_field(tmp_path, saved, change, match):
    with pytest.raises(ModelFileError, match=match):
        load(tmp_path, forged(saved, change))


def test_a_truncated_multi_class_file_is_refused(tmp_path, saved):
    for size in (0, 100, len(saved) // 2, len(saved) - 10):
        with pytest.raises(ModelFileError):
            load(tmp_path, saved[:size])


# ------------------------------------------------------------------ the command line
CLASSES = ["cat", "dog", "emu"]
FAST = ["--latent-dim", "2", "--max-iter", "8", "--quiet"]


def write_table(path, columns):
    pd.DataFrame(columns).to_csv(path, index=False)


def class_major(P, names):
    """Columns m<j>_<class> in class-major order (not StackingClassifier's): the command line regroups them."""
    return {f"m{j}_{name}": P[:, j, k] for k, name in enumerate(names) for j in range(M)}


@pytest.fixture(scope="module")
def cli_fit(tmp_path_factory, data):
    """(folder, the training table's labels, the API fit on StackingClassifier's layout) of a CLI fit on CSV."""
    from cfe_fast.cli import main

    P, codes, labeled = data
    folder = tmp_path_factory.mktemp("cli")
    labels = np.where(labeled, np.asarray(CLASSES, dtype=object)[codes], "")
    write_table(folder / "train.csv", {"id": [f"r{i}" for i in range(N)], **class_major(P, CLASSES), "label": labels})
    assert main(["fit", str(folder / "train.csv"), "-o", str(folder / "out"), *FAST]) == 0
    layout = pd.DataFrame({f"m{j}_{name}": P[:, j, k] for j in range(M) for k, name in enumerate(CLASSES)})
    api = fit(layout, np.where(labeled, np.asarray(CLASSES, dtype=object)[codes], None))
    return folder, api


def test_the_cli_fits_more_than_two_classes_as_the_api_does(cli_fit, data):
    folder, api = cli_fit
    written = pd.read_csv(folder / "out" / "predictions.csv", dtype={"id": str})
    assert list(written.columns) == ["id", "probability_cat", "probability_dog", "probability_emu", "prediction"]
    assert np.array_equal(written[["probability_cat", "probability_dog", "probability_emu"]].to_numpy(),
                          api.transductive_proba_)
    assert written["prediction"].tolist() == api.classes_[np.argmax(api.transductive_proba_, axis=1)].tolist()
    model = CFEnsembleClassifier.load(folder / "out" / "model.npz")
    assert model.classes_.tolist() == CLASSES and list(model.feature_names_in_) == list(api.feature_names_in_)
    assert sorted(path.name for path in (folder / "out").iterdir()) == ["model.npz", "predictions.csv", "report.md"]
    report = (folder / "out" / "report.md").read_text()
    assert "3 classes, one two-class model per class" in report and "| classifier | cat | dog | emu |" in report
    assert all(f"class '{name}': " in report for name in CLASSES)


def test_cli_predict_prints_the_multi_class_scores(cli_fit, data, capsys):
    from sklearn.metrics import accuracy_score, average_precision_score, log_loss

    from cfe_fast.cli import main

    folder, api = cli_fit
    P, codes, _ = data
    new = np.asarray(CLASSES, dtype=object)[codes[:60]]
    new[::4] = ""
    columns = class_major(P[:60], CLASSES)
    write_table(folder / "new.csv", {**dict(reversed(list(columns.items()))), "label": new})  # any column order
    capsys.readouterr()
    assert main(["predict", str(folder / "out" / "model.npz"), str(folder / "new.csv"), "-o",
                 str(folder / "p.csv"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    layout = pd.DataFrame({f"m{j}_{name}": P[:60, j, k] for j in range(M) for k, name in enumerate(CLASSES)})
    proba = api.predict_proba(layout)
    written = pd.read_csv(folder / "p.csv")
    assert np.array_equal(written.iloc[:, :3].to_numpy(), proba)
    scored = new != ""
    y = codes[:60][scored]
    pr_auc = np.mean([average_precision_score(y == k, proba[scored, k]) for k in range(K)])
    assert (f"on the {scored.sum()} labeled instances: log-loss {log_loss(y, proba[scored]):.4f}, "
            f"accuracy {accuracy_score(y, proba[scored].argmax(axis=1)):.4f}, macro PR-AUC {pr_auc:.4f}") in printed


@pytest.mark.parametrize("rename, match", [
    ({"m1_dog": "m1_wolf"}, r"column 'm1_wolf' does not end with one of the 3 classes \['cat', 'dog', 'emu'\]"),
    ({"m2_emu": "m5_emu"}, r"classifier 'm2_' has no column of class\(es\) \['emu'\]"),
])
def test_cli_columns_not_named_by_classifier_and_class_are_refused(tmp_path, data, capsys, rename, match):
    from cfe_fast.cli import main

    P, codes, _ = data
    columns = {rename.get(name, name): values for name, values in class_major(P, CLASSES).items()}
    write_table(tmp_path / "t.csv", {**columns, "label": np.asarray(CLASSES, dtype=object)[codes]})
    assert main(["fit", str(tmp_path / "t.csv"), "-o", str(tmp_path / "out"), *FAST]) == 2
    assert re.search(match, capsys.readouterr().err) and not (tmp_path / "out").exists()


@pytest.mark.parametrize("kinds, unlabeled, options", [
    (["no", "yes"], "", []),
    ([1, 2], "", []),
    ([False, True], "", []),
    ([-1, 1], "?", ["--unlabeled", "?"]),
])
def test_cli_fits_two_classes_of_any_kind(tmp_path, data, kinds, unlabeled, options):
    from cfe_fast.cli import main

    P, codes, labeled = data
    y = np.asarray(kinds, dtype=object)[(codes == 0).astype(int)]  # column 0: the probability of kinds[1]
    write_table(tmp_path / "t.csv", {**{f"m{j}": P[:, j, 0] for j in range(M)},
                                     "label": np.where(labeled, y, unlabeled)})
    assert main(["fit", str(tmp_path / "t.csv"), "-o", str(tmp_path / "out"), "--no-report", *FAST, *options]) == 0
    api = fit(pd.DataFrame({f"m{j}": P[:, j, 0] for j in range(M)}), np.where(labeled, y, None), unlabeled=None)
    written = pd.read_csv(tmp_path / "out" / "predictions.csv", dtype={"prediction": str})
    assert np.array_equal(written["probability"].to_numpy(), api.transductive_proba_)
    expected = np.where(api.transductive_proba_ >= 0.5, api.classes_[1], api.classes_[0])
    assert written["prediction"].tolist() == [str(value) for value in expected]
    assert CFEnsembleClassifier.load(tmp_path / "out" / "model.npz").classes_.tolist() == kinds


def test_cli_reads_integer_classes_of_an_npz_in_stacking_layout(tmp_path, data, capsys):
    from cfe_fast.cli import main

    P, codes, labeled = data
    y = np.where(labeled, codes + 1.0, np.nan)  # classes 1, 2, 3
    np.savez(tmp_path / "t.npz", P=P.reshape(N, M * K), label=y)
    assert main(["fit", str(tmp_path / "t.npz"), "-o", str(tmp_path / "out"), *FAST]) == 0
    assert pd.read_csv(tmp_path / "out" / "predictions.csv").columns.tolist()[:3] == \
        ["probability_1", "probability_2", "probability_3"]
    assert main(["fit", str(tmp_path / "t.npz"), "-o", str(tmp_path / "again"), "--checkpoint-every", "2",
                 *FAST]) == 2
    assert "checkpoints are not supported with more than two classes" in capsys.readouterr().err


def test_the_report_of_more_than_two_classes_is_a_summary_per_class(tmp_path, data):
    from cfe_fast.report import markdown_report, report_figure, write_report

    P, codes, labeled = data
    model = fit(P, labels_of(list("abc"), codes, labeled))
    png, md = write_report(model, tmp_path, picture=True)
    assert png is None and not (tmp_path / "report.png").exists()
    text = md.read_text()
    for name, member in zip("abc", model.estimators_):
        assert f"| {name} | {member.n_iter_} (" in text and f"{member.intercept_:.4g}" in text
    for refused in (report_figure, markdown_report):
        with pytest.raises(ValueError, match="drawn for two classes only .* has 3"):
            refused(model)


def test_the_longest_class_at_the_end_of_a_name_is_its_class():
    from cfe_fast.io.tables import Table, stacking_columns

    names = ["a11", "a1", "a2", "b2", "b11", "b1"]
    P = np.arange(6.0)[None, :] / 10
    table = Table(P, names, None, None, None, np.array([1, 2, 11]), None)
    grouped = stacking_columns(table, "t.csv")
    assert grouped.columns == ["a1", "a2", "a11", "b1", "b2", "b11"]
    assert grouped.P.tolist() == [[0.1, 0.2, 0.0, 0.5, 0.3, 0.4]]


def test_cli_predict_does_not_score_labels_that_are_not_classes_of_the_model(cli_fit, data, capsys):
    from cfe_fast.cli import main

    folder, _ = cli_fit
    P, codes, _ = data
    new = np.asarray(CLASSES, dtype=object)[codes[:30]]
    new[0] = "wolf"
    write_table(folder / "odd.csv", {**class_major(P[:30], CLASSES), "label": new})
    capsys.readouterr()
    assert main(["predict", str(folder / "out" / "model.npz"), str(folder / "odd.csv"), "-o",
                 str(folder / "odd_p.csv"), "--quiet"]) == 0
    assert "the label column holds ['wolf'], which are not classes of the model ['cat', 'dog', 'emu']: it is " \
           "not scored" in capsys.readouterr().out
    assert len(pd.read_csv(folder / "odd_p.csv")) == 30


def test_the_progress_bar_counts_the_iterations_of_every_class_fit():
    from cfe_fast.cli import _Progress

    progress = _Progress(3 * 4, quiet=False)
    try:
        for iterations in (4, 2, 3):  # the second class's fit converged after 2 iterations
            for iteration in range(1, iterations + 1):
                progress(iteration, {"loss": [1.0]})
        assert progress.bar.n == 9
    finally:
        progress.close()
