"""Benchmarks and the GPU report; run as scripts (python benchmarks/bench.py ...). A regular
package, so that a `benchmarks` installed elsewhere cannot take the place of this one on import."""

import os

# The repository's root, where the scripts the benchmarks run (train.py, the tests) live.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
