"""Training: recipes and the resumable loop, checkpoints, the accuracy gate of the bundled recipes."""
