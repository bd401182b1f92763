"""Hard-negative mining (``embtune mine`` and ``negatives: {mine: ...}`` in recipes)."""

from .mine import MineResult, mine_hard_negatives
from .options import MineOptions

__all__ = ["MineOptions", "MineResult", "mine_hard_negatives"]
