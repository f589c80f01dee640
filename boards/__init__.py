"""The cards the accelerator runs on: their descriptions (:data:`BOARDS`), the Vivado build
flow and the resource estimate."""

from .adm_pcie_ku3 import ADM_PCIE_KU3
from .board import BOARDS, Board, board

__all__ = ["BOARDS", "Board", "board", "DEFAULT_BOARD", "ADM_PCIE_KU3"]

#: The card the command line builds and estimates for unless told otherwise.
DEFAULT_BOARD = ADM_PCIE_KU3.name
