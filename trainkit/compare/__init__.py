"""compare-optimizers (runner) and the 2-D optimizer playground."""
