"""Hyperparameter sweeps: the spec (a `sweep:` block), search methods, executors."""
