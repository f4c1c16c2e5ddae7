"""Datasets: synthetic generators, file loaders, splitting and batching."""
