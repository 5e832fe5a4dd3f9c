"""Temporary: the estimator's parameter rules (replaced by the declared table)."""

import numpy as np

from ._validation import check_lam, check_positive_int
from .backends import BACKENDS, SOLVERS, TRAINERS
from .core.confidence import CONFIDENCE_STRATEGIES
from .core.losses import FOCAL_VARIANTS

AGGREGATORS = ("weighted", "mean")
AGGREGATOR_SOLVERS = ("newton", "gd", "adam")
LR_SCHEDULES = ("warmup_cosine", "constant")
DTYPES = {"float64": np.float64, "float32": np.float32}


def validate_params(params):
    p = params
    if p["backend"] not in BACKENDS:
        raise ValueError(f"unknown backend {p['backend']!r}; choose one of {BACKENDS}")
    if p["dtype"] not in DTYPES:
        raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {p['dtype']!r}")
    if p["aggregator"] not in AGGREGATORS:
        raise ValueError(f"aggregator must be one of {AGGREGATORS}, got {p['aggregator']!r}")
    if p["class_weight"] not in ("balanced", None):
        raise ValueError(f"class_weight must be 'balanced' or None, got {p['class_weight']!r}")
    for name, allowed in (("trainer", TRAINERS), ("aggregator_solver", AGGREGATOR_SOLVERS),
                          ("lr_schedule", LR_SCHEDULES)):
        if p[name] not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {p[name]!r}")
    if isinstance(p["confidence"], str) and p["confidence"] not in CONFIDENCE_STRATEGIES:
        raise ValueError(f"unknown confidence strategy {p['confidence']!r}; choose one of {CONFIDENCE_STRATEGIES}")
    if p["trainer"] != "als" and p["aggregator"] != "weighted":
        raise ValueError(f"trainer={p['trainer']!r} fits the weighted aggregator; use aggregator='weighted'")
    if p["trainer"] == "exact" and (p["rho"] <= 0 or p["focal_variant"] != "exact"):
        raise ValueError("trainer='exact' needs rho > 0 and focal_variant='exact' (the 'weighted_bce' variant has no loss)")
    check_positive_int(p["aggregator_steps"], "aggregator_steps")
    check_positive_int(p["joint_steps_per_iter"], "joint_steps_per_iter")
    if p["clip_norm"] is not None and not p["clip_norm"] > 0:
        raise ValueError(f"clip_norm must be None or > 0, got {p['clip_norm']!r}")
    if p["focal_variant"] not in FOCAL_VARIANTS:
        raise ValueError(f"focal_variant must be one of {FOCAL_VARIANTS}, got {p['focal_variant']!r}")
    if not 0 <= p["rho"] <= 1:
        raise ValueError(f"rho must be in [0, 1], got {p['rho']}")
    for name in ("focal_gamma", "aggregator_l2", "tol", "confidence_alpha", "aggregator_lr", "learning_rate"):
        value = p[name]
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    check_lam(p["lam"])
    check_positive_int(p["max_iter"], "max_iter")
    if p["freeze_aggregator_iters"] < 0:
        raise ValueError(f"freeze_aggregator_iters must be >= 0, got {p['freeze_aggregator_iters']}")
    if p["solver"] not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {p['solver']!r}")
    if p["solver"] != "auto" and p["trainer"] != "als":
        raise ValueError(f"solver={p['solver']!r} applies to trainer='als' only (the others solve exactly)")
    if p["latent_dim"] is not None:
        check_positive_int(p["latent_dim"], "latent_dim")
