"""Block entries (Config.block_columns): pruning, encoding, the image and the model's figures.

A sparse entry holds one row's weights in a block of neighbouring columns (Mao et al. 2017,
coarse-grained sparsity); load-balanced pruning keeps or drops whole blocks, the same number
in every PE; the encoding round-trips through the image; and the arithmetic is the golden
model's whatever the blocks, since accumulation is exact.
"""

import numpy as np
import pytest
import torch
from torch import nn

import ese
from ese.sw.compiler.converters import converter_for
from ese.sw.compiler.pruning import prune_module
from ese.sw.contract.errors import ConfigError, ImageError
from ese.sw.contract.placement import Placement
from ese.sw.runtime.encoding import decode_image

from helpers import FLOAT_TOLERANCE, frames

MODULES = {
    "lstm": lambda: nn.LSTM(13, 22),
    "lstmp-peephole-2-layers": lambda: ese.PeepholeLSTM(13, 22, proj_size=9, num_layers=2),
    "gru-2-layers": lambda: nn.GRU(13, 30, num_layers=2),
}


def _blocks_per_pe(weight, placement, rows_per_group, slots=None, rotated=False):
    """How many blocks with a non-zero weight each PE holds of a 2-D weight, and how many
    blocks it holds."""
    owner = placement.owners(weight.shape[0], rows_per_group, slots, rotated)
    blocked = placement.blocked(weight.detach().numpy()).any(axis=2)
    return ([int(blocked[owner == pe].sum()) for pe in range(placement.pes)],
            [blocked[owner == pe].size for pe in range(placement.pes)])


@pytest.mark.parametrize("width", [2, 4, 8])
@pytest.mark.parametrize("name", list(MODULES))
def test_balanced_pruning_keeps_whole_blocks_and_every_pe_the_same_number(name, width):
    module = MODULES[name]()
    placement = Placement(4, width)
    matrices = converter_for(module).prunable(module)
    prune_module(module, matrices, 0.25, placement)
    for matrix in matrices:
        weight = getattr(matrix.owner, matrix.name)
        kept, held = _blocks_per_pe(weight, placement, matrix.rows_per_group, matrix.slots,
                                    matrix.rotated)
        # Each PE keeps the density's share of the blocks it holds (the same number where
        # the PEs hold as many rows).
        assert kept == [round(0.25 * n) for n in held], (matrix.name, kept, held)
        # A block is kept whole or dropped whole: its weights are all non-zero or all zero
        # (these weights are random, so no kept weight is exactly zero).
        blocked = placement.blocked(weight.detach().numpy())
        kept = blocked.any(axis=2)
        real = placement.blocked(np.ones(weight.shape)).astype(bool)
        assert np.all((blocked != 0) == (kept[:, :, None] & real)), matrix.name


def test_global_pruning_keeps_the_largest_blocks_by_one_threshold():
    module = nn.LSTMCell(10, 12)
    placement = Placement(4, 4)
    original = module.weight_hh.detach().clone()
    prune_module(module, converter_for(module).prunable(module), 0.3, placement,
                 kind="global")
    scores = np.abs(placement.blocked(original.numpy())).sum(axis=2)
    kept = placement.blocked(module.weight_hh.detach().numpy()).any(axis=2)
    assert int(kept.sum()) == round(0.3 * kept.size)
    assert scores[kept].min() >= scores[~kept].max()


@pytest.mark.parametrize("width", [2, 8])
@pytest.mark.parametrize("name", list(MODULES))
def test_block_encoding_round_trips_and_computes_what_single_entries_do(name, width, tmp_path):
    """The same pruned module compiled for entries of one column and of a block: the same
    integer model, the same outputs, an image that saves and loads, and every PE's multiply
    cycles those of the blocks it holds."""
    module = MODULES[name]()
    prune_module(module, converter_for(module).prunable(module), 0.3, Placement(4, width))
    single = ese.compile(module, ese.Config(pes=4))
    program = ese.compile(module, ese.Config(pes=4, block_columns=width))
    assert decode_image(program.image).equals(program.model)
    assert program.model.equals(single.model)
    x = frames(12, 13)
    assert np.array_equal(program.predict(x), single.predict(x))
    assert np.abs(program.predict(x) - program.float_reference(x)).max() < FLOAT_TOLERANCE
    path = tmp_path / "blocks.ese"
    program.save(path)
    loaded = ese.load(path)
    assert loaded.config.block_columns == width
    assert np.array_equal(loaded.predict(x), program.predict(x))
    # A PE's multiply cycles (its real entries) are the blocks with a weight it holds.
    placement = Placement(4, width)
    held = np.zeros(4, dtype=np.int64)
    for layer in program.model.layers:
        for pe in range(4):
            rows = placement.gate_rows(layer.cells, pe, layer.is_gru)
            matrices = [layer.input_weights[rows], layer.recurrent_weights[rows]]
            if layer.proj:
                matrices.append(layer.projection[placement.projection_rows(layer.proj, pe)])
            held[pe] += sum(int(placement.blocked(m).any(axis=2).sum()) for m in matrices)
    assert program.image.real_entries_per_pe.tolist() == held.tolist()


def test_a_segment_pads_to_whole_blocks_in_the_column_space_and_the_vectors():
    program = ese.compile(ese.PeepholeLSTM(13, 22, proj_size=9, num_layers=2),
                          ese.Config(pes=4, block_columns=8), density=0.3)
    first, second = program.image.descriptors
    # 13 inputs, 9 recurrent, 22 cells: 2 + 2 + 3 blocks; the second layer's inputs are 9.
    assert second["column_base"] == 2 + 2 + 3
    assert program.image.pointers.shape == (4, 2 + 2 + 3 + 2 + 2 + 3 + 1)
    # Every vector starts on a word of eight.
    bases = [d[name] for d in (first, second)
             for name in ("input_base", "recurrent_base", "cell_output_base")]
    assert all(base % 8 == 0 for base in bases)
    assert program.config.input_depth % 8 == 0 and program.config.vector_depth % 8 == 0


def _corrupt(program, change):
    image = program.image
    entries = [e.copy() for e in image.entries]
    change(entries)
    image.entries = entries
    return image


def test_an_entry_of_zero_weights_that_is_not_padding_is_refused():
    program = ese.compile(nn.LSTM(9, 12), ese.Config(pes=2, block_columns=4), density=0.4)
    first_real = int(np.flatnonzero(program.image.entries[0][:, 1:].any(axis=1))[0])

    def zero(entries):
        entries[0][first_real, 1:] = 0
        entries[0][first_real, 0] = 0
    with pytest.raises(ImageError, match="zero weights that is not a padding entry"):
        decode_image(_corrupt(program, zero))


def test_a_weight_in_the_columns_that_pad_a_block_is_refused():
    """9 inputs in blocks of four: the third block's last three columns are padding."""
    program = ese.compile(nn.LSTM(9, 12), ese.Config(pes=2, block_columns=4), density=1.0)
    pointer = program.image.pointers[0]
    last_input_block = int(pointer[2])            # the third block's first entry

    def fill(entries):
        entries[0][last_input_block, 2] = 1
    with pytest.raises(ImageError, match="columns that pad its last block"):
        decode_image(_corrupt(program, fill))


def test_block_entries_refuse_streaming_and_delta_units_by_name():
    with pytest.raises(ConfigError, match="streamed from off-chip memory"):
        ese.Config(block_columns=4, stream_window=64, memory_data_bits=512)
    with pytest.raises(ConfigError, match="delta units"):
        ese.Config(block_columns=4, delta=1)
    with pytest.raises(ConfigError, match="power of two"):
        ese.Config(block_columns=3)


def test_the_model_counts_blocks_of_columns_as_the_broadcast_sends_them():
    """On a block machine the performance model's phases have a column per block, and its
    PEs' work is their blocks."""
    from ese.hw.timing import hardware_timing
    from ese.sw.compiler.performance import phase_demands, predict_performance
    torch.manual_seed(0)
    program = ese.compile(ese.PeepholeLSTM(13, 22, proj_size=9), ese.Config(pes=4,
                                                                          block_columns=4),
                          density=0.3)
    gates, projection = phase_demands(program.image)
    assert gates.columns == 4 + 3 and projection.columns == 6
    assert gates.macs.sum() + projection.macs.sum() == program.image.real_entries_per_pe.sum()
    prediction = predict_performance(program.image, hardware_timing(program.config))
    assert prediction.cycles_per_frame > 0


def test_the_explorers_figures_are_the_performance_models_for_the_machines_compiled(tmp_path):
    """ese explore's cycles per frame for the machines of a small LSTMP are the performance
    model's for each machine as compiled, on frames like the RTL's, within 2% (the model is
    held to the RTL's cycles, machine by machine, in tests/rtl/test_latency_machine.py)."""
    from ese.hw.timing import hardware_timing
    from ese.sw.compiler.performance import predict_performance
    from ese.sw.tools.explore import ExploreSettings, _compile, explore
    torch.manual_seed(0)
    path = tmp_path / "model.pt"
    torch.save(ese.PeepholeLSTM(13, 22, proj_size=9).state_dict(), path)
    settings = ExploreSettings(model=str(path), density=0.3, pes=(8,), block_columns=(4,),
                               cell_lanes=(1, 2), frames=10)
    report = explore(settings)
    assert [row["cell_lanes"] for row in report["machines"]] == [1, 2]
    for row in report["machines"]:
        fields = {name: row[name] for name in ("pes", "block_columns", "cell_lanes",
                                               "channels", "entries_per_read")}
        program = _compile(settings, fields)
        assert program.config.block_columns == 4
        x = frames(10, program.inputs, seed=9)
        trace = []
        program.predict_codes(program.encode_inputs(x)[0], trace=trace)
        prediction = predict_performance(program.image, hardware_timing(program.config), trace)
        assert abs(row["cycles_per_frame"] / prediction.cycles_per_frame - 1) < 0.02
