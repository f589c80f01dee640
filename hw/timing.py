"""The latencies of the hardware, collected from the modules that cause them.

Each is defined once, beside the logic it measures: the sequencer's hand-offs and the fence's
trip in :mod:`.accelerator`, the gate reads in :mod:`.readout`, the cell arithmetic in
:mod:`.cell`, the column queue in :mod:`.pe`, the burst issue in :mod:`.streamer`. The
performance model receives them as a :class:`~ese.sw.contract.timing.Timing`.
"""

from ..sw.contract.timing import Timing
from .accelerator import CHAIN_HANDOFF_CYCLES
from .cell import latency as cell_latency
from .pe import COLUMN_QUEUE_DEPTH
from .streamer import BURST_ISSUE_CYCLES

__all__ = ["hardware_timing"]


def hardware_timing(config):
    """The :class:`Timing` of the hardware for ``config``."""
    return Timing(
        chain_cycles=CHAIN_HANDOFF_CYCLES + cell_latency(config),
        column_lead=COLUMN_QUEUE_DEPTH,
        burst_issue_cycles=BURST_ISSUE_CYCLES)
