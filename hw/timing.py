"""The latencies of the hardware, collected from the modules that cause them.

Each is defined once, beside the logic it measures: the PE's stages in :mod:`.pe`, the
sequencer's view of a fence in :mod:`.accelerator`, the readers in :mod:`.broadcast`, the gate
reads in :mod:`.readout`, the cell arithmetic in :mod:`.cell`, the writeback's in
:mod:`.writeback`, the sequencer's hand-offs in :mod:`.sequencer`, the burst issue in
:mod:`.streamer`. The performance model receives them as a
:class:`~ese.sw.contract.timing.Timing`.
"""

from ..sw.contract.timing import Timing
from . import broadcast, pe, sequencer, writeback
from .accelerator import fence_trip_cycles
from .cell import latency as cell_latency
from .readout import cell_issue_gap
from .streamer import BURST_ISSUE_CYCLES

__all__ = ["hardware_timing"]


def hardware_timing(config):
    """The :class:`Timing` of the hardware for ``config``."""
    # The model takes a column in a PE's column stage a cycle after its broadcast, so its
    # multiplies start at the PE's issue latency from the activation queue's head; a fence's
    # trip is the rest of the way from the multiplies to the next unit's start.
    issue = pe.issue_latency(config) - pe.QUEUE_CYCLES
    trip = fence_trip_cycles(config)
    return Timing(
        column_lead=pe.COLUMN_QUEUE_DEPTH,
        burst_issue_cycles=BURST_ISSUE_CYCLES,
        read_cycles=broadcast.READ_CYCLES,
        job_cycles=broadcast.JOB_CYCLES,
        job_turn_cycles=broadcast.JOB_TURN_CYCLES,
        fence_cycles=broadcast.FENCE_CYCLES,
        fence_trip_cycles=trip,
        issue_cycles=issue,
        fence_drain_cycles=trip - issue,
        cell_issue_gap=cell_issue_gap(config),
        cell_latency=cell_latency(config),
        writeback_latency=writeback.latency(config),
        step_job_cycles=sequencer.STEP_JOB_CYCLES,
        layer_job_cycles=sequencer.LAYER_JOB_CYCLES)
