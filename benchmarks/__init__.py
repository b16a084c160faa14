"""Benchmarks: ``python -m benchmarks.compare_selectors`` and ``python -m benchmarks.throughput``.

Both write JSON (with a ``meta`` block: hardware, library versions, configuration, date),
a PNG and a printed Markdown table; shared pieces live in `benchmarks/common.py`.
"""
