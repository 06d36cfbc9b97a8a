"""Benchmarks: side-by-side ratios measured in one run (``make bench`` / ``python -m bench.run``).

Not timed tests: nothing here asserts a duration. Each benchmark measures the thing and its
baseline in the same run, interleaved, and reports the ratio (results: docs/performance.md).
"""
