"""Preference-optimization losses: Pairwise Cringe, Binary Cringe, DPO, IPO and SFT."""

from cringe_core.losses.base import LossInputs, LossOutput
from cringe_core.losses.registry import LOSSES, LossDefinition, get_loss

__all__ = ["LOSSES", "LossDefinition", "LossInputs", "LossOutput", "get_loss"]
