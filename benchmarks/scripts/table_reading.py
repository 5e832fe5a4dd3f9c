"""Peak memory and time of reading a probability table with the command line's reader.

Usage: python benchmarks/scripts/table_reading.py TABLE [N_INSTANCES N_CLASSIFIERS]
writes TABLE (a CSV with an id and a label column, or .npz) of random
probabilities first if it does not exist, then reads it once in a fresh
process and prints the time and the peak resident memory above the start.
"""

import csv
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def write(path, n, m):
    rng = np.random.default_rng(0)
    P = rng.random((n, m))
    labels = np.where(rng.random(n) < 0.5, (rng.random(n) < 0.3).astype(float), np.nan)
    if path.suffix == ".npz":
        np.savez(path, P=P, label=labels, id=np.array([f"r{i}" for i in range(n)]))
        return
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["id"] + [f"m{j}" for j in range(m)] + ["label"])
        for i in range(n):
            label = "" if np.isnan(labels[i]) else int(labels[i])
            writer.writerow([f"r{i}"] + [repr(float(v)) for v in P[i]] + [label])


def measure(path):
    from cfe_fast.io.tables import read_table

    start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    table = read_table(path)
    seconds = time.perf_counter() - start
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start_rss) / 1024
    print(f"{path.name}: {path.stat().st_size / 2**20:.0f} MiB file, P {table.P.shape}, "
          f"{seconds:.2f} s, peak +{peak:.0f} MiB")


if __name__ == "__main__":
    target = Path(sys.argv[1])
    if len(sys.argv) > 2 and sys.argv[2] == "--measure":
        measure(target)
    else:
        if not target.exists():
            write(target, *(int(a) for a in sys.argv[2:4]) if len(sys.argv) > 3 else (250_000, 20))
        subprocess.run([sys.executable, __file__, str(target), "--measure"], check=True)
