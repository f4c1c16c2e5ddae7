"""Training runs: the loop (trainer), run directories and checkpoints, inference on a trained run."""
