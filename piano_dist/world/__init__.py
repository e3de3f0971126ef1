"""Worlds agents live in: the Environment interface and GridWorld, a tile world in Redis."""
from .environment import Environment, Position, distance
from .grid import OBJECT_CATALOGUE, RESOURCE_ID, GridWorld

__all__ = ["Environment", "GridWorld", "OBJECT_CATALOGUE", "Position", "RESOURCE_ID", "distance"]
