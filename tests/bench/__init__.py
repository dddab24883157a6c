"""Benchmarks: printed figures, not pass/fail (`make bench`). No `test_` modules, so pytest skips them."""
