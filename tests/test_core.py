"""The shared math of cfe_fast.core against the reference: confidence strategies on blocks of
instances, class weights, and the loss terms (float64, to 1e-12 relative; the strategies exactly)."""

import numpy as np
import pytest

from cfe_fast import reference as ref
from cfe_fast.core import confidence as conf
from cfe_fast.core.losses import class_weights, sample_loss_terms, supervised_weights


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    R = rng.random((7, 90))
    R[rng.random(R.shape) < 0.1] = 1.0
    labels = np.where(rng.random(90) < 0.4, (rng.random(90) < 0.3).astype(float), np.nan)
    labels[:2] = [0.0, 1.0]
    return R, labels


@pytest.mark.parametrize("strategy", ["uniform", "certainty", "label_aware"])
@pytest.mark.parametrize("block", [90, 13, 1])
def test_element_wise_strategies_on_blocks_equal_the_reference(data, strategy, block):
    R, labels = data
    P = R.T.copy()
    blocks = [conf.confidence_chunk(P[s:s + block], labels[s:s + block], strategy, 0.7)
              for s in range(0, 90, block)]
    np.testing.assert_array_equal(np.concatenate(blocks), ref.confidence(R, labels, strategy, alpha=0.7).T)


def test_calibration_and_the_fit_confidence_equal_the_reference(data):
    R, labels = data
    quality = conf.classifier_quality(R, labels)
    np.testing.assert_allclose(quality, ref.confidence(R, labels, "calibration")[:, 0], rtol=1e-14)
    for strategy in conf.CONFIDENCE_STRATEGIES:
        C, fitted = conf.instance_major_confidence(R.T.copy(), labels, strategy, 0.7, np.float64)
        np.testing.assert_allclose(C, ref.confidence(R, labels, strategy, alpha=0.7).T, rtol=1e-14)
        assert (fitted is not None) == (strategy == "calibration")
    with pytest.raises(ValueError, match="needs labeled instances"):
        conf.classifier_quality(R, np.full(90, np.nan))
    with pytest.raises(ValueError, match="unknown confidence strategy 'psychic'"):
        conf.confidence_chunk(R.T, labels, "psychic")


def test_new_instances_fold_in_without_labels(data):
    R, _ = data
    np.testing.assert_array_equal(conf.confidence_chunk(R.T, None, "label_aware"), np.abs(R.T - 0.5))
    assert [conf.fold_in_strategy(s) for s in (None, *conf.CONFIDENCE_STRATEGIES)] == [
        "certainty", "uniform", "certainty", "certainty", "calibration"]


@pytest.mark.parametrize("balanced", [True, False])
def test_class_weights_equal_the_reference(balanced):
    y = np.array([0, 1, 1, 0, 0, 0, 1.0])
    np.testing.assert_array_equal(class_weights(y, balanced), ref.class_weights(y, balanced))
    np.testing.assert_array_equal(class_weights(np.zeros(4)), np.ones(4))  # a class absent: unit weights
    np.testing.assert_allclose(supervised_weights(class_weights(y), 0.25), ref.supervised_weights(class_weights(y), 0.25))


@pytest.mark.parametrize("gamma,variant", [(0.0, "exact"), (2.0, "exact"), (0.5, "exact"), (1.5, "weighted_bce")])
def test_loss_terms_equal_the_reference_across_the_logit_range(gamma, variant):
    z = np.concatenate([np.linspace(-40, 40, 161), [-700.0, 700.0, 0.0]])
    for label in (0.0, 1.0):
        y = np.full(z.size, label)
        for fast, slow in zip(sample_loss_terms(z, y, gamma, variant), ref.sample_loss_terms(z, y, gamma, variant)):
            np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-15)  # the reference's p - y cancels


@pytest.mark.parametrize("gamma, variant", [(0.0, "exact"), (2.0, "exact"), (2.0, "weighted_bce")])
def test_sample_gradient_is_the_gradient_of_the_sample_terms(gamma, variant):
    from cfe_fast.core.losses import sample_gradient, sample_loss_terms

    z = np.concatenate([np.linspace(-40, 40, 401), [0.0, -0.0, 1e-300]])
    for y in (np.zeros_like(z), np.ones_like(z)):
        np.testing.assert_array_equal(sample_gradient(z, y, gamma, variant), sample_loss_terms(z, y, gamma, variant)[1])
