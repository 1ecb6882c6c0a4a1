"""Benchmarks over real HTTP against `mraru serve`. The normal test run ignores this folder."""
