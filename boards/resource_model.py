"""A resource model of the generator over its parameters, for the design-space explorer.

``ese estimate`` fits one machine's resources to syntheses of smaller machines with its
memories (:func:`~ese.boards.estimate.estimate`): minutes of Yosys per machine. The explorer
(``ese explore``) weighs dozens of machines, so its resources come from one model of the
generator instead:

* LUT, FF and DSP48E2 as linear sums of terms in the parameters that drive them, fitted to
  syntheses of small machines (:data:`CALIBRATION`): shared logic; per PE (its control); per
  PE and column of a block (the word queue's and pick's weights, the alignment); per PE and
  channel (accumulator control); per PE, column and channel (the multipliers and the sums of
  their products); per PE and bit of an entry word (fetch and decode); per cell lane and
  channel (the cell arithmetic); per column and channel (the readers and the memories'
  width).
* BRAM36 counted from the memories' shapes as Yosys maps them to RAMB36E2 and RAMB18E2 (the
  densest of their aspect ratios; a memory of at most 64 words goes to LUT RAM), with one
  fitted count per cell lane and channel for the activation tables.

The fit is made once (``ese explore --calibrate``: the calibration machines on the board's
hardware, minutes of Yosys) and committed as ``resource_model.json`` beside this module with
the syntheses it rests on; its error on the calibration machines and on the machines ``ese
estimate`` synthesises is what it claims.
"""

import json
import math
from pathlib import Path

import numpy as np

from ..sw.contract.memory_map import GATES, MemoryMap

__all__ = ["CALIBRATION", "TERMS", "terms", "bram36", "memory_bram36", "ResourceModel",
           "calibrate", "load_model", "MODEL_PATH"]

#: Where the committed fit lives.
MODEL_PATH = Path(__file__).with_name("resource_model.json")

#: The machines the fit is made from: (PEs, columns per entry, cell lanes, channels, entries
#: per read), each with the small memories of :data:`CALIBRATION_MEMORIES`.
CALIBRATION = (
    (4, 1, 1, 1, 4), (8, 1, 1, 1, 4), (4, 1, 1, 2, 4), (8, 1, 1, 2, 4),
    (4, 4, 1, 1, 2), (8, 4, 1, 1, 4), (4, 8, 1, 1, 2), (8, 8, 2, 1, 2),
    (4, 4, 1, 2, 2), (16, 8, 4, 1, 2), (8, 2, 2, 2, 2), (4, 1, 1, 8, 4), (8, 2, 1, 4, 4),
)
CALIBRATION_MEMORIES = dict(max_layers=2, input_depth=32, pointer_depth=128, entry_depth=1024,
                            cells_per_pe=32, projections_per_pe=16, cell_depth=128,
                            vector_depth=128)

#: The linear terms of LUT, FF and DSP.
TERMS = ("shared", "per_pe", "per_pe_column", "per_pe_channel", "per_pe_column_channel",
         "per_pe_entry_bit", "per_lane_channel", "per_column_channel")


def terms(config):
    """The values of :data:`TERMS` for a machine."""
    p, k, lanes, c = config.pes, config.block_columns, config.cell_lanes, config.channels
    word = MemoryMap(config).entry_word_bits
    return [1.0, p, p * k, p * c, p * k * c, p * word, lanes * c, k * c]


#: RAMB36E2 (one tile) and RAMB18E2 (half a tile) shapes in simple dual-port mode.
_SHAPES = ((512, 72, 1.0), (1024, 36, 1.0), (2048, 18, 1.0), (4096, 9, 1.0), (8192, 4, 1.0),
           (16384, 2, 1.0), (32768, 1, 1.0), (512, 36, 0.5), (1024, 18, 0.5), (2048, 9, 0.5),
           (4096, 4, 0.5), (8192, 2, 0.5), (16384, 1, 0.5))
#: Memories this shallow go to LUT RAM.
LUT_RAM_WORDS = 64


def bram36(depth, width):
    """Block RAM tiles (RAMB36E2 equivalents) a memory of ``depth`` words of ``width`` bits
    takes: the fewest of any one shape, none where it goes to LUT RAM."""
    if depth <= LUT_RAM_WORDS or not width:
        return 0.0
    return min(math.ceil(depth / d) * math.ceil(width / w) * tiles for d, w, tiles in _SHAPES)


def memory_bram36(config):
    """Block RAM tiles of the machine's memories, counted from their shapes: each PE's entry
    words and accumulators, and the shared input, vector, cell state and cell parameter
    memories (the activation tables are fitted, per cell lane and channel)."""
    mm = MemoryMap(config)
    k, lanes, c = config.block_columns, config.cell_lanes, config.channels
    accumulator_rows = 2 * GATES * config.cells_per_pe + config.projections_per_pe
    per_pe = (bram36(mm.entry_words, mm.entry_word_bits)
              + bram36(accumulator_rows, c * config.accumulator_bits))
    shared = (bram36(2 * config.input_depth // k, k * c * config.activation_bits)
              + bram36(config.vector_depth // k, k * c * config.activation_bits)
              + bram36(config.cell_depth // lanes, lanes * c * config.cell_bits)
              + bram36(config.cell_depth // lanes, lanes * mm.cell_parameter_bits))
    return config.pes * per_pe + shared


class ResourceModel:
    """A fitted model (see the module's documentation): ``coefficients[resource]`` per term,
    and the BRAM36 of the activation tables per cell lane and channel."""

    def __init__(self, coefficients, table_bram36, residuals=None, syntheses=None):
        self.coefficients = coefficients
        self.table_bram36 = table_bram36
        self.residuals = residuals or {}
        self.syntheses = syntheses or []

    def predict(self, config):
        """LUT, FF, DSP and BRAM36 of the system for a sized ``config``."""
        values = np.array(terms(config))
        predicted = {name: float(np.dot(values, [self.coefficients[name][t] for t in TERMS]))
                     for name in ("lut", "ff", "dsp")}
        predicted["bram36"] = (memory_bram36(config)
                               + self.table_bram36 * config.cell_lanes * config.channels)
        return predicted

    def to_dict(self):
        return {"coefficients": self.coefficients, "table_bram36": self.table_bram36,
                "residuals": self.residuals, "syntheses": self.syntheses}


def calibrate(board, synthesize, log=None):
    """Synthesise :data:`CALIBRATION` on ``board``'s hardware (its memory port and clock;
    ``synthesize(config, log)`` gives a :class:`~ese.boards.estimate.Synthesis`) and fit the
    model; returns it, with each machine's relative error (``residuals``)."""
    from ..sw.contract.config import Config
    configs = [board.hardware(Config(pes=p, block_columns=k, cell_lanes=lanes, channels=c,
                                     entries_per_read=e, **CALIBRATION_MEMORIES))
               for p, k, lanes, c, e in CALIBRATION]
    runs = [synthesize(config, log) for config in configs]
    matrix = np.array([terms(config) for config in configs])
    coefficients = {}
    for name in ("lut", "ff", "dsp"):
        values = np.array([getattr(run.resources, name) for run in runs], dtype=float)
        solution = np.linalg.lstsq(matrix, values, rcond=None)[0]
        coefficients[name] = dict(zip(TERMS, solution.round(3).tolist()))
    # The activation tables' tiles: what the memories' shapes do not account for, per cell
    # lane and channel (least squares through the origin).
    lanes = np.array([config.cell_lanes * config.channels for config in configs], dtype=float)
    rest = np.array([run.resources.bram36 - memory_bram36(config)
                     for run, config in zip(runs, configs)])
    table = float(round(np.dot(lanes, rest) / np.dot(lanes, lanes), 3))
    model = ResourceModel(coefficients, table)
    residuals = {}
    for run, config in zip(runs, configs):
        predicted = model.predict(config)
        residuals[f"{config.pes}x{config.block_columns}x{config.cell_lanes}x"
                  f"{config.channels}x{config.entries_per_read}"] = {
            name: round(predicted[name] / getattr(run.resources, name) - 1, 4)
            if getattr(run.resources, name) else 0.0 for name in predicted}
    model.residuals = residuals
    model.syntheses = [{"pes": c.pes, "block_columns": c.block_columns,
                        "cell_lanes": c.cell_lanes, "channels": c.channels,
                        "entries_per_read": c.entries_per_read,
                        **{name: getattr(r.resources, name)
                           for name in ("lut", "ff", "dsp", "bram36")}}
                       for c, r in zip(configs, runs)]
    return model


def load_model(path=MODEL_PATH):
    """The committed model (``ese explore --calibrate`` writes it)."""
    values = json.loads(Path(path).read_text())
    return ResourceModel(values["coefficients"], values["table_bram36"],
                         values.get("residuals"), values.get("syntheses"))
