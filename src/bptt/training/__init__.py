"""Training: optimizers and clipping, learning-rate schedules, the truncated-BPTT loop, evaluation."""
