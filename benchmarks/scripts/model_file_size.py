"""Bytes of a saved model, by default and with the training factors, for fits on n rows.

Usage: python benchmarks/scripts/model_file_size.py [M [N ...]]
(defaults: 10 classifiers, n = 40,000 and 400,000 rows of ``make_ensemble``,
default parameters, 50 iterations, seed 0). Prints one line per n: the size of
``save(path)`` and of ``save(path, include_training_factors=True)`` (what every
file held before the option existed).
"""

import sys
import tempfile
from pathlib import Path

from cfe_fast import CFEnsembleClassifier, make_ensemble


def sizes(m, n, folder):
    data = make_ensemble(n_classifiers=m, n_instances=n, random_state=0)
    model = CFEnsembleClassifier(random_state=0).fit(data.P, data.labels)
    slim, full = folder / f"slim{n}.npz", folder / f"full{n}.npz"
    model.save(slim)
    model.save(full, include_training_factors=True)
    return slim.stat().st_size, full.stat().st_size, model.latent_dim_


def main(argv):
    m = int(argv[0]) if argv else 10
    counts = [int(n) for n in argv[1:]] or [40_000, 400_000]
    with tempfile.TemporaryDirectory() as folder:
        for n in counts:
            slim, full, d = sizes(m, n, Path(folder))
            print(f"m={m} n={n} d={d}: default {slim / 1e6:.3f} MB, with training factors {full / 1e6:.3f} MB")


if __name__ == "__main__":
    main(sys.argv[1:])
