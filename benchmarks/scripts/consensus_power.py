"""The classifiers' consensus weighting against their plain mean, on the real-data benchmark's pools.

For every task of benchmarks/quality, the PR-AUC over all instances of the weighted mean of the
classifiers' probabilities, each weighted by max(corr(its probabilities, the sum of the others'), 0)
to a power (:func:`cfe_fast.core.consensus.consensus_weights` with R itself as the reconstruction:
X = I, Y = R), minus that of their plain mean. No label is used. Writes
benchmarks/results/consensus_power_<machine>.md.

Usage: ``python benchmarks/scripts/consensus_power.py [--powers 1 2 4 8 16]``
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.quality import pools, tasks  # noqa: E402
from benchmarks.quality.run import git_commit, machine_kind  # noqa: E402
from cfe_fast._float64 import moments64  # noqa: E402
from cfe_fast.core.consensus import consensus_weights  # noqa: E402


def differences(powers):
    """{task: [PR-AUC of the weighting at each power minus that of the plain mean]}."""
    out = {}
    for name in tasks.task_names():
        pool = pools.load_or_build(tasks.load_task(name), "full", verbose=False)
        R, y = pool["P"].T, pool["y"]
        moments = moments64(R)
        plain = average_precision_score(y, R.mean(axis=0))
        out[name] = [average_precision_score(y, consensus_weights(np.eye(R.shape[0]), *moments, power=p) @ R) - plain
                     for p in powers]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--powers", nargs="+", type=float, default=[1, 2, 4, 8, 16])
    args = parser.parse_args(argv)
    table = differences(args.powers)
    kind, tag = machine_kind()
    header = "| task | " + " | ".join(f"power {p:g}" for p in args.powers) + " |"
    lines = [f"# The consensus weighting of the classifiers against their plain mean ({kind})", "",
             f"- Command: `python benchmarks/scripts/consensus_power.py --powers {' '.join(f'{p:g}' for p in args.powers)}`;"
             f" git commit {git_commit()}",
             "- PR-AUC over all instances of the consensus-weighted mean of the pool's out-of-fold probabilities "
             "minus that of their plain mean (no label used)", "", header,
             "|---|" + "---:|" * len(args.powers)]
    lines += [f"| {name} | " + " | ".join(f"{d:+.4f}" for d in row) + " |" for name, row in table.items()]
    columns = np.array(list(table.values()))
    lines += ["| **sum** | " + " | ".join(f"**{d:+.4f}**" for d in columns.sum(axis=0)) + " |",
              "| tasks better | " + " | ".join(f"{int(n)} of {len(table)}" for n in (columns > 0).sum(axis=0)) + " |",
              "| worst | " + " | ".join(f"{d:+.4f}" for d in columns.min(axis=0)) + " |"]
    path = ROOT / "benchmarks" / "results" / f"consensus_power_{tag}.md"
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
