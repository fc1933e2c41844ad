"""Benchmarks of the hub (run each file as a script; shared helpers in :mod:`bench.harness`)."""
