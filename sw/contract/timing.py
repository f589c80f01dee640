"""The hardware's latencies that the performance model needs, as plain numbers.

The hardware modules that cause each latency define it (:func:`ese.hw.timing.hardware_timing`
collects them for a configuration); the performance model
(:mod:`ese.sw.compiler.performance`) takes a :class:`Timing` and copies none of them.
"""

from dataclasses import dataclass

__all__ = ["Timing"]


@dataclass(frozen=True)
class Timing:
    """Latencies of one hardware configuration, in clock cycles.

    Attributes
    ----------
    column_lead : int
        Columns a PE's column stage may run ahead of its multiplier.
    burst_issue_cycles : int
        Cycles the weight streamer takes to issue one burst.

    The model follows each hand-off of a frame step's serial chain (the readers, fences, cell
    unit and writeback), with the PEs' work inside it:

    read_cycles : int
        From a broadcast reader's read of a word to the column's broadcast.
    job_cycles : int
        From a read job's offer to its first read.
    job_turn_cycles : int
        From a job's last read to the next queued job's first read.
    fence_cycles : int
        From the last broadcast of a job to the fence's broadcast behind it.
    fence_trip_cycles : int
        From a fence's broadcast to the sequencer's start of the next unit (cell unit or
        writeback), through PEs with nothing else to do.
    issue_cycles : int
        From a column's broadcast to the start of its multiplies, in a PE with nothing else
        to do.
    fence_drain_cycles : int
        From the cycle after a PE's last multiply to the same start: ``fence_trip_cycles -
        issue_cycles``, since a fence right behind a column leaves as the column does.
    cell_issue_gap, cell_latency : int
        Cycles between two cells' issues; from a cell's issue to its output written.
    writeback_latency : int
        From a projection row's issue to its value written.
    step_job_cycles, layer_job_cycles : int
        From a layer's last unit's start to the next step's first job (after the last layer)
        or to the next layer's.
    """

    column_lead: int
    burst_issue_cycles: int
    read_cycles: int
    job_cycles: int
    job_turn_cycles: int
    fence_cycles: int
    fence_trip_cycles: int
    issue_cycles: int
    fence_drain_cycles: int
    cell_issue_gap: int
    cell_latency: int
    writeback_latency: int
    step_job_cycles: int
    layer_job_cycles: int
