"""Benchmarks: ``python -m benchmarks [--quick]`` prints one JSON object per line,
each figure paired with a baseline measured in the same run on the same machine
(these machines are noisy; ratios travel, seconds do not)."""
