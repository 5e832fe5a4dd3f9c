"""Peak extra resident memory of ``predict_proba`` on new instances, over the bytes of the input.

Usage: python benchmarks/scripts/predict_memory.py [N_NEW M DTYPE INPUT [BLOCK_BYTES]]
(defaults: 1000000 50 float64 array: 1,000,000 new float64 rows of 50
classifiers for a float64 model; DTYPE is the model's dtype; INPUT "array"
or "frame", a pandas DataFrame over the rows as the command line's predict
passes them; BLOCK_BYTES sets ``cfe_fast.config.FLOAT64_BLOCK_BYTES``, e.g.
4611686018427387904 for one block). A fresh process fits a model (default
parameters, 20,000 rows) and compiles the kernels, creates the new rows,
resets the kernel's peak-RSS counter
(/proc/self/clear_refs), predicts and prints (peak RSS - RSS before) / bytes
of the input: every temporary and the (n, 2) result.
"""

import json
import subprocess
import sys

PROBE = """
import json, resource, sys
import numpy as np
from cfe_fast import CFEnsembleClassifier, config, make_ensemble

n, m, dtype, frame = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] == "frame"
if len(sys.argv) > 5:
    config.FLOAT64_BLOCK_BYTES = int(sys.argv[5])
train = make_ensemble(n_classifiers=m, n_instances=20_000, random_state=0)
model = CFEnsembleClassifier(max_iter=5, random_state=0, dtype=dtype).fit(train.P, train.labels)
model.predict_proba(train.P[:100])  # compiles the fold-in
P = np.random.default_rng(1).random((n, m))
X = P
if frame:
    import pandas as pd
    X = pd.DataFrame(P, columns=[f"m{j}" for j in range(m)], copy=False)

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()

def peak():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak resident set size starts again from the current one
before = rss()
proba = model.predict_proba(X)
print(json.dumps({"extra": (peak() - before) / P.nbytes, "input_mb": P.nbytes / 2**20, "d": model.latent_dim_}))
"""


def main(argv):
    out = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, check=True)
    print(json.loads(out.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    main(sys.argv[1:] or ["1000000", "50", "float64", "array"])
