"""The software side: converters, pruning, quantization, encoding and the golden model."""

import numpy as np
import pytest
import torch
from torch import nn

import ese
from ese.sw.compiler.converters import describe
from ese.sw.compiler.pruning import LoadBalancedUnstructured, prune_module
from ese.sw.compiler.quantization import quantize_model
from ese.sw.contract.memory_map import LoadTarget
from ese.sw.contract.placement import Placement
from ese.sw.runtime.encoding import decode_image, encode_columns, encode_model, entry_words

from helpers import FLOAT_TOLERANCE, frames

# Converters.

def test_lstm_description_matches_the_module():
    module = nn.LSTM(7, 10, num_layers=2, proj_size=4)
    description = describe(module)
    assert [layer.inputs for layer in description.layers] == [7, 4]
    assert description.layers[1].projection.shape == (4, 10)
    np.testing.assert_allclose(description.layers[0].bias,
                               (module.bias_ih_l0 + module.bias_hh_l0).detach().numpy(),
                               rtol=1e-6)
    assert description.layers[0].peephole is None


@pytest.mark.parametrize("module", [
    nn.LSTM(6, 9, batch_first=True),
    nn.LSTM(6, 9, bias=False, num_layers=2),
    nn.LSTMCell(6, 9),
    ese.PeepholeLSTM(6, 9, proj_size=5, num_layers=2),
])
def test_predict_is_close_to_the_float_module(module):
    program = ese.compile(module, ese.Config(pes=4))
    x = frames(40, 6)
    assert np.abs(program.predict(x) - program.float_reference(x)).max() < FLOAT_TOLERANCE


@pytest.mark.parametrize("module, message", [
    (nn.Linear(4, 8), "Linear is not supported"),
    (nn.RNN(4, 8, nonlinearity="relu"), "nonlinearity='relu'"),
])
def test_unsupported_modules_name_what_is_supported(module, message):
    with pytest.raises(ese.UnsupportedModelError, match=message) as error:
        ese.compile(module, ese.Config(pes=4))
    assert all(name in str(error.value) for name in ("torch.nn.LSTMCell", "ese.PeepholeLSTM",
                                                      "torch.nn.GRU", "torch.nn.GRUCell"))


def test_an_object_of_no_front_end_is_refused_naming_the_front_ends():
    with pytest.raises(ese.UnsupportedModelError, match="not a builtins.int") as error:
        ese.compile(42, ese.Config(pes=4))
    assert all(name in str(error.value) for name in ("ONNX", "TorchScript", "torch.export",
                                                      "state_dict", "PyTorch module"))
    with pytest.raises(ese.UnsupportedModelError, match="no such model file"):
        ese.compile("no/such/model.pt", ese.Config(pes=4))


def _with_parameter(name, value):
    module = nn.LSTM(4, 8)
    setattr(module, name, nn.Parameter(value, requires_grad=False))
    return module


@pytest.mark.parametrize("module, message", [
    (nn.LSTM(4, 8, num_layers=2, dropout=0.5), "training mode with dropout=0.5.*eval"),
    (nn.LSTM(4, 8, device="meta"), "meta device"),
    (nn.LSTMCell(0, 3), "input_size=0"),
    (_with_parameter("weight_ih_l0", torch.zeros(0, 4)), r"non-empty.*shape \(0, 4\)"),
    (_with_parameter("weight_ih_l0", torch.zeros(32, 4, dtype=torch.int32)), "dtype"),
    (_with_parameter("weight_hh_l0", torch.zeros(32, 8, dtype=torch.complex64)), "dtype"),
    (_with_parameter("weight_hh_l0", torch.full((32, 8), float("nan"))), "NaN or infinite"),
    (_with_parameter("bias_ih_l0", torch.full((32,), float("inf"))), "NaN or infinite"),
])
def test_unsupported_options_and_values_are_refused_with_what_to_do(module, message):
    with pytest.raises(ese.UnsupportedModelError, match=message):
        ese.compile(module, ese.Config(pes=4))


def test_dropout_is_fine_once_in_eval_mode_and_half_precision_is_converted():
    module = nn.LSTM(4, 8, num_layers=2, dropout=0.5).eval()
    x = frames(6, 4)
    program = ese.compile(module, ese.Config(pes=4))
    assert np.abs(program.predict(x) - program.float_reference(x)).max() < FLOAT_TOLERANCE
    half = ese.compile(nn.LSTM(4, 8).half(), ese.Config(pes=4))
    assert half.model.layers[0].cells == 8


def test_compile_does_not_modify_the_module():
    module = nn.LSTM(8, 16)
    before = module.weight_ih_l0.detach().clone()
    ese.compile(module, ese.Config(pes=4), density=0.2)
    assert torch.equal(module.weight_ih_l0, before)


# PeepholeLSTM.

def test_peephole_lstm_follows_the_ese_equations():
    module = ese.PeepholeLSTM(3, 5, proj_size=2)
    x = torch.randn(4, 3)
    output, (y_n, c_n) = module(x)
    p = module.layer_parameters(0)
    y, c = torch.zeros(2), torch.zeros(5)
    for t in range(4):
        pre = p["input_weights"] @ x[t] + p["recurrent_weights"] @ y + p["bias"]
        i = torch.sigmoid(pre[0:5] + p["peephole"][0] * c)
        f = torch.sigmoid(pre[5:10] + p["peephole"][1] * c)
        g = torch.tanh(pre[10:15])
        c = f * c + i * g
        o = torch.sigmoid(pre[15:20] + p["peephole"][2] * c)
        y = p["projection"] @ (o * torch.tanh(c))
        torch.testing.assert_close(output[t], y)
    torch.testing.assert_close(c_n[0], c)


def test_peephole_lstm_trains_with_autograd():
    module = ese.PeepholeLSTM(4, 8, proj_size=3, batch_first=True)
    x, target = torch.randn(6, 10, 4), torch.randn(6, 10, 3)
    optimizer = torch.optim.Adam(module.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = ((module(x)[0] - target) ** 2).mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert module.weight_peephole_l0.grad is not None
    assert losses[-1] < 0.8 * losses[0]


# Pruning.

def test_load_balanced_pruning_gives_every_pe_the_same_work():
    module = nn.LSTM(20, 32, proj_size=16)
    prune_module(module, ese.sw.compiler.converters.converter_for(module).prunable(module), 0.25,
                 Placement(8))
    owner = Placement(8).owners(128, 32)
    counts = [int(torch.count_nonzero(module.weight_ih_l0[torch.as_tensor(owner == pe)]))
              for pe in range(8)]
    assert len(set(counts)) == 1 and counts[0] == round(0.25 * 16 * 20)
    assert int(torch.count_nonzero(module.weight_hr_l0)) == round(0.25 * 16 * 32)


@pytest.mark.parametrize("cells, pes", [(13, 8), (16, 4), (5, 2), (3, 1), (40, 32)])
def test_pruning_deals_rows_to_the_pes_that_the_encoding_puts_them_in(cells, pes):
    """Load balance is only real if pruning counts each row for the PE that will hold it:
    the gate rows are interleaved cell by cell (i, f, g, o of a cell in neighbouring PEs)."""
    placement = Placement(pes)
    owner = placement.owners(4 * cells, cells)
    for pe in range(pes):
        held = placement.gate_rows(cells, pe)
        assert sorted(held) == np.flatnonzero(owner == pe).tolist()
        if pes >= 4 and len(held):
            # A cell's four gates share a local row in four neighbouring PEs.
            cell = held[0] % cells
            assert [owner[g * cells + cell] for g in range(4)] \
                == [(4 * cell + g) % pes for g in range(4)]
    assert (Placement(4).owners(10, 10) == np.arange(10) % 4).all()   # a projection: in turn


def test_load_balanced_pruning_keeps_each_pes_largest_weights():
    weight = torch.randn(16, 10)
    mask = LoadBalancedUnstructured(0.3, Placement(4), 16).compute_mask(weight,
                                                                       torch.ones_like(weight))
    for pe in range(4):
        rows = weight[pe::4].abs().flatten()
        kept = mask[pe::4].flatten().bool()
        assert rows[kept].min() >= rows[~kept].max()


@pytest.mark.parametrize("banks, width", [(2, 1), (4, 1), (3, 1), (2, 2)])
def test_bank_balanced_pruning_gives_every_pe_and_column_bank_the_same_work(banks, width):
    """Column banks (the balance column lanes would need; bank-balanced sparsity, Cao et al.,
    FPGA 2019, balances each row's banks too): columns (or blocks of columns) c with the same
    c mod banks form a bank, and every (PE, bank) keeps its own largest share."""
    torch.manual_seed(1)
    weight = torch.randn(32, 24)
    with torch.no_grad():   # big columns in bank 0: balancing per PE alone favours it
        weight[:, ::banks * width] *= 10
    placement = Placement(4, width)
    mask = LoadBalancedUnstructured(0.25, placement, 32, column_banks=banks).compute_mask(
        weight, torch.ones_like(weight))
    kept = placement.blocked(mask.numpy()).any(axis=2)       # (rows, blocks)
    scores = np.abs(placement.blocked(weight.numpy())).sum(axis=2)
    blocks = kept.shape[1]
    for pe in range(4):
        for bank in range(banks):
            held = kept[pe::4, bank::banks]
            assert held.sum() == round(0.25 * held.size), (pe, bank)
            score = scores[pe::4, bank::banks]
            assert score[held].min() >= score[~held].max()
    # Per PE alone, the large bank takes more than its share.
    per_pe = LoadBalancedUnstructured(0.25, placement, 32).compute_mask(
        weight, torch.ones_like(weight))
    kept_per_pe = placement.blocked(per_pe.numpy()).any(axis=2)
    assert kept_per_pe[:, 0:blocks:banks].sum() > kept[:, 0:blocks:banks].sum()


def test_column_banks_are_refused_for_global_pruning_by_name():
    module = nn.LSTMCell(8, 8)
    matrices = ese.sw.compiler.converters.converter_for(module).prunable(module)
    with pytest.raises(ese.ConfigError, match="column banks.*global"):
        ese.sw.compiler.pruning.mask_matrices(matrices, 0.5, Placement(4), "global",
                                               column_banks=2)
    with pytest.raises(ese.ConfigError, match="column_banks must be a positive integer"):
        LoadBalancedUnstructured(0.5, Placement(4), 8, column_banks=0)


def test_global_pruning_uses_one_threshold():
    module = nn.LSTMCell(10, 12)
    original = module.weight_hh.detach().abs().clone()
    prune_module(module, ese.sw.compiler.converters.converter_for(module).prunable(module), 0.1,
                 Placement(4), kind="global")
    kept = module.weight_hh.detach() != 0
    assert int(kept.sum()) == round(0.1 * original.numel())
    assert original[kept].min() >= original[~kept].max()


def test_iterative_pruning_never_revives_weights():
    module = nn.LSTMCell(10, 16)
    LoadBalancedUnstructured.apply(module, "weight_ih", density=0.5, placement=Placement(4),
                                   rows_per_group=16)
    first = module.weight_ih_mask.clone()
    LoadBalancedUnstructured.apply(module, "weight_ih", density=0.2, placement=Placement(4),
                                   rows_per_group=16)
    second = module.weight_ih_mask
    assert torch.all(second <= first)
    assert int(second.sum()) == round(0.2 * 640)


def test_balanced_pruning_beats_global_on_the_worst_pe():
    torch.manual_seed(0)
    module = nn.LSTM(64, 128, proj_size=64)
    with torch.no_grad():   # rows of very different magnitudes make global pruning uneven
        module.weight_hh_l0.mul_(torch.linspace(0.1, 3.0, 512)[:, None])
    balanced = ese.compile(module, ese.Config(pes=8), density=0.1, pruning="balanced")
    uneven = ese.compile(module, ese.Config(pes=8), density=0.1, pruning="global")
    assert balanced.image.real_entries_per_pe.max() < uneven.image.real_entries_per_pe.max()
    spread = balanced.image.real_entries_per_pe
    assert spread.max() - spread.min() <= 2   # rounding only


def test_density_outside_the_unit_interval_is_refused():
    with pytest.raises(ese.ConfigError, match="density"):
        ese.compile(nn.LSTMCell(4, 4), ese.Config(pes=4), density=1.5)


# Quantization.

def test_saturated_weights_are_counted():
    # With the configured formats (ESE's fixed Q1.10), weights beyond +-2 saturate and are
    # counted; chosen from the weights, W_x's format widens to hold them (Q7.4) and nothing
    # saturates.
    module = nn.LSTMCell(4, 4)
    with torch.no_grad():
        module.weight_ih[0, 0] = 100.0
        module.weight_ih[1, 1] = -100.0
    program = ese.compile(module, ese.Config(pes=4), formats="configured")
    assert program.report.saturated == {"layer0.input_weights": 2}
    assert program.summary()["saturated"] == 2
    chosen = ese.compile(module, ese.Config(pes=4))
    assert chosen.report.saturated == {}
    assert chosen.model.layers[0].formats.input_weights == 6
    assert chosen.summary()["formats"][0]["input_weights"] == "Q7.4 (12-bit signed)"
    assert chosen.summary()["formats"][0]["recurrent_weights"] == "Q1.10 (12-bit signed)"


def test_accumulators_that_could_overflow_are_refused():
    module = nn.LSTM(200, 8)
    with pytest.raises(ese.CapacityError, match="accumulator_bits"):
        ese.compile(module, ese.Config(pes=4, accumulator_bits=29))


# Encoding.

def test_column_encoding_uses_relative_indices_and_padding():
    config = ese.Config(pes=1)
    local = np.zeros((40, 3), dtype=np.int64)
    local[[2, 3, 37], 0] = [5, -6, 7]     # gaps of 2, 0 and 33 zero rows
    local[16, 2] = 1                      # column 1 is empty; gap 16 needs one padding entry
    entries, counts, padding = encode_columns(local, config)
    assert counts.tolist() == [5, 0, 2]
    assert padding == 3
    # (run, weight): a padding entry skips 16 rows with weight zero.
    assert entries.tolist() == [[2, 5], [0, -6], [15, 0], [15, 0], [1, 7], [15, 0], [0, 1]]
    # In memory, the weight in the low 12 bits and the run above: four to a word.
    assert entry_words(entries, config)[0] == (5 | 2 << 12) | ((-6 & 0xFFF) << 16) \
        | (15 << 12 << 32) | (15 << 12 << 48)


def test_block_entries_hold_a_rows_weights_in_neighbouring_columns():
    """With blocks of four columns, a row with a weight anywhere in a block takes an entry of
    its four weights (zeros too); the segment's last block is padded with zero columns; a
    block of no weights costs nothing."""
    config = ese.Config(pes=1, block_columns=4)
    local = np.zeros((40, 6), dtype=np.int64)
    local[3, 0] = 5
    local[3, 2] = -1
    local[30, 3] = 9                      # a run of 26 rows: one padding entry
    local[1, 5] = 2                       # the second block: columns 4, 5 and two of padding
    entries, counts, padding = encode_columns(local, config)
    assert counts.tolist() == [3, 1] and padding == 1
    assert entries.tolist() == [[3, 5, 0, -1, 0], [15, 0, 0, 0, 0], [10, 0, 0, 0, 9],
                                [1, 0, 2, 0, 0]]
    word = entry_words(entries, config)[0]
    assert word & ((1 << config.entry_bits) - 1) == 5 | (0xFFF << 24) | (3 << 48)


def test_encoding_round_trips_through_the_image(tmp_path):
    module = ese.PeepholeLSTM(9, 23, proj_size=7, num_layers=2)
    program = ese.compile(module, ese.Config(pes=4), density=0.15)
    decoded = decode_image(program.image)
    assert decoded.equals(program.model)


def test_rows_beyond_a_multiple_of_the_pe_count_are_padded_not_refused():
    program = ese.compile(nn.LSTM(5, 13, proj_size=3), ese.Config(pes=8), density=0.5)
    assert program.image.pointers.shape[0] == 8
    x = frames(10, 5)
    assert np.abs(program.predict(x) - program.float_reference(x)).max() < FLOAT_TOLERANCE


def test_load_stream_is_a_sequence_of_records():
    program = ese.compile(nn.LSTMCell(4, 6), ese.Config(pes=2))
    seen = [(target, pe) for target, pe, *_ in _records(program)]
    assert seen == [(LoadTarget.POINTERS, 0), (LoadTarget.ENTRIES, 0), (LoadTarget.POINTERS, 1),
                    (LoadTarget.ENTRIES, 1), (LoadTarget.CELL_PARAMETERS, 0),
                    (LoadTarget.LAYER_DESCRIPTORS, 0)]



def _records(program):
    """``(target, pe, address, first word of the elements, elements as words)`` of the load
    stream."""
    words = program.image.load_words().tolist()
    mm = program.image.memory_map
    position, records = 0, []
    while position < len(words):
        target, pe, address, count = (words[position] & 0xFF, words[position] >> 8,
                                      words[position + 1], words[position + 2])
        size = count * -(-mm.element_bits(target) // 32)
        records.append((LoadTarget(target), pe, address, position + 3,
                        words[position + 3:position + 3 + size]))
        position += 3 + size
    assert position == len(words)
    return records


def test_streamed_load_stream_aligns_each_section_and_describes_it():
    """In a streamed configuration each PE's entries are two beat-aligned records (the first
    layer's input columns, the rest), and the STREAMS record says where they are: reading the
    beats it names gives back exactly the PE's entry words."""
    config = ese.Config(pes=4, stream_window=16, memory_data_bits=256)
    program = ese.compile(nn.LSTM(10, 12, proj_size=6), config, density=0.6)
    mm = program.image.memory_map
    words = program.image.load_words()
    records = _records(program)
    assert {target for target, *_ in records} >= {LoadTarget.PADDING, LoadTarget.STREAMS}
    (table,) = [elements for target, *_, elements in records if target == LoadTarget.STREAMS]
    per_element = mm.stream_bits // 32
    from ese.sw.contract.memory_map import unpack_fields
    beat_words = mm.load_words_per_beat
    for pe in range(config.pes):
        element = sum(w << (32 * i) for i, w in
                      enumerate(table[pe * per_element:(pe + 1) * per_element]))
        section = unpack_fields(element, mm.stream_fields)
        entry_words = program.image.entry_words(pe)
        filler_words, critical_first, total = program.image.stream_split(pe)
        for name, first, end in (("filler", 0, filler_words),
                                 ("critical", critical_first, total)):
            start = section[f"{name}_offset"] * beat_words
            beats = section[f"{name}_beats"]
            assert beats == -(-(end - first) // mm.words_per_beat)
            stored = words[start:start + 2 * (end - first)].astype(np.uint64)
            assert [int(lo) | int(hi) << 32 for lo, hi in zip(stored[0::2], stored[1::2])] \
                == entry_words[first:end]
        assert section["critical_first"] == critical_first
        # Every first-layer input column lies in the filler's section, every other after it.
        inputs = program.model.layers[0].inputs
        assert program.image.pointers[pe][inputs] <= filler_words * config.entries_per_read
        assert program.image.pointers[pe][inputs] >= critical_first * config.entries_per_read


def test_streamed_configurations_check_the_memory_port_and_window():
    with pytest.raises(ese.ConfigError, match="power of two"):
        ese.Config(stream_window=24, memory_data_bits=256)
    with pytest.raises(ese.ConfigError, match="at least two memory beats"):
        ese.Config(stream_window=4, memory_data_bits=256)
    with pytest.raises(ese.ConfigError, match="whole entry words in a memory beat"):
        ese.Config(stream_window=16, memory_data_bits=32)


def test_streamed_hardware_is_simulated_as_the_whole_system():
    program = ese.compile(nn.LSTMCell(4, 6), ese.Config(pes=2, stream_window=16,
                                                        memory_data_bits=256))
    with pytest.raises(ese.InputError, match="whole-system simulation"):
        program.simulate(frames(2, 4))


# The golden model.

def test_golden_model_is_integer_exact_for_the_ese_sized_layer():
    """A dense-integer recomputation of one frame agrees with the sparse float64 path."""
    module = nn.LSTM(153, 1024, proj_size=512)
    program = ese.compile(module, ese.Config(pes=32), density=0.112)
    codes, _ = program.encode_inputs(frames(3, 153))
    outputs = program.predict_codes(codes)
    layer = program.model.layers[0]
    from ese.sw.contract.arithmetic import cell_update, project_output
    config = program.config
    align = layer.formats.alignments()
    y = np.zeros(512, dtype=np.int64)
    c = np.zeros(1024, dtype=np.int64)
    for t in range(3):
        gates = ((layer.input_weights @ codes[t]) << align["input_align"]) + (
            (layer.recurrent_weights @ y) << align["recurrent_align"])
        c, m = cell_update(config, gates.reshape(4, -1), layer.bias.reshape(4, -1),
                           layer.peephole, c, formats=layer.formats)
        y = project_output(config, (layer.projection @ m) << align["projection_align"],
                           layer.formats)
        assert np.array_equal(outputs[t], y)


def test_state_carries_across_frames_and_starts_at_zero():
    program = ese.compile(nn.LSTMCell(4, 6), ese.Config(pes=2))
    x = frames(6, 4)
    whole = program.predict(x)
    assert np.array_equal(program.predict(x[:3]), whole[:3])
    assert not np.array_equal(program.predict(x[3:]), whole[3:])


@pytest.mark.parametrize("bad, message", [
    (np.zeros(6), "2-D"),
    (np.zeros((3, 5)), "takes 6 inputs"),
    (np.full((2, 6), np.nan), "NaN"),
    (np.full((2, 6), np.inf), "infinite"),
    (np.zeros((0, 6)), "no input frames"),
    ([["a"] * 6], "real numbers"),
])
def test_bad_inputs_are_refused(bad, message):
    program = ese.compile(nn.LSTMCell(6, 4), ese.Config(pes=2))
    with pytest.raises(ese.InputError, match=message):
        program.predict(bad)


def test_inputs_beyond_the_activation_range_saturate():
    program = ese.compile(nn.LSTMCell(2, 4), ese.Config(pes=2))
    codes, saturated = program.encode_inputs(np.array([[100.0, -0.5]]))
    assert saturated == 1 and codes[0, 0] == program.config.activation_format.max_code


def test_quantize_model_reports_nonzeros():
    model, report = quantize_model(describe(nn.LSTMCell(3, 4)), ese.Config(pes=2))
    assert report.weights == 4 * 4 * 7 and report.nonzeros == model.nonzero_count()


def test_encode_model_sizes_the_capacities():
    program = ese.compile(nn.LSTM(10, 12, proj_size=5), ese.Config(pes=4))
    config = program.config
    assert config.is_sized
    assert config.pointer_depth >= 10 + 5 + 12 + 1
    assert config.vector_depth >= 10 + 5 + 12
    assert encode_model(program.model, config).config == config


def test_packed_fields_round_trip():
    from ese.sw.contract.memory_map import pack_fields, unpack_fields
    fields = [("a", 4, False), ("b", 12, True), ("c", 1, False)]
    values = {"a": 9, "b": -2000, "c": 1}
    assert unpack_fields(pack_fields(values, fields), fields) == values
    with pytest.raises(ValueError, match="does not fit"):
        pack_fields({"a": 16, "b": 0, "c": 0}, fields)
