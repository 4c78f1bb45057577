"""The scan's labelled test corpus (corpus, parts) and the side-by-side comparison with
datadiligence (compare): material for tests/test_scan.py and benchmarks/bench_scan.py, not part of
the installed package."""
