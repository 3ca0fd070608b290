"""Training: suites → cells → one training run each (runner, train loop, data, models, torchrun support).

The modules are used directly (``qbench.run.runner``, ``qbench.run.train``, ...); the package itself exports nothing.
"""

__all__: list[str] = []
