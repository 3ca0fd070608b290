"""The theory suite: the STE paper's two-linear-layer Gaussian model and the recurrence toy."""
