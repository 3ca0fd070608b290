"""Training: suites → cells → one training run each (runner, train loop, data, models, torchrun support)."""
