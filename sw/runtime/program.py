"""The Program: a compiled model and everything a user does with it.

``ese.compile`` (:mod:`ese.sw.compiler.pipeline`) runs the compiler's steps and returns a
:class:`Program`; :func:`load` reads one back from a weight image without the compiler. A program
predicts with the bit-exact golden model, simulates the generated RTL, and saves to and
loads from a weight image::

    prog = ese.compile(module, ese.Config(pes=4), density=0.3)
    y    = prog.predict(x)          # float (frames, outputs), bit-exact with the hardware
    res  = prog.simulate(x)         # the RTL in Verilator; res.outputs == prog.predict(x)
    prog.save("model.ese"); prog = ese.load("model.ese")
"""

import dataclasses

import numpy as np

from ..contract.arithmetic import dequantize, quantize
from ..contract.config import CAPACITY_FIELDS, RELAID_FIELDS
from ..contract.errors import EseError, ImageError, InputError
from ..contract.memory_map import state_dump_supported
from .encoding import decode_image, decode_state_dump, encode_model
from .frames import check_frames
from .golden import GoldenModel
from .image import image_bytes, read_image, write_image
from .quantized import (
    PassSchedule,
    QuantizationReport,
    QuantizedModel,
    check_model_bounds,
    delta_thresholds,
)

__all__ = ["Program", "Utterance", "load", "check_compatible"]


class Program:
    """A model compiled for one hardware configuration.

    Attributes
    ----------
    config : Config
        The sized hardware parameters the program runs on.
    model : QuantizedModel
        The integer weights.
    image : HardwareImage
        The contents of the accelerator's memories.
    report : QuantizationReport
        Saturated values and non-zeros.
    metadata : dict
        Where the program came from (source module, density, pruning kind).
    float_model : ModelDescription or None
        The model in real numbers with the pruned weights, whatever front end it came from
        (:class:`ese.sw.compiler.model.ModelDescription`), for comparisons (None after
        loading).
    run_float : callable or None
        Runs ``float_model`` over checked frames from a state (the compiler gives
        :func:`ese.sw.compiler.formats.float_outputs`), so that the runtime itself never
        imports the compiler.
    """

    def __init__(self, model, image, report, metadata, float_model=None, run_float=None):
        self.model = model
        self.image = image
        self.report = report
        self.metadata = metadata
        self.float_model = float_model
        self.run_float = run_float
        self._golden = GoldenModel(model)
        self._pass_goldens = {}

    @property
    def config(self):
        return self.image.config

    @property
    def inputs(self):
        return self.model.inputs

    @property
    def outputs(self):
        return self.model.outputs

    @property
    def input_format(self):
        """The fixed-point format of the input frames (the first layer's input)."""
        return self.model.layers[0].formats.format(self.config, "input")

    @property
    def output_format(self):
        """The fixed-point format of the outputs (the last layer's y)."""
        return self.model.layers[-1].formats.format(self.config, "output")

    # Running.

    def encode_inputs(self, frames):
        """Check and quantize input frames to :attr:`input_format`; returns ``(codes,
        saturated_count)``."""
        frames = check_frames(frames, self.inputs)
        return quantize(frames, self.input_format)

    def decode_outputs(self, codes):
        return dequantize(codes, self.output_format)

    def predict_codes(self, codes, trace=None, saturated=None, state=None, final=None):
        """Golden model on input codes (int array (frames, inputs), in :attr:`input_format`).

        ``trace``, a list, receives the activation vectors of every layer; ``saturated``, a
        dict, counts the values that saturated in the datapath; ``state`` (each layer's (y, c)
        codes) starts from a state and ``final``, a list, receives the state after the last
        frame (see ``GoldenModel.run``).
        """
        if not self.model.bidirectional:
            return self._golden.run(codes, trace=trace, saturated=saturated, state=state,
                                    final=final)
        return self.run_passes(codes, trace=trace, saturated=saturated, state=state,
                               final=final)[0]

    # Bidirectional layers: passes.

    def run_passes(self, codes, trace=None, saturated=None, state=None, final=None):
        """The golden model over a model's passes (:meth:`QuantizedModel.passes
        <ese.sw.runtime.quantized.StackShape.passes>`), as the host schedules them on the
        hardware: each pass a sequence through its layers, a backward half's frames in
        reverse time order, each stage's input its previous stage's outputs concatenated.

        Returns ``(outputs, runs)``: the model's output codes (frames, outputs), and for each
        pass ``(Pass, inputs, outputs)``: the codes the pass reads and writes, in the order
        the hardware reads and writes them (a backward pass's reversed). The other arguments
        are :meth:`predict_codes`'s, for every layer.
        """
        schedule = PassSchedule(self.model, codes)
        runs = []
        for run in self.model.passes():
            inputs = schedule.inputs(run)
            layers = list(run.layers)
            local_saturated = {} if saturated is not None else None
            local_final = [] if final is not None else None
            golden = self._pass_golden(run)
            outputs = golden.run(inputs, trace=trace, saturated=local_saturated,
                                 state=None if state is None else [state[i] for i in layers],
                                 final=local_final)
            for key, count in (local_saturated or {}).items():
                local, _, name = key.partition(".")
                key = f"layer{run.first + int(local[len('layer'):])}.{name}"
                saturated[key] = saturated.get(key, 0) + count
            if final is not None:
                final.extend(local_final)
            runs.append((run, inputs, outputs))
            schedule.record(run, outputs)
        return schedule.outputs(), runs

    def _pass_golden(self, run):
        """The golden model of pass ``run``'s layers alone (made on first use)."""
        if run not in self._pass_goldens:
            self._pass_goldens[run] = GoldenModel(QuantizedModel(
                self.model.config, self.model.layers[run.first:run.last + 1]))
        return self._pass_goldens[run]

    def check_unidirectional(self, what):
        """Refuse ``what`` (a way of running) for a model with a bidirectional layer, which
        runs whole utterances in passes."""
        if self.model.bidirectional:
            raise InputError(
                f"{what} is not available for a bidirectional model: its backward half reads "
                f"the utterance from its end, so the model runs whole utterances, one pass of "
                f"the hardware after another (Program.predict, simulate and Accelerator.run "
                f"on one sequence)")

    def predict(self, frames, state=None, return_state=False):
        """Run one sequence of frames through the golden model.

        Parameters
        ----------
        frames : array (frames, inputs)
            Real-valued inputs; values beyond the input format's range saturate.
        state : (h0, c0), or h0 where every layer is a GRU; optional
            The initial state in PyTorch's shapes: h0 (layers, outputs of each layer) and c0
            (layers, cells), a leading batch of 1 allowed (``nn.LSTM``'s ``(h0, c0)``,
            ``nn.GRU``'s h0); for a one-layer model also (outputs,) and (cells,)
            (``nn.LSTMCell``'s, ``nn.GRUCell``'s). Zero if None.
        return_state : bool
            Also return the state after the last frame, ``(h_n, c_n)`` (``h_n`` for a GRU),
            in the same shapes.

        Returns
        -------
        array (frames, outputs), and (h_n, c_n) with ``return_state``
            The last layer's output for every frame, decoded from fixed point: exactly what
            the hardware produces; the last frame's alone, (outputs,), where the model's last
            layer returns only it (:attr:`last_frame_only`).
        """
        codes, _ = self.encode_inputs(frames)
        final = [] if return_state else None
        outputs = self.returned(self.decode_outputs(self.predict_codes(
            codes, state=self.encode_state(state) if state is not None else None,
            final=final)))
        return (outputs, self.decode_state(final)) if return_state else outputs

    @property
    def last_frame_only(self):
        """Whether the model's last layer returns its last frame's output alone (a Keras
        layer with ``return_sequences=False``), and so do :meth:`predict`, :meth:`simulate`
        and the driver; the hardware computes every frame's."""
        return bool(self.metadata.get("last_frame_only"))

    def returned(self, outputs):
        """One sequence's outputs (frames, outputs) as the model returns them: all, or the
        last frame's (:attr:`last_frame_only`), which for a bidirectional last layer is its
        forward half's last frame and its backward half's first (the last it computed)."""
        if not self.last_frame_only:
            return outputs
        last = self.model.stages()[-1]
        if len(last) == 1:
            return outputs[-1]
        forward = self.model.layers[last[0]].outputs
        return np.concatenate([outputs[-1, :forward], outputs[0, forward:]])

    # State.

    def _state_sizes(self):
        layers = self.model.layers
        return [layer.outputs for layer in layers], [layer.cells for layer in layers]

    @property
    def hidden_state_only(self):
        """Whether the state is h alone (every layer a GRU, as ``nn.GRU`` takes it), rather
        than ``(h, c)``."""
        return all(layer.is_gru for layer in self.model.layers)

    def encode_state(self, state):
        """``(h, c)`` in PyTorch's shapes (see :meth:`predict`; ``h`` alone where every layer
        is a GRU) as each layer's ``(y, c)`` codes: y in the layer's output format, c in the
        cell format (a GRU layer's c is its h, which the cell unit keeps in the cell state
        memory; a c given for it is not used). Values beyond a format saturate; NaN,
        infinities and wrong shapes raise :class:`InputError`."""
        encoded = []
        for index, (y, cell) in enumerate(self.state_rows(state)):
            layer = self.model.layers[index]
            y_codes, _ = quantize(y, layer.formats.format(self.config, "output"))
            c_codes = (y_codes.copy() if layer.is_gru
                       else quantize(cell, self.config.cell_format)[0])
            encoded.append((y_codes, c_codes))
        return encoded

    def state_rows(self, state):
        """``(h, c)`` in PyTorch's shapes (see :meth:`predict`; ``h`` alone where every layer
        is a GRU) as each layer's real ``(y, c)`` (a GRU layer's c zeros)."""
        outputs, cells = self._state_sizes()
        if self.hidden_state_only:
            if isinstance(state, tuple):
                raise InputError("a GRU's state is h0 alone, an array (layers, hidden) as "
                                 "nn.GRU takes it (or a list of one array per layer), not a "
                                 "tuple such as an LSTM's (h0, c0)")
            parts = [_state_rows("h0", state, outputs), [np.zeros(n) for n in cells]]
        else:
            try:
                h, c = state
            except (TypeError, ValueError):
                raise InputError("a state is a pair (h0, c0) of arrays") from None
            parts = [_state_rows(name, values, sizes)
                     for name, values, sizes in (("h0", h, outputs), ("c0", c, cells))]
        return list(zip(*parts))

    def decode_state(self, codes):
        """Each layer's ``(y, c)`` codes as ``(h, c)`` in PyTorch's shapes: (layers, size),
        or (size,) where the source was an ``nn.LSTMCell`` or ``nn.GRUCell``; ``h`` alone
        where every layer is a GRU (a GRU layer's c among LSTM layers reads as zeros)."""
        h = np.stack([dequantize(state[0], layer.formats.format(self.config, "output"))
                      for state, layer in zip(codes, self.model.layers)])
        c = np.stack([np.zeros(len(state[1])) if layer.is_gru
                      else dequantize(state[1], self.config.cell_format)
                      for state, layer in zip(codes, self.model.layers)])
        single = str(self.metadata.get("source", "")).startswith(
            ("torch.nn.LSTMCell", "torch.nn.GRUCell", "torch.nn.RNNCell"))
        if self.hidden_state_only:
            return h[0] if single else h
        if single:
            return h[0], c[0]
        return h, c

    def check_state_readable(self, what="this hardware"):
        """Refuse ``return_state`` where the hardware builds no state dump (``ese.hw.dump``)."""
        config = self.config
        if not state_dump_supported(config):
            raise InputError(f"{what} cannot read its state back: a cell state "
                             f"({config.cell_bits} bits) does not fit an activation word "
                             f"({config.activation_bits} bits)")

    def states_from_dump(self, values):
        """Each channel's ``(h, c)`` (PyTorch's shapes) from a state dump's packet, given as
        signed values (words, channels)."""
        return [self.decode_state(codes) for codes in decode_state_dump(self.image, values)]

    def utterance(self):
        """A context in which :meth:`Utterance.run` takes one utterance in pieces, carrying
        the state from each piece to the next: the outputs are exactly those of one
        :meth:`predict` on the frames joined. See :meth:`Accelerator.utterance
        <ese.sw.runtime.driver.Accelerator.utterance>` for the card. Refused for a
        bidirectional model, which needs each utterance whole."""
        self.check_unidirectional("an utterance in pieces (Program.utterance)")
        return Utterance(self)

    def simulate(self, frames, **options):
        """Run the frames through the generated RTL in Verilator (see ese.sim.runner);
        ``state=(h0, c0)`` starts from a state loaded into the hardware, ``return_state=True``
        reads the final state back out of it, ``waves=path`` writes an FST trace."""
        from ...sim.runner import simulate
        return simulate(self, frames, **options)

    def float_reference(self, frames, state=None):
        """The model in float64 with the same pruned weights, over the same frames, from
        zero state or from ``state`` (as :meth:`predict` takes it): the equations of the
        source framework (PyTorch's, ONNX's operators, ...), against which the fixed-point
        results are measured."""
        if self.float_model is None or self.run_float is None:
            raise ValueError("this program was loaded from an image and has no float model")
        frames = check_frames(frames, self.inputs)
        return self.returned(self.run_float(self.float_model, frames,
                                            None if state is None else self.state_rows(state)))

    # Describing.

    def summary(self):
        """Sizes, sparsity and encoding figures, as a dict."""
        image = self.image
        entries = image.entries_per_pe
        return {
            "source": self.metadata.get("source"),
            "layers": [{"kind": layer.kind, "direction": layer.direction,
                        "inputs": layer.inputs, "cells": layer.cells,
                        "proj": layer.proj, "peepholes": bool(np.any(layer.peephole)),
                        "delta": (None if layer.delta is None else
                                  {name: getattr(layer.delta, name)
                                   for name in layer.delta.NAMES})}
                       for layer in self.model.layers],
            "pes": self.config.pes,
            "weights": self.report.weights,
            "nonzeros": self.report.nonzeros,
            "density": self.report.density,
            "padding_entries": int(image.padding.sum()),
            "entries_per_pe_max": int(entries.max()),
            "entries_per_pe_min": int(entries.min()),
            "saturated": self.report.saturated_total,
            "formats": [{name: str(layer.formats.format(self.config, name))
                         for name in layer.formats.NAMES
                         if (name not in ("output", "projection") or layer.proj)
                         and (name != "peephole" or np.any(layer.peephole))}
                        for layer in self.model.layers],
            "calibration": dict(self.report.calibration),
            "requantized": dict(self.report.requantized),
        }

    # Files.

    def retarget(self, config):
        """This program laid out for hardware ``config``.

        The hardware must have the same arithmetic, PE and channel counts, and capacities at
        least as large as the program needs (its memory bus and clock may differ); otherwise
        :class:`ImageError` says what differs.
        """
        check_compatible(self.config, config, gru_layers=self._has_gru(),
                         delta_layers=self.model.has_delta)
        if config == self.config:
            return self
        image = encode_model(self.model, config)
        model = dataclasses.replace(self.model, config=image.config)
        return Program(model, image, self.report, self.metadata, self.float_model,
                       self.run_float)

    def with_delta(self, delta):
        """This program with delta layers (docs/arithmetic.md, "Delta layers"): the same
        weights, with the thresholds ``delta`` gives (see
        :func:`~ese.sw.runtime.quantized.delta_thresholds`; None: no delta layers). The
        hardware must have delta units (``Config.delta=1``)."""
        thresholds = delta_thresholds(self.model, self.config, delta)
        model = dataclasses.replace(self.model, layers=[
            dataclasses.replace(layer, delta=chosen)
            for layer, chosen in zip(self.model.layers, thresholds)])
        check_model_bounds(model, self.config)
        image = encode_model(model, self.config)
        return Program(model, image, self.report, self.metadata, self.float_model,
                       self.run_float)

    def _has_gru(self):
        return any(layer.is_gru for layer in self.model.layers)

    def save(self, path):
        """Write the program as a weight image file."""
        metadata = dict(self.metadata)
        metadata["report"] = self.report.to_dict()
        write_image(path, self.image, metadata)

    def __repr__(self):
        s = self.summary()
        return (f"<Program {s['source']} {self.inputs}->{self.outputs}, {s['nonzeros']} "
                f"non-zeros ({s['density']:.3f}), {s['pes']} PEs>")


class Utterance:
    """One utterance given in pieces to the golden model (:meth:`Program.utterance`)."""

    def __init__(self, program):
        self.program = program
        self.codes = None        # each layer's (y, c) after the last piece; None: zero state

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        return False

    def run(self, frames):
        """The outputs of the next piece of the utterance, from where the last one ended: every
        frame's (also for a model whose last layer returns its last frame only)."""
        codes, _ = self.program.encode_inputs(frames)
        final = []
        outputs = self.program.predict_codes(codes, state=self.codes, final=final)
        self.codes = final
        return self.program.decode_outputs(outputs)

    @property
    def state(self):
        """The state reached so far, ``(h, c)`` in PyTorch's shapes (``h`` for a GRU; zeros
        before any)."""
        codes = self.codes
        if codes is None:
            codes = [(np.zeros(o, np.int64), np.zeros(c, np.int64))
                     for o, c in zip(*self.program._state_sizes())]
        return self.program.decode_state(codes)


def _state_rows(name, values, sizes):
    """One part of a state, ``h0`` or ``c0``, as a row per layer of the given ``sizes``: a
    (layers, size) array (a batch of 1 allowed), a (size,) array for one layer, or a list of
    one array per layer."""
    layers = len(sizes)
    if isinstance(values, (list, tuple)) and len(values) == layers and layers > 1:
        rows = values
    else:
        try:
            array = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"{name} must hold real numbers") from None
        if len(set(sizes)) != 1 or array.size != layers * sizes[0] or (
                array.ndim > 1 and array.shape[0] != layers) or array.ndim > 3:
            raise InputError(f"{name} has shape {array.shape}; this model's is "
                             f"({layers}, {sizes[0]})" if len(set(sizes)) == 1 else
                             f"{name} has shape {array.shape}; give one array per layer, of "
                             f"sizes {sizes}")
        rows = list(array.reshape(layers, sizes[0]))
    checked = []
    for index, (row, size) in enumerate(zip(rows, sizes)):
        try:
            row = np.asarray(row, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise InputError(f"{name} must hold real numbers") from None
        if row.size != size:
            raise InputError(f"{name} of layer {index} has {row.size} values; the layer has "
                             f"{size}")
        if not np.all(np.isfinite(row)):
            raise InputError(f"{name} holds NaN or infinite values")
        checked.append(row)
    return checked


def load(path, config=None):
    """Load a program from a weight image file.

    If ``config`` is given, the image must have been built for the same arithmetic, PE and
    channel counts and must fit its capacities (see :func:`check_compatible`); it is then laid
    out for ``config``'s capacities and memory bus. Otherwise :class:`ImageError` says what
    differs.
    """
    image, metadata, content = read_image(path, with_content=True)
    try:
        model = decode_image(image)
        model.config = image.config
        again = encode_model(model, image.config)
    except ImageError as error:
        raise ImageError(f"{path}: {error}") from None
    except (EseError, ValueError, KeyError, TypeError, IndexError, ArithmeticError) as error:
        raise ImageError(f"{path}: the memories do not decode to a model "
                         f"({type(error).__name__}: {error})") from None
    # The image must be exactly what this compiler would write for the model it decodes to.
    same = (np.array_equal(again.pointers, image.pointers)
            and all(np.array_equal(a, b) for a, b in zip(again.entries, image.entries))
            and np.array_equal(again.cell_parameters, image.cell_parameters)
            and again.descriptors == image.descriptors
            and np.array_equal(again.padding, image.padding))
    if not same:
        raise ImageError(f"{path}: the memories are not a consistent encoding of a model")
    if config is not None:
        check_compatible(image.config, config, path,
                         gru_layers=any(layer.is_gru for layer in model.layers),
                         delta_layers=model.has_delta)
    try:
        report = QuantizationReport.from_dict(metadata["report"])
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        raise ImageError(f"{path}: the quantization report in the header is malformed") from None
    metadata = {k: v for k, v in metadata.items() if k != "report"}
    program = Program(model, image, report, metadata)
    if image_bytes(image, {**metadata, "report": report.to_dict()}) != content:
        raise ImageError(f"{path}: the file is not in the form this version of ese writes (a "
                         f"field, its spacing or unused bytes differ); recompile the model")
    # Capacities may be larger than the image needs: re-lay the memories for them.
    return program if config is None else program.retarget(config)


def check_compatible(built_for, hardware, what="the image", gru_layers=True,
                     delta_layers=True):
    """Refuse an image built for ``built_for`` on hardware with parameters ``hardware``.

    Capacities may be larger than the image needs, and the clock and the memory bus may
    differ (:data:`~ese.sw.contract.config.RELAID_FIELDS`): :meth:`Program.retarget` lays the
    image out again for them. Hardware without the GRU update (``gru=0``) takes any image
    without GRU layers (``gru_layers``), and hardware without delta units (``delta=0``) any
    image without delta layers (``delta_layers``). Everything else (the arithmetic, the PE
    and channel counts, whether weights stream) must be equal.
    """
    differences = []
    for name, value in hardware.to_dict().items():
        image_value = getattr(built_for, name)
        if name in CAPACITY_FIELDS:
            if value is not None and image_value > value:
                differences.append(f"{name} needs {image_value}, hardware has {value}")
        elif name == "gru":
            if gru_layers and not value:
                differences.append("the image holds GRU layers, the hardware no GRU update "
                                   "(gru=0)")
        elif name == "delta":
            if delta_layers and not value:
                differences.append("the image holds delta layers, the hardware sends every "
                                   "column every frame (delta=0)")
        elif name not in RELAID_FIELDS and value != image_value:
            differences.append(f"{name}: image {image_value}, hardware {value}")
    if differences:
        raise ImageError(f"{what} was built for other hardware: " + "; ".join(differences))
