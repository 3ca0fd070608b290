"""Quantizers (pure tensor functions and autograd estimators) and model surgery."""

__all__ = ["weight", "activation", "apply"]
