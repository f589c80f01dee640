"""Frame steps for lock-step channels: which frame of which sequence each channel runs when.

The hardware runs every channel one frame per step. A user gives each channel one sequence,
or several to run back to back (each starting from zero state), or nothing. A
:class:`StepPlan` lays them out in steps: the input codes of every channel at every step, the
steps where a channel begins a sequence, and the golden model's expected output for every
channel at every step. Channels whose sequences are shorter than the longest are fed zero
frames after their end (continuing their last sequence), so every output word the hardware
produces has an expected value.
"""

from dataclasses import dataclass

import numpy as np

from ..contract.errors import InputError

__all__ = ["StepPlan", "plan_steps"]


@dataclass
class StepPlan:
    """Steps of a multi-channel run.

    Attributes
    ----------
    codes : int64 array (steps, channels, inputs)
    starts : bool array (steps, channels)
        A channel begins a new sequence at this step.
    expected : int64 array (steps, channels, outputs)
        The golden model's outputs.
    spans : list of list of (first_step, frames)
        Per channel, where each of its sequences lies.
    single : bool
        The user gave one sequence for channel 0 only (results are then per frame, not per
        channel).
    initial : list
        Per channel, the (y, c) codes of each layer its first sequence starts from, or None
        (zero state). A channel with an initial state does not begin its first sequence with
        a start: the state is loaded into the hardware before the first step instead.
    """

    codes: np.ndarray
    starts: np.ndarray
    expected: np.ndarray
    spans: list
    single: bool
    initial: list = None

    @property
    def has_initial_state(self):
        return any(state is not None for state in (self.initial or []))

    @property
    def steps(self):
        return self.codes.shape[0]

    def channel_outputs(self, values):
        """Split (steps, channels, outputs) into each channel's sequences' outputs."""
        return [[values[first:first + count, channel] for first, count in spans]
                for channel, spans in enumerate(self.spans)]


def plan_steps(program, frames, golden=True, state=None, carry=False):
    """Lay out ``frames`` for ``program``'s channels.

    ``frames`` is one (frames, inputs) array, run on channel 0, or a list with one entry per
    channel (at most ``channels``): a (frames, inputs) array, a list of such arrays to run
    one after another, or None for an idle channel. With ``golden`` the plan holds the golden
    model's outputs too. ``state`` gives the first sequence's initial state: ``(h0, c0)``
    (``Program.predict``'s shapes) for one sequence, or a list with one such pair or None per
    channel. ``carry``: the first sequences continue the state the hardware holds (no start);
    the golden model's expectations then start from ``state``, which must hold that state.
    """
    channels = program.config.channels
    single = not isinstance(frames, (list, tuple))
    per_channel = [frames] if single else list(frames)
    if len(per_channel) > channels:
        raise InputError(f"{len(per_channel)} channels' frames given, but the hardware has "
                         f"{channels} channels")
    per_channel += [None] * (channels - len(per_channel))
    if state is None:
        states = [None] * channels
    elif single:
        states = [state] + [None] * (channels - 1)
    else:
        states = list(state)
        if len(states) > channels:
            raise InputError(f"{len(states)} channels' states given, but the hardware has "
                             f"{channels} channels")
        states += [None] * (channels - len(states))
    initial = [program.encode_state(s) if s is not None else None for s in states]
    sequences = []
    for channel, entry in enumerate(per_channel):
        if entry is None:
            items = []
        elif isinstance(entry, (list, tuple)):
            items = list(entry)
        else:
            items = [entry]
        encoded = []
        for item in items:
            codes, _ = program.encode_inputs(item)
            encoded.append(codes)
        sequences.append(encoded)
    steps = max((sum(len(c) for c in seqs) for seqs in sequences), default=0)
    if steps == 0:
        raise InputError("no input frames for any channel")
    codes = np.zeros((steps, channels, program.inputs), dtype=np.int64)
    starts = np.zeros((steps, channels), dtype=bool)
    expected = np.zeros((steps, channels, program.outputs), dtype=np.int64)
    spans = []
    for channel, seqs in enumerate(sequences):
        if not seqs:
            seqs = [np.zeros((0, program.inputs), dtype=np.int64)]
        # The last sequence runs on over zero frames to the end of the plan.
        padding = steps - sum(len(c) for c in seqs)
        step, channel_spans = 0, []
        for index, sequence in enumerate(seqs):
            run = sequence
            if index == len(seqs) - 1 and padding:
                run = np.concatenate([sequence, np.zeros((padding, program.inputs),
                                                          dtype=np.int64)])
            if len(run) == 0:
                continue
            codes[step:step + len(run), channel] = run
            from_state = initial[channel] if index == 0 else None
            starts[step, channel] = not (index == 0 and (carry or from_state is not None))
            if golden:
                expected[step:step + len(run), channel] = program.predict_codes(
                    run, state=from_state)
            channel_spans.append((step, len(sequence)))
            step += len(run)
        spans.append(channel_spans)
    return StepPlan(codes, starts, expected, spans, single, initial)
