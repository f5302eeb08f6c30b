"""Benchmarks of DiffuGTS-Deploy: speed and quality figures, and the paper-shaped tables."""
