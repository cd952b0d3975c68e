"""Bounds on what a user may ask for, in one place that imports nothing heavy (configuration
errors are answered without loading torch)."""

#: The largest latent set a sample index may name: the official sampling draws every row before
#: the one asked for, so an index costs its rows' time and memory (10⁶ × 512 float32: 2 GiB).
MAX_SAMPLES = 1_000_000
