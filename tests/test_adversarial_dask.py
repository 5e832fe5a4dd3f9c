"""Faults of a Dask fit: a worker process killed mid-fit, and saving a model fitted with a client."""

import os
import signal

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from cfe_fast import CFEnsembleClassifier, make_ensemble  # noqa: E402
from cfe_fast.backends.dask.data import from_npy  # noqa: E402

FIT = dict(backend="dask", latent_dim=3, max_iter=6, tol=0.0, random_state=0)


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  memory_limit="2GB") as cluster, distributed.Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def data():
    return make_ensemble(n_classifiers=6, n_instances=2000, random_state=0)


def kill_a_worker_after(client, iteration_to_kill):
    """A fit callback that SIGKILLs one worker process after ``iteration_to_kill`` (its nanny restarts it)."""
    killed = []

    def callback(iteration, history):
        if iteration == iteration_to_kill and not killed:
            address, pid = sorted(client.run(os.getpid).items())[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(address)

    return callback, killed


def check_survives_a_lost_worker(client, X, labels):
    undisturbed = CFEnsembleClassifier(client=client, **FIT).fit(X, labels)
    callback, killed = kill_a_worker_after(client, 3)
    disturbed = CFEnsembleClassifier(client=client, **FIT).fit(X, labels, callback=callback)
    assert killed
    np.testing.assert_array_equal(np.asarray(disturbed.transductive_proba_),
                                  np.asarray(undisturbed.transductive_proba_))
    np.testing.assert_array_equal(disturbed.coef_, undisturbed.coef_)
    assert disturbed.intercept_ == undisturbed.intercept_
    client.wait_for_workers(2, timeout=60)


def test_a_fit_on_numpy_data_survives_a_killed_worker_with_the_same_result(client, data):
    """NumPy input enters the cluster as tasks, not scattered data: what the worker held is recomputed."""
    check_survives_a_lost_worker(client, data.P, data.labels)


@pytest.mark.slow
def test_a_fit_on_a_lazy_npy_file_survives_a_killed_worker(client, data, tmp_path):
    np.save(tmp_path / "P.npy", data.P)
    check_survives_a_lost_worker(client, from_npy(tmp_path / "P.npy", 400), data.labels)


def test_a_model_fitted_with_a_client_can_be_saved_and_loaded(client, data, tmp_path):
    model = CFEnsembleClassifier(client=client, **FIT).fit(data.P, data.labels)
    model.save(tmp_path / "m.npz", include_training_factors=True)
    loaded = CFEnsembleClassifier.load(tmp_path / "m.npz")
    assert loaded.client is None and isinstance(loaded.instance_factors_, np.ndarray)
    np.testing.assert_array_equal(loaded.transductive_proba_, np.asarray(model.transductive_proba_))
    P_new = data.P[:50]
    np.testing.assert_array_equal(loaded.predict_proba(P_new), np.asarray(model.predict_proba(P_new)))
