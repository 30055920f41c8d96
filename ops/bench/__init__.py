"""`make bench`: supplybus's own benchmarks, each next to a baseline measured in the same run.

Figures vary 10-25 % between runs on a shared 2-core machine: compare ratios, not absolutes.
"""
