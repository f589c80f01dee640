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
    chain_cycles : int
        Cycles of each layer's serial chain that no work hides: the gate fence's trip through
        the PEs, the cell unit's gate reads and arithmetic, and the sequencer's hand-offs up
        to the projection's first broadcast.
    column_lead : int
        Columns a PE's column stage may run ahead of its multiplier.
    burst_issue_cycles : int
        Cycles the weight streamer takes to issue one burst.
    """

    chain_cycles: int
    column_lead: int
    burst_issue_cycles: int
