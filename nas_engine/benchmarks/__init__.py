"""Benchmarks: score every architecture of a trained benchmark and correlate each metric
with its trained result (``python -m nas_engine.benchmark nbnlp|nbbert``)."""
