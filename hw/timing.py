"""The latencies of the hardware, collected from the modules that cause them.

Each is defined once, beside the logic it measures: the sequencer's hand-offs and the fence's
trip in :mod:`.accelerator`, the gate reads in :mod:`.readout`, the cell arithmetic in
:mod:`.cell`, the column queue in :mod:`.pe`, the burst issue in :mod:`.streamer`. The
performance model receives them as a :class:`~ese.sw.contract.timing.Timing`.
"""

from ..sw.contract.timing import Timing
from . import broadcast, sequencer, writeback
from .accelerator import CHAIN_HANDOFF_CYCLES, FENCE_DRAIN_CYCLES, FENCE_TRIP_CYCLES, ISSUE_CYCLES
from .cell import latency as cell_latency
from .pe import COLUMN_QUEUE_DEPTH
from .readout import cell_issue_gap
from .streamer import BURST_ISSUE_CYCLES

__all__ = ["hardware_timing"]


def hardware_timing(config):
    """The :class:`Timing` of the hardware for ``config``."""
    return Timing(
        chain_cycles=CHAIN_HANDOFF_CYCLES + cell_latency(config),
        column_lead=COLUMN_QUEUE_DEPTH,
        burst_issue_cycles=BURST_ISSUE_CYCLES,
        read_cycles=broadcast.READ_CYCLES,
        job_cycles=broadcast.JOB_CYCLES,
        job_turn_cycles=broadcast.JOB_TURN_CYCLES,
        fence_cycles=broadcast.FENCE_CYCLES,
        fence_trip_cycles=FENCE_TRIP_CYCLES,
        issue_cycles=ISSUE_CYCLES,
        fence_drain_cycles=FENCE_DRAIN_CYCLES,
        cell_issue_gap=cell_issue_gap(config),
        cell_latency=cell_latency(config),
        writeback_latency=writeback.latency(config),
        step_job_cycles=sequencer.STEP_JOB_CYCLES,
        layer_job_cycles=sequencer.LAYER_JOB_CYCLES)
