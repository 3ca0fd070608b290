"""``python -m qbench`` (used by ``torchrun -m qbench run ...``)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
