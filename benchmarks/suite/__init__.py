"""The asv benchmark suite of cfe_fast (benchmarks/asv.conf.json): the bench_*.py modules here."""
