"""A procedural first-person 3-D world for training and testing world models (see simulator.py)."""

from .dataset import BRANCH_ACTIONS, branching, rollout
from .policies import ExplorePolicy, RandomPolicy, make_policy
from .simulator import FRAME_SIZE, Simulator

__all__ = ["BRANCH_ACTIONS", "ExplorePolicy", "FRAME_SIZE", "RandomPolicy", "Simulator", "branching", "make_policy", "rollout"]
