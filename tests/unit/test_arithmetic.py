# amaranth: UnusedElaboratable=no
"""The arithmetic contract: rounding, saturation, tables, the cell update, and Config."""

import numpy as np
import pytest

import ese
from ese.sw.contract.arithmetic import (
    FixedFormat,
    cell_update,
    dequantize,
    quantize,
    requantize,
    round_shift,
    saturate,
    sigmoid_table,
    tanh_table,
)


def test_round_shift_rounds_to_nearest_with_ties_up():
    values = np.array([3, -3, 5, -5, 6, -6, 1, -1, 2, -2])
    # 1.5 -> 2, -1.5 -> -1, 2.5 -> 3, -2.5 -> -2, 3 -> 3, -3 -> -3, .5 -> 1, -.5 -> 0, 1, -1
    assert round_shift(values, 1).tolist() == [2, -1, 3, -2, 3, -3, 1, 0, 1, -1]
    assert round_shift(np.array([5, 6, 7, -5, -6, -7]), 2).tolist() == [1, 2, 2, -1, -1, -2]
    assert round_shift(np.array([3, -3]), -2).tolist() == [12, -12]
    assert round_shift(7, 0) == 7


def test_saturate_clamps_instead_of_wrapping():
    assert saturate(np.array([200, -200, 127, -128, 5]), 8).tolist() == [127, -128, 127, -128, 5]
    assert saturate(1 << 40, 16) == 32767


def test_requantize_rounds_then_saturates():
    fmt = FixedFormat(16, 12)
    # 1.0 with 22 fraction bits -> 4096; 100.0 saturates to the largest code.
    assert requantize(np.array([1 << 22, 100 << 22, -(100 << 22)]), 22, fmt).tolist() == \
        [4096, 32767, -32768]


def test_quantize_counts_saturated_values():
    fmt = FixedFormat(12, 10)
    codes, saturated = quantize([0.5, -0.25, 3.0, -5.0, 1.999], fmt)
    assert codes.tolist() == [512, -256, 2047, -2048, 2047]
    assert saturated == 2
    assert dequantize(codes, fmt)[0] == 0.5


@pytest.mark.parametrize("make, function", [(sigmoid_table, lambda x: 1 / (1 + np.exp(-x))),
                                            (tanh_table, np.tanh)])
def test_tables_follow_the_function_within_one_lsb_everywhere(make, function):
    config = ese.Config()
    table = make(config)
    codes = np.arange(-32768, 32768)
    values = table.lookup(codes)
    error = np.abs(values / 4096 - function(codes / 4096))
    assert error.max() < 1 / 4096
    assert np.all(np.diff(values) >= 0), "the table must be monotonic"


def test_tables_are_exact_at_zero():
    config = ese.Config()
    assert sigmoid_table(config).lookup(np.array([0]))[0] == 2048
    assert tanh_table(config).lookup(np.array([0]))[0] == 0


def test_cell_update_agrees_with_float_lstm_equations():
    config = ese.Config()
    rng = np.random.default_rng(3)
    cells = 500
    gates_real = rng.normal(scale=2.0, size=(4, cells))
    bias_real = rng.normal(scale=0.5, size=(4, cells))
    peep_real = rng.normal(scale=0.3, size=(3, cells))
    cell_real = rng.normal(scale=2.0, size=cells)
    gates = np.rint(gates_real * 2.0 ** config.product_frac_bits).astype(np.int64)
    bias, _ = quantize(bias_real, config.bias_format)
    peep, _ = quantize(peep_real, config.weight_format)
    cell, _ = quantize(cell_real, config.cell_format)
    new_cell, output = cell_update(config, gates, bias, peep, cell)

    sig = lambda x: 1 / (1 + np.exp(-x))
    b = dequantize(bias, config.bias_format)
    p = dequantize(peep, config.weight_format)
    c = dequantize(cell, config.cell_format)
    i = sig(gates_real[0] + b[0] + p[0] * c)
    f = sig(gates_real[1] + b[1] + p[1] * c)
    g = np.tanh(gates_real[2] + b[2])
    c2 = f * c + i * g
    o = sig(gates_real[3] + b[3] + p[2] * c2)
    m = o * np.tanh(c2)
    assert np.abs(dequantize(new_cell, config.cell_format) - c2).max() < 4e-3
    assert np.abs(dequantize(output, config.activation_format) - m).max() < 4e-3


def test_cell_state_saturates_rather_than_wraps():
    config = ese.Config()
    cells = 4
    big = np.full((4, cells), 30 << config.product_frac_bits)   # every gate fully on
    limit = config.cell_format.max_code
    cell = np.full(cells, limit)
    new_cell, _ = cell_update(config, big, np.zeros((4, cells), dtype=np.int64),
                              np.zeros((3, cells), dtype=np.int64), cell)
    assert np.all(new_cell == limit)


class TestConfig:
    def test_defaults_are_ese(self):
        config = ese.Config()
        assert (config.weight_bits, config.index_bits, config.activation_bits) == (12, 4, 16)
        assert config.pes == 32 and config.channels == 1

    @pytest.mark.parametrize("changes, message", [
        ({"pes": 6}, "power of two"),
        ({"pes": 0}, "pes"),
        ({"weight_frac_bits": 12}, "weight_frac_bits"),
        ({"cell_frac_bits": 13}, "cell_frac_bits"),
        ({"accumulator_bits": 20}, "accumulator_bits"),
        ({"table_index_bits": 16}, "table_index_bits"),
        ({"entry_depth": 30}, "multiple of entries_per_read"),
        ({"pointer_depth": 31}, "even"),
        ({"entries_per_read": 3}, "power of two"),
        ({"pes": 4.0}, "integer"),
    ])
    def test_bad_parameters_name_the_problem(self, changes, message):
        with pytest.raises(ese.ConfigError, match=message):
            ese.Config(**changes)

    def test_round_trip_and_sizing(self):
        config = ese.Config(pes=8)
        assert ese.Config.from_dict(config.to_dict()) == config
        sized = config.sized_for({"max_layers": 3, "input_depth": 10, "pointer_depth": 100,
                                  "entry_depth": 17, "cells_per_pe": 12, "projections_per_pe": 1,
                                  "cell_depth": 5, "vector_depth": 64})
        assert sized.pointer_depth == 128 and sized.entry_depth == 32 and sized.max_layers == 4
        assert sized.vector_depth == 64 and sized.cell_depth == 16
        with pytest.raises(ese.CapacityError, match="entry_depth"):
            ese.Config(entry_depth=16).sized_for({**sized.capacities, "entry_depth": 17})

    def test_unsized_config_cannot_make_hardware(self):
        from ese.hw.accelerator import LSTMAccelerator
        with pytest.raises(ese.ConfigError, match="capacit|compile"):
            LSTMAccelerator(ese.Config(pes=4))
