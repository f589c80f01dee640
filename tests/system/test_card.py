"""The card the user builds: the README's compile -> build -> run flow, simulated from the
build tree's own RTL and parameters.

``ese build`` writes the tree (the shell with its clock crossings and width converters, and
its block-design wrapper); ``ese run --transport sim --build-tree`` builds that Verilog in
Verilator and runs the real host driver against it through cocotb, every clock at its
frequency (XDMA's 250 MHz, the accelerator's and the memory controller's 200 MHz, out of
phase), XDMA-shaped 256-bit streams with tkeep and back-pressure, the DDR behind the
controller's 512-bit port with its 4-bit IDs (ese.sim.card_testbench). The outputs must equal
``ese predict``'s. 1, 2 and 3 channels make results of 18, 36 and 54 bytes, which are not
whole beats; 32 channels make words wider than a beat.
"""

import json

import cocotb
import numpy as np
import pytest
from cocotb.triggers import with_timeout

import ese
from ese.boards.adm_pcie_ku3 import ADM_PCIE_KU3
from ese.boards.vivado import write_build_tree
from ese.sim.runner import run_system
from ese.sim.system_testbench import save
from ese.sw.runtime.driver import DeviceError
from ese.sw.tools.cli import main


@pytest.fixture(scope="module")
def module_file(tmp_path_factory):
    import torch

    import ese
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "module.pt"
    torch.save(ese.PeepholeLSTM(13, 22, proj_size=9).state_dict(), path)
    return path


# One channel, a number of channels that is no power of two, and ESE's 32.
@pytest.mark.parametrize("channels", [1, 3, 32])
def test_the_readme_flow_runs_on_the_build_trees_rtl_and_equals_predict(module_file, tmp_path,
                                                                        channels, capsys):
    image, tree = tmp_path / "model.ese", tmp_path / "tree"
    assert main(["compile", str(module_file), "-o", str(image), "--pes", "4", "--density",
                 "0.3", "--channels", str(channels)]) == 0
    assert main(["build", "--board", "adm-pcie-ku3", "--image", str(image), "--out", str(tree),
                 "--no-vivado"]) == 0
    described = json.loads((tree / "config.json").read_text())
    assert described["config"]["memory_data_bits"] == 512
    assert described["clocks_mhz"] == {"pcie": 250.0, "accelerator": 200.0, "memory": 200.0}

    rng = np.random.default_rng(channels)
    sequences = {f"channel{c}": rng.normal(size=(int(rng.integers(2, 6)), 13))
                 for c in range(channels)}
    np.savez(tmp_path / "frames.npz", **sequences)
    assert main(["run", str(image), "-i", str(tmp_path / "frames.npz"), "-o",
                 str(tmp_path / "card.npz"), "--transport", "sim", "--build-tree", str(tree),
                 "--stalls", "0.2"]) == 0
    on_card = np.load(tmp_path / "card.npz")
    for name, sequence in sequences.items():
        np.save(tmp_path / "one.npy", sequence)
        assert main(["predict", str(image), "-i", str(tmp_path / "one.npy"), "-o",
                     str(tmp_path / "predicted.npy")]) == 0
        assert np.array_equal(on_card[f"{name}_0"], np.load(tmp_path / "predicted.npy")), name
    capsys.readouterr()


def test_build_tree_is_only_for_the_simulated_card(module_file, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((2, 13)))
    assert main(["run", "missing.ese", "-i", str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "y.npy"), "--build-tree", str(tmp_path)]) != 0
    assert "--transport sim" in capsys.readouterr().err


def test_soak_in_small_through_the_build_tree_with_resets(tmp_path):
    """ese soak --build-tree in small: frames of random sequences on two channels, runs cut
    short by resets at random points, every completed frame checked against the golden
    model (the 20,000-frame run is in reports/soak_card.json)."""
    from ese.sw.tools.soak import SoakSettings, run_soak
    report = run_soak(SoakSettings(frames=400, longest_sequence=60, build_tree=tmp_path / "tree",
                                   resets=3, seed=5))
    assert report.frames == 800 and report.resets == 3 and report.build_tree
    assert report.mismatched_frames == 0
    assert report.steps_out > report.frame_steps      # the runs cut short made steps too


@cocotb.test()
async def a_packet_that_is_not_whole_words_is_flagged(dut):
    """A frame step with one byte too many: the step runs (its whole words are the step), the
    shell drops the byte, and the card raises the stream_error flag, which the driver names."""
    from ese.sim.card_testbench import CardBench
    from ese.sim.system_testbench import open_job
    from ese.sw.contract.wire import pack_steps, word_bytes
    from ese.sw.runtime.steps import plan_steps
    job, settings = open_job()
    bench = CardBench(dut, settings["clocks_mhz"])
    await bench.start()
    limit = bench.cycles(settings["timeout_cycles"])
    program = await with_timeout(bench.driver.load(settings["image"]), *limit)
    plan = plan_steps(program, np.asarray(job["frames_0_0"])[:1], golden=False)
    step, = pack_steps(plan.codes, plan.starts, program.config.activation_bits)
    await bench.transport.send("frames", step + b"\x5a")
    result = await with_timeout(bench.transport.receive("results", None), *limit)
    assert len(result) == program.outputs * word_bytes(program.config.channels,
                                                       program.config.activation_bits)
    try:
        await bench.driver.check_errors()
    except DeviceError as error:
        assert error.flags == ("stream_error",), error.flags
    else:
        raise AssertionError("the dropped byte was not flagged")
    await save(bench, [[np.zeros((0, program.outputs))]])


def test_a_packet_that_is_not_whole_words_is_flagged(tmp_path):
    program = ese.compile(ese.PeepholeLSTM(13, 22, proj_size=9), ese.Config(pes=4),
                          density=0.3)
    tree = write_build_tree(ADM_PCIE_KU3, program.config, tmp_path / "tree")
    run_system(program, [np.zeros((1, 13))], tree=tree, module=__name__,
               testcase="a_packet_that_is_not_whole_words_is_flagged")
