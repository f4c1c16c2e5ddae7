"""Optimizers (one update rule each) and learning-rate schedules."""
