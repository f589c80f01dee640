"""Small building blocks for fixed-latency pipelines.

The cell unit and the projection writeback are pipelines without stalls: an item issued in
cycle t leaves ``latency`` cycles later, whether or not anyone is ready for it. They stay
correct under back-pressure by issuing only while the queue they feed has room for everything
already in flight (credit-based flow control), which :func:`credited_issue` builds.
"""

from dataclasses import dataclass

from amaranth.hdl import Cat, Mux, Signal, Value, signed
from amaranth.lib import data
from amaranth.lib.wiring import In, Out

__all__ = ["delay", "credited_issue", "CreditedIssue", "output_queue_members"]


def output_queue_members(config):
    """Ports of a unit that writes the output queue without a handshake, under credit: an
    entry holds up to ``cell_lanes`` words (one value per channel each), ``output_count`` of
    them in use."""
    word = data.ArrayLayout(signed(config.activation_bits), config.channels)
    return {
        "output_space": In(range(1 << 12)),     # free entries of the queue
        "output_valid": Out(1),
        "output_value": Out(data.ArrayLayout(word, config.cell_lanes)),
        "output_count": Out(range(1, config.cell_lanes + 1)),
        "output_last": Out(1),
    }


def delay(m, value, cycles, name):
    """``value`` delayed by ``cycles`` clock cycles through a chain of registers."""
    value = Value.cast(value)
    for stage in range(cycles):
        register = Signal(value.shape(), name=f"{name}_d{stage + 1}")
        m.d.sync += register.eq(value)
        value = register
    return value


@dataclass
class CreditedIssue:
    """Signals of an issue counter (see :func:`credited_issue`)."""

    index: Signal      # the first item offered this cycle
    issue: Value       # the items from ``index`` enter the pipeline this cycle
    finish: Value      # an issue's items leave the pipeline this cycle
    busy: Value        # items remain to issue, or some are in flight
    length: Signal     # registered item count
    emit: Signal       # registered: whether the items go to the output queue
    present: Value     # which of an issue's places hold an item (the last may hold fewer)
    count: Value       # how many items the issue holds
    final: Value       # the issue holds the last item


def credited_issue(m, *, start, length, emit, output_space, latency, name, allow=1,
                   per_issue=1):
    """Issue items 0, 1, ..., length-1, ``per_issue`` at a time (``index`` the first), one
    issue per cycle, into a pipeline of ``latency`` cycles.

    ``start`` (a strobe) samples ``length`` and ``emit``. While ``emit`` is set, an issue
    happens only if ``output_space`` (free entries of the output queue, one an issue) exceeds
    the issues in flight, so the queue can never overflow. Issues happen only while ``allow``
    is set. The items left to issue are counted down in a register, so which places of an
    issue hold an item, how many, and whether it is the last are comparisons of that
    register with constants.
    """
    registered_length = Signal.like(length, name=f"{name}_length")
    registered_emit = Signal(name=f"{name}_emit")
    index = Signal.like(length, name=f"{name}_index")
    remaining = Signal.like(length, name=f"{name}_remaining")
    in_flight = Signal(range(latency + 2), name=f"{name}_in_flight")
    issue = Signal(name=f"{name}_issue")
    with m.If(start):
        m.d.sync += [registered_length.eq(length), registered_emit.eq(emit), index.eq(0),
                     remaining.eq(length)]
    m.d.comb += issue.eq((remaining != 0) & allow
                         & (~registered_emit | (in_flight < output_space)))
    finish = delay(m, issue, latency, f"{name}_valid")
    final = remaining <= per_issue
    with m.If(issue):
        m.d.sync += [index.eq(index + per_issue),
                     remaining.eq(Mux(final, 0, remaining - per_issue))]
    m.d.sync += in_flight.eq(in_flight + issue - finish)
    busy = (remaining != 0) | (in_flight != 0)
    present = Cat(remaining > place for place in range(per_issue))
    count = Mux(final, remaining, per_issue)
    return CreditedIssue(index, issue, finish, busy, registered_length, registered_emit,
                         present, count, final)


def produced_words(m, *, start, finished, length, block_columns, name, count=1):
    """Words of a vector that a unit writing ``count`` columns of it per ``finished`` has
    written whole so far (restarting at ``start``): a word holds ``block_columns`` columns,
    and the last, partial word is whole once all ``length`` columns are written. A reader that
    follows the unit reads a word once it is whole; a register's output."""
    written = Signal.like(length, name=f"{name}_written")
    bits = (block_columns - 1).bit_length()
    if not bits:
        words = written
    else:
        words = Signal.like(length, name=f"{name}_words")
    with m.If(start):
        m.d.sync += written.eq(0)
        if bits:
            m.d.sync += words.eq(0)
    with m.Elif(finished):
        after = written + count
        m.d.sync += written.eq(after)
        if bits:
            m.d.sync += words.eq(Mux(after == length, (after + block_columns - 1) >> bits,
                                     after >> bits))
    return words
