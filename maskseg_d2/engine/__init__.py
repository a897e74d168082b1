"""Training and evaluation entry points used by ``tools/``."""
from .train import train  # noqa: F401

__all__ = ["train"]
