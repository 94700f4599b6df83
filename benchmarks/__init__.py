"""Benchmarks and the GPU report; run as scripts (python benchmarks/bench.py ...). A regular
package, so that a `benchmarks` installed elsewhere cannot take the place of this one on import."""
