"""Layers (forward and backward side by side), networks over a flat parameter buffer, models."""
