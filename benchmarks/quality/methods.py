"""Methods addressed by spec strings, so ablations need no code.

A spec is ``name`` or ``name:key=value,key=value``; values are parsed as int,
float, None, True/False, or else kept as strings. Examples::

    mean
    greedy:rounds=50
    cfe
    cfe:latent_dim=5,rho=0.5,trainer=exact

``cfe`` fits ``CFEnsembleClassifier(random_state=seed, **params)``
transductively on all rows (labels NaN on the unlabeled rows) and reads the
unlabeled rows' scores from ``transductive_proba_``. The other names are the
baselines of :mod:`.baselines`.
"""

from __future__ import annotations

import inspect
import time
import warnings
from dataclasses import dataclass

import numpy as np

from .baselines import BASELINES, Prediction


def parse_value(text):
    """Parse one spec value: int, float, None, bool, or the string itself."""
    low = text.strip().lower()
    if low == "none":
        return None
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip()


def parse_spec(spec):
    """Split a spec string into its name and keyword parameters.

    Parameters
    ----------
    spec : str
        ``name`` or ``name:key=value,...``.

    Returns
    -------
    name : str
    params : dict
    """
    name, _, rest = spec.partition(":")
    params = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"bad parameter {item!r} in method spec {spec!r} (want key=value)")
        params[key.strip()] = parse_value(value)
    return name.strip(), params


@dataclass
class Method:
    """A method ready to run on one labeled/unlabeled split.

    Attributes
    ----------
    spec : str
        The spec string it was made from (used as its name in reports).
    name : str
        The base name (``cfe``, ``mean``, ...).
    params : dict
        Keyword parameters from the spec.
    """

    spec: str
    name: str
    params: dict

    @property
    def is_cfe(self):
        """Whether this is a CFEnsembleClassifier method."""
        return self.name == "cfe"

    def run(self, P, y, labeled, names=None, seed=0):
        """Fit on one split and predict the unlabeled rows.

        Parameters
        ----------
        P : ndarray of shape (n, m)
            Probabilities of all rows.
        y : ndarray of shape (n,)
            True labels of all rows (only the labeled ones are shown to the
            method).
        labeled : ndarray of bool, shape (n,)
            Which rows are labeled.
        names : list of str, optional
            Classifier names.
        seed : int
            Seed of randomised methods.

        Returns
        -------
        prediction : Prediction
            Scores for the rows where ``labeled`` is False, in row order.
        seconds : float
            Wall time of the fit and prediction.
        """
        t0 = time.perf_counter()
        if self.is_cfe:
            pred = _run_cfe(P, y, labeled, seed, self.params)
        else:
            fn = BASELINES[self.name]
            kw = dict(self.params)
            if "names" in inspect.signature(fn).parameters:
                kw["names"] = names
            pred = fn(P[labeled], y[labeled], P[~labeled], **kw)
        return pred, time.perf_counter() - t0


def _run_cfe(P, y, labeled, seed, params):
    from cfe_fast import CFEnsembleClassifier

    y_masked = np.where(labeled, y.astype(float), np.nan)
    model = CFEnsembleClassifier(random_state=seed, **params)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(P, y_masked)
    score = np.asarray(model.transductive_proba_, dtype=float)[~labeled]
    info = {}
    kinds = sorted({type(w.message).__name__ for w in caught})
    if kinds:
        info["warnings"] = kinds
    for attr in ("n_iter_",):
        if hasattr(model, attr):
            info[attr] = int(getattr(model, attr))
    return Prediction(score, info)


def resolve(spec):
    """Turn a spec string into a :class:`Method`.

    Parameters
    ----------
    spec : str

    Returns
    -------
    Method

    Raises
    ------
    ValueError
        For an unknown method name.
    """
    name, params = parse_spec(spec)
    if name != "cfe" and name not in BASELINES:
        raise ValueError(f"unknown method {name!r} in spec {spec!r}; known: "
                         f"{', '.join([*BASELINES, 'cfe'])}")
    return Method(spec, name, params)
