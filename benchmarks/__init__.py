"""cfe_fast's benchmarks: the asv suite (suite/), standalone scripts (scripts/), the real-data
quality benchmark (quality/) and the committed results (results/); see README.md."""
