"""onionpost benchmarks: each result is a ratio against a peer measured in the same run."""
