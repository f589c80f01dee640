"""The integer model: what a weight image encodes and the golden model runs.

The compiler's quantization (:mod:`ese.sw.compiler.quantization`) produces a
:class:`QuantizedModel` and its :class:`QuantizationReport`; the runtime decodes the same
model back from an image (:func:`ese.sw.runtime.encoding.decode_image`), so these types live
with the runtime, which never needs the compiler to run a model. :class:`LayerShape` and
:class:`StackShape` give real-valued and integer layers the same size properties.
"""

from dataclasses import dataclass, field

import numpy as np

from ..contract.arithmetic import DeltaThresholds, LayerFormats
from ..contract.errors import CapacityError, ConfigError

__all__ = ["LayerShape", "StackShape", "Pass", "PassSchedule", "DIRECTIONS", "QuantizedLayer",
           "QuantizedModel",
           "QuantizationReport", "check_accumulator_bound", "check_model_bounds",
           "delta_thresholds", "real_thresholds"]


class LayerShape:
    """Sizes of a layer, read off its ``input_weights`` and ``projection`` arrays, and its
    kind (``self.kind``: "lstm", "gru" or "rnn", :data:`~ese.sw.contract.memory_map.CELL_KINDS`).

    A GRU layer keeps the LSTM's shapes: four gate slots per cell
    (:data:`~ese.sw.contract.memory_map.GRU_SLOTS`), where n_h has no input weights and n_x
    no recurrent ones; a simple RNN's weights and bias lie in n_x alone (structural zeros,
    :data:`~ese.sw.contract.memory_map.STRUCTURAL_ZEROS`, which no count of weights
    includes).
    """

    @property
    def is_gru(self):
        """Whether the layer runs on the GRU's update: a GRU, or a simple RNN (a GRU with its
        update gate held at zero; :data:`~ese.sw.contract.memory_map.CELL_KINDS`)."""
        return self.kind in ("gru", "rnn")

    @property
    def is_rnn(self):
        return self.kind == "rnn"

    @property
    def cells(self):
        return self.input_weights.shape[0] // 4

    @property
    def inputs(self):
        return self.input_weights.shape[1]

    @property
    def proj(self):
        """Projection size, or 0 where the layer has no projection."""
        return 0 if self.projection is None else self.projection.shape[0]

    @property
    def recurrent(self):
        """Size of y, the layer's output and recurrent input."""
        return self.proj or self.cells

    @property
    def outputs(self):
        return self.recurrent

    def weight_count(self):
        """Weights of the layer's matrices (zeros included), without a GRU's structural
        zeros: the size of PyTorch's own matrices."""
        count = sum(m.size for m in self.matrices().values())
        if self.is_rnn:
            count -= 3 * self.cells * (self.inputs + self.recurrent)
        elif self.is_gru:
            count -= self.cells * (self.inputs + self.recurrent)
        return count

    def matrices(self):
        """The sparse matrices of the layer, by name."""
        found = {"input_weights": self.input_weights, "recurrent_weights": self.recurrent_weights}
        if self.projection is not None:
            found["projection"] = self.projection
        return found


#: A layer's direction: "forward" reads the frames in time order; "backward" is the second half
#: of a bidirectional layer: it reads the same input as the forward layer before it, in
#: reverse time order, and its outputs (put back in time order) follow that layer's in the
#: stage's output, as PyTorch, ONNX and Keras concatenate them.
DIRECTIONS = ("forward", "backward")


@dataclass(frozen=True)
class Pass:
    """Layers ``first`` to ``last`` run as one sequence by the hardware: a run of
    unidirectional layers, or one half of a bidirectional layer (``backward``: its frames in
    reverse time order). A pass's first layer reads frames from the host; its last layer's
    outputs go back to it."""

    first: int
    last: int
    backward: bool = False

    @property
    def layers(self):
        return range(self.first, self.last + 1)


class PassSchedule:
    """The host's side of a model's passes (:meth:`StackShape.passes`), whoever runs them
    (the golden model, the simulation, the card): what each pass reads, and the model's
    outputs from what the passes wrote.

    ``inputs(run)`` gives the codes pass ``run`` reads, in the order the hardware reads them:
    the model's frames for the first stage, else the stage before's halves' outputs
    concatenated (forward first), reversed in time for a backward half. ``record(run,
    outputs)`` takes what it wrote, in the order written; ``outputs()`` is then the model's
    (the last stage's halves concatenated, in time order).
    """

    def __init__(self, model, codes):
        self.codes = np.asarray(codes, dtype=np.int64)
        self.stages = model.stages()
        self._stage_of = {index: number for number, stage in enumerate(self.stages)
                          for index in stage}
        self._written = {}             # each pass's last layer: its outputs in time order

    def inputs(self, run):
        number = self._stage_of[run.first]
        inputs = self.codes if number == 0 else self._joined(self.stages[number - 1])
        return inputs[::-1] if run.backward else inputs

    def record(self, run, outputs):
        self._written[run.last] = outputs[::-1] if run.backward else outputs

    def outputs(self):
        return self._joined(self.stages[-1])

    def _joined(self, stage):
        return np.concatenate([self._written[index] for index in stage], axis=1)


class StackShape:
    """Sizes and counts of a stack of layers (``self.layers``).

    The layers form *stages*: a forward layer alone, or a bidirectional layer's forward and
    backward halves (:data:`DIRECTIONS`). Stage ``s + 1`` reads stage ``s``'s output: its
    layer's y, or its two halves' ys concatenated, forward first.
    """

    @property
    def inputs(self):
        return self.layers[0].inputs

    @property
    def outputs(self):
        return sum(self.layers[index].outputs for index in self.stages()[-1])

    @property
    def bidirectional(self):
        """Some layer is bidirectional (it has a backward half)."""
        return any(getattr(layer, "direction", "forward") == "backward" for layer in self.layers)

    def stages(self):
        """The stages, as lists of layer indices (see the class's documentation)."""
        stages = []
        for index, layer in enumerate(self.layers):
            if getattr(layer, "direction", "forward") == "backward" and stages \
                    and len(stages[-1]) == 1:
                stages[-1].append(index)
            else:
                stages.append([index])
        return stages

    def stage_problem(self):
        """What makes the layers no stack of stages (a message), or None."""
        stages = self.stages()
        for number, stage in enumerate(stages):
            layers = [self.layers[index] for index in stage]
            directions = [getattr(layer, "direction", "forward") for layer in layers]
            if any(direction not in DIRECTIONS for direction in directions):
                return f"a layer's direction is one of {', '.join(DIRECTIONS)}"
            if directions[0] != "forward":
                return (f"layer {stage[0]} runs backward without the forward half of a "
                        f"bidirectional layer before it")
            if len(layers) == 2 and layers[1].inputs != layers[0].inputs:
                return (f"the halves of bidirectional layer {stage[0]} read {layers[0].inputs} "
                        f"and {layers[1].inputs} inputs")
            if number:
                produced = sum(self.layers[index].outputs for index in stages[number - 1])
                if layers[0].inputs != produced:
                    return (f"layer {stage[0]} takes {layers[0].inputs} inputs but the layer "
                            f"before it produces {produced}")
        return None

    def passes(self):
        """The :class:`Pass` es the hardware runs the stack in: each run of unidirectional
        stages as one, each half of a bidirectional stage as one."""
        found = []
        for stage in self.stages():
            if len(stage) == 2:
                found += [Pass(stage[0], stage[0]), Pass(stage[1], stage[1], backward=True)]
            elif found and not found[-1].backward:
                # A unidirectional stage joins the run before it (a bidirectional stage's
                # forward half is always followed by its backward one in the list).
                found[-1] = Pass(found[-1].first, stage[0])
            else:
                found.append(Pass(stage[0], stage[0]))
        return found

    def reads_cell_outputs(self):
        """For each layer, whether its input is cell outputs m, never beyond 1.0 (its previous
        stage's layers have no projection)."""
        stages = self.stages()
        return [number > 0 and all(self.layers[earlier].proj == 0
                                   for earlier in stages[number - 1])
                for number, stage in enumerate(stages) for _ in stage]

    def weight_count(self):
        """Weights in all sparse matrices (zeros included; see :meth:`LayerShape.weight_count`)."""
        return sum(layer.weight_count() for layer in self.layers)

    def nonzero_count(self):
        return sum(int(np.count_nonzero(m)) for layer in self.layers
                   for m in layer.matrices().values())


@dataclass
class QuantizedLayer(LayerShape):
    """One layer in integers (int64 arrays; shapes as in LayerDescription).

    ``peephole`` is always present (zeros where the source had none); ``projection`` is None
    where the layer has no projection. ``formats`` says which fixed-point format each kind of
    value has (the configured ones by default; see
    :class:`~ese.sw.contract.arithmetic.LayerFormats`). ``kind`` is "lstm", "gru" or "rnn" (then
    the gate slots are :data:`~ese.sw.contract.memory_map.GRU_SLOTS`, the peepholes zero and
    there is no projection). ``delta`` holds a delta layer's thresholds
    (:class:`~ese.sw.contract.arithmetic.DeltaThresholds`; docs/arithmetic.md, "Delta layers"),
    None for a layer that multiplies every column every frame.
    """

    input_weights: np.ndarray
    recurrent_weights: np.ndarray
    bias: np.ndarray
    peephole: np.ndarray
    projection: "np.ndarray | None"
    formats: LayerFormats = field(default_factory=LayerFormats)
    kind: str = "lstm"
    delta: "DeltaThresholds | None" = None
    direction: str = "forward"

    @property
    def gate_weights(self):
        """[W_x | W_r]: the matrix the gates multiply with [x; y]."""
        return np.concatenate([self.input_weights, self.recurrent_weights], axis=1)

    def equals(self, other):
        names = ("input_weights", "recurrent_weights", "bias", "peephole")
        same = all(np.array_equal(getattr(self, n), getattr(other, n)) for n in names)
        if (self.formats != other.formats or self.kind != other.kind
                or self.delta != other.delta or self.direction != other.direction):
            return False
        if (self.projection is None) != (other.projection is None):
            return False
        return same and (self.projection is None
                         or np.array_equal(self.projection, other.projection))


@dataclass
class QuantizationReport:
    """How many values saturated, per layer and tensor, and how many non-zeros remain.

    ``calibration`` (empty without calibration frames) holds what the compiler measured on
    them: ``frames``, the ``saturated`` counts of the run (inputs, cell states, projection
    outputs) and ``max_error``, the largest distance of the outputs from the float model.
    ``requantized`` (empty unless the model was trained with weight quantizers, as Brevitas'
    are) holds, per matrix (``layer0.input_weights``), the largest difference between the
    trained quantized weights and the program's: 0 where they landed on the format's grid.
    """

    saturated: dict = field(default_factory=dict)
    nonzeros: int = 0
    weights: int = 0
    calibration: dict = field(default_factory=dict)
    requantized: dict = field(default_factory=dict)

    @property
    def saturated_total(self):
        return sum(self.saturated.values())

    @property
    def density(self):
        return self.nonzeros / self.weights if self.weights else 0.0

    def to_dict(self):
        values = {"saturated": dict(self.saturated), "nonzeros": self.nonzeros,
                  "weights": self.weights, "calibration": dict(self.calibration)}
        if self.requantized:            # only models trained with weight quantizers have it
            values["requantized"] = dict(self.requantized)
        return values

    @classmethod
    def from_dict(cls, values):
        calibration = values.get("calibration", {})
        if not isinstance(calibration, dict):
            raise ValueError("the calibration record is not a mapping")
        requantized = values.get("requantized", {})
        if not isinstance(requantized, dict):
            raise ValueError("the requantization record is not a mapping")
        return cls(saturated={str(k): int(v) for k, v in values["saturated"].items()},
                   nonzeros=int(values["nonzeros"]), weights=int(values["weights"]),
                   calibration=calibration,
                   requantized={str(k): float(v) for k, v in requantized.items()})


@dataclass
class QuantizedModel(StackShape):
    """The integer model: what the image encodes and the golden model runs."""

    config: object
    layers: list
    source: str = "unknown"

    @property
    def has_delta(self):
        """Some layer is a delta layer."""
        return any(layer.delta is not None for layer in self.layers)

    def equals(self, other):
        return (len(self.layers) == len(other.layers)
                and all(a.equals(b) for a, b in zip(self.layers, other.layers)))


def check_accumulator_bound(layer, config, index=0, input_is_m=False):
    """Refuse a layer whose worst-case sums could overflow ``accumulator_bits``.

    Every input counts at its format's extreme code, except the cell outputs m (the
    recurrent input without a projection, the projection's input and, with ``input_is_m``,
    the input of a layer after one without projection), which never exceed 1.0: o and
    tanh(c) come from tables of values in [-1, 1].

    A delta layer sums changes instead (docs/arithmetic.md, "Delta layers"): a column's delta
    is the difference of two of its values, up to twice its extreme, so its products count
    twice. (Its carried sums M are products of the last transmitted values, valid values of
    the same formats, so the bound without deltas holds them.)
    """
    largest_activation = 1 << (config.activation_bits - 1)
    largest_m = 1 << config.activation_frac_bits
    largest_cell = 1 << (config.cell_bits - 1)
    aligns = layer.formats.alignments()
    bias_shift = config.product_frac_bits - config.bias_frac_bits + aligns["bias_align"]
    peep_shift = (config.activation_frac_bits - config.cell_frac_bits
                  + aligns["peephole_align"])
    delta = 2 if layer.delta is not None else 1
    largest_input = delta * (largest_m if input_is_m else largest_activation)
    largest_recurrent = delta * (largest_activation if layer.projection is not None
                                 else largest_m)
    largest_m *= delta          # the projection's input
    gate_rows = ((np.abs(layer.input_weights).sum(axis=1) * largest_input)
                 << aligns["input_align"])
    gate_rows = gate_rows + ((np.abs(layer.recurrent_weights).sum(axis=1) * largest_recurrent)
                             << aligns["recurrent_align"])
    gate_rows = gate_rows + (np.abs(layer.bias) << bias_shift)
    peephole_rows = np.zeros(4 * layer.cells, dtype=np.int64)
    peephole_rows[:layer.cells] = np.abs(layer.peephole[0])
    peephole_rows[layer.cells:2 * layer.cells] = np.abs(layer.peephole[1])
    peephole_rows[3 * layer.cells:] = np.abs(layer.peephole[2])
    worst = int((gate_rows + ((peephole_rows * largest_cell) << peep_shift)).max())
    if layer.projection is not None:
        worst = max(worst, int(((np.abs(layer.projection).sum(axis=1) * largest_m)
                                << aligns["projection_align"]).max()))
    limit = 1 << (config.accumulator_bits - 1)
    if worst >= limit:
        raise CapacityError(
            f"layer {index}: a row's worst-case sum needs {worst.bit_length() + 1} bits, more "
            f"than Config.accumulator_bits={config.accumulator_bits}; widen the accumulators")


def check_model_bounds(model, config):
    """:func:`check_accumulator_bound` for every layer of ``model``."""
    for index, layer in enumerate(model.layers):
        check_accumulator_bound(layer, config, index,
                                input_is_m=model.reads_cell_outputs()[index])


def real_thresholds(entry, what="a layer"):
    """One layer's real thresholds ``[theta_x, theta_h, theta_m]`` from a pair or triple
    (theta_m defaults to theta_h), checked: finite and >= 0."""
    try:
        reals = [float(value) for value in entry]
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: delta thresholds must be (theta_x, theta_h) or "
                          f"(theta_x, theta_h, theta_m) real numbers, a "
                          f"DeltaThresholds or None; got {entry!r}") from None
    if len(reals) not in (2, 3):
        raise ConfigError(f"{what}: give 2 or 3 delta thresholds (theta_x, theta_h "
                          f"[, theta_m]), not {len(reals)}")
    if len(reals) == 2:
        reals.append(reals[1])
    if not all(np.isfinite(value) and value >= 0 for value in reals):
        raise ConfigError(f"{what}: delta thresholds must be finite and >= 0, not {reals}")
    return reals


def delta_thresholds(model, config, delta):
    """Each layer's :class:`~ese.sw.contract.arithmetic.DeltaThresholds` (or None) from a
    user's ``delta``.

    ``delta`` is None (no delta layers); a pair ``(theta_x, theta_h)`` or triple ``(theta_x,
    theta_h, theta_m)`` of real thresholds for every layer; or a list with one entry per
    layer, each None (not a delta layer), such a pair or triple, or a ``DeltaThresholds``
    (counts of LSBs, used as they are). A real threshold theta transmits a column whose
    change exceeds theta: it becomes ``floor(theta * 2**frac)`` LSBs of the column's format
    (the layer's input format for x, its output format for y, the activation format for m;
    theta_m defaults to theta_h).
    """
    layers = model.layers
    if delta is None:
        return [None] * len(layers)
    per_layer = list(delta) if isinstance(delta, list) else [delta] * len(layers)
    if len(per_layer) != len(layers):
        raise ConfigError(f"delta gives {len(per_layer)} layers' thresholds; the model has "
                          f"{len(layers)} layers")
    chosen = []
    for index, (layer, entry) in enumerate(zip(layers, per_layer)):
        what = f"layer {index}"
        if entry is None or isinstance(entry, DeltaThresholds):
            thresholds = entry
        else:
            reals = real_thresholds(entry, what)
            fracs = (layer.formats.format(config, "input").frac,
                     layer.formats.format(config, "output").frac,
                     config.activation_frac_bits)
            thresholds = DeltaThresholds(*(int(np.floor(value * 2.0 ** frac))
                                           for value, frac in zip(reals, fracs)))
        if thresholds is not None:
            try:
                thresholds.check(config, what)
            except ValueError as error:
                raise ConfigError(str(error)) from None
        chosen.append(thresholds)
    return chosen
