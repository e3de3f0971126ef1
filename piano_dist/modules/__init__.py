from .base import BaseModule

__all__ = ["BaseModule"]
