"""A procedural first-person 3-D world for training and testing world models (see simulator.py)."""

from .dataset import rollout
from .policies import ExplorePolicy, RandomPolicy, make_policy
from .simulator import FRAME_SIZE, Simulator

__all__ = ["ExplorePolicy", "FRAME_SIZE", "RandomPolicy", "Simulator", "make_policy", "rollout"]
