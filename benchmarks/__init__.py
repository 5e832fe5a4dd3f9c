"""asv benchmark suite of cfe_fast (see asv.conf.json); compare.py is a standalone script."""
