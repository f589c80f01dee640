"""The ``ese`` command line: the demo, each subcommand, and one-line errors for bad input."""

import json

import numpy as np
import pytest
import torch

import ese
from ese.sw.tools.cli import main
from ese.sw.tools.demo import DemoSettings

from helpers import ese_command, frames


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "model.ese"
    ese.compile(ese.PeepholeLSTM(6, 10, proj_size=4), ese.Config(pes=2), density=0.5).save(path)
    return path


@pytest.mark.rtl
def test_demo_runs_bit_exact_and_reports():
    run = ese_command("demo", "--json", "--no-speech")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["bitexact"] and report["mismatches"] == 0
    defaults = DemoSettings()
    assert report["frames"] == defaults.frames and report["pes"] == defaults.pes
    assert 0 < report["density"] <= defaults.density + 0.01
    assert report["cycles_per_frame"] > 0
    assert "bit-exact" in run.stdout and "cycles per frame" in run.stdout


@pytest.mark.rtl
def test_demo_recognises_a_sentence_with_the_committed_model_on_the_rtl():
    """The committed phone recognizer (8 PEs, density 0.112) hears a short sentence that
    espeak-ng speaks in a test voice; the RTL's outputs equal the golden model's and decode
    to mostly the right phones."""
    run = ese_command("demo", "--json", "--frames", "2", "--sentence", "open the window")
    assert run.returncode == 0, run.stderr
    speech = json.loads(run.stdout.strip().splitlines()[-1])["speech"]
    assert speech["bitexact"] and speech["decode_equals_golden"]
    assert speech["reference_phones"] and speech["frames"] > 50
    # A sentence the model never heard: a few errors, far fewer than chance.
    assert speech["phone_error_rate"] < 40
    assert "recognised on the RTL" in run.stdout


@pytest.mark.rtl
def test_compile_info_predict_and_simulate(tmp_path):
    module = ese.PeepholeLSTM(40, 96, proj_size=48)     # the demo's shape: shares its build
    torch.save(module, tmp_path / "module.pt")      # a pickled module: --trust-pickle reads it
    out = tmp_path / "model.ese"
    assert main(["compile", str(tmp_path / "module.pt"), "-o", str(out), "--pes", "4",
                 "--density", "0.3", "--trust-pickle"]) == 0
    program = ese.load(out)
    assert program.summary()["pes"] == 4

    x = frames(5, 40)
    np.save(tmp_path / "x.npy", x)
    assert main(["predict", str(out), "-i", str(tmp_path / "x.npy"),
                 "-o", str(tmp_path / "y.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "y.npy"), program.predict(x))

    run = ese_command("simulate", out, "-i", tmp_path / "x.npy", "--json",
                      "-o", tmp_path / "rtl.npy")
    assert run.returncode == 0, run.stderr
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    assert figures["bitexact"] and figures["frames"] == 5
    assert np.array_equal(np.load(tmp_path / "rtl.npy"), program.predict(x))

    run = ese_command("info", out, "--json")
    assert json.loads(run.stdout)["summary"]["nonzeros"] == program.summary()["nonzeros"]


def test_compile_with_calibration_reports_the_formats(tmp_path, capsys):
    from torch import nn

    from helpers import rescaled, sequences
    torch.manual_seed(0)
    torch.save(rescaled(nn.LSTM(12, 20), 50).state_dict(), tmp_path / "module.pt")
    calibration = sequences(3, 30, 12, 50, seed=1)
    np.savez(tmp_path / "calibration.npz", *calibration)
    out = tmp_path / "model.ese"
    assert main(["compile", str(tmp_path / "module.pt"), "-o", str(out), "--pes", "4",
                 "--calibration", str(tmp_path / "calibration.npz")]) == 0
    printed = capsys.readouterr().out
    assert "input Q8.7" in printed and "input_weights Q-4.15" in printed
    assert "calibration: 90 frames, saturated: none" in printed
    assert ese.load(out).report.calibration["frames"] == 90
    # Without it the input keeps Q3.12, and predict says what saturated.
    assert main(["compile", str(tmp_path / "module.pt"), "-o", str(out), "--pes", "4"]) == 0
    np.save(tmp_path / "x.npy", calibration[0])
    assert main(["predict", str(out), "-i", str(tmp_path / "x.npy"),
                 "-o", str(tmp_path / "y.npy")]) == 0
    assert "beyond the input format Q3.12 (16-bit signed)" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning",
                            "ignore::torch.jit.TracerWarning")
def test_compile_an_onnx_model(tmp_path, capsys):
    from torch import nn
    torch.manual_seed(0)
    path = tmp_path / "model.onnx"
    torch.onnx.export(nn.LSTM(6, 10, num_layers=2).eval(), (torch.zeros(4, 1, 6),), path,
                      dynamo=False)
    out = tmp_path / "model.ese"
    assert main(["compile", str(path), "-o", str(out), "--pes", "2"]) == 0
    assert "ONNX LSTM /LSTM, /LSTM_1" in capsys.readouterr().out
    assert len(ese.load(out).model.layers) == 2
    assert main(["compile", str(path), "-o", str(out), "--pes", "2", "--node", "/LSTM"]) == 0
    assert len(ese.load(out).model.layers) == 1
    assert main(["compile", str(path), "-o", str(out), "--node", "missing"]) == 2
    assert "its recurrent nodes are /LSTM, /LSTM_1" in capsys.readouterr().err


def test_compile_delta_layers_and_info_shows_their_thresholds(tmp_path, capsys):
    import torch
    torch.manual_seed(0)
    torch.save(torch.nn.GRU(5, 8).state_dict(), tmp_path / "gru.pt")
    assert main(["compile", str(tmp_path / "gru.pt"), "-o", str(tmp_path / "gru.ese"),
                 "--pes", "2", "--delta", "0.05", "0.1"]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "gru.ese")]) == 0
    assert "(delta: thresholds x 204 LSB, h 409 LSB)" in capsys.readouterr().out
    program = ese.load(tmp_path / "gru.ese")
    assert program.config.delta == 1 and program.model.has_delta


def test_verilog_is_written(image, tmp_path, capsys):
    assert main(["verilog", str(image), "-o", str(tmp_path / "top.v")]) == 0
    assert "module ese_accelerator" in (tmp_path / "top.v").read_text()


@pytest.mark.parametrize("arguments, message", [
    (["info", "{tmp}/absent.ese"], "does not exist"),
    (["info", "{tmp}"], "is not a file"),
    (["info", "{tmp}/text.ese"], "not an ese weight image"),
    (["compile", "{tmp}/dict.pt", "-o", "{tmp}/x.ese"], "is not a state_dict"),
    (["compile", "{tmp}/text.ese", "-o", "{tmp}/x.ese"], "is neither an ONNX model nor"),
    (["predict", "{image}", "-i", "{tmp}/text.ese", "-o", "{tmp}/y.npy"], "not a .npy array"),
    (["predict", "{image}", "-i", "{tmp}/wide.npy", "-o", "{tmp}/y.npy"], "takes 6 inputs"),
])
def test_bad_input_gives_one_line_and_status_2(arguments, message, image, tmp_path):
    (tmp_path / "text.ese").write_text("hello")
    torch.save({"not": "a module"}, tmp_path / "dict.pt")
    np.save(tmp_path / "wide.npy", np.zeros((3, 9)))
    run = ese_command(*(a.format(tmp=tmp_path, image=image) for a in arguments))
    assert run.returncode == 2
    assert message in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("option", [["--density", "2"], ["--pes", "0"], ["--stalls", "1.5"],
                                    ["--frames", "many"]])
def test_options_out_of_range_are_refused(option):
    run = ese_command("demo", *option)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "expected" in run.stderr


def _bad_files(tmp_path, image):
    """Files of the wrong kind for every argument that takes a file."""
    import wave
    with wave.open(str(tmp_path / "speech.wav"), "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(16000)
        audio.writeframes(bytes(3200))
    np.save(tmp_path / "frames.npy", frames(4, 6))
    np.save(tmp_path / "nan.npy", np.full((2, 6), np.nan))
    np.savez(tmp_path / "two.npz", channel0=frames(2, 6), channel1=frames(2, 6))
    np.savez(tmp_path / "misnamed.npz", channel0_x=frames(2, 6))
    (tmp_path / "empty.npy").write_bytes(b"")


@pytest.mark.parametrize("arguments, message", [
    (["compile", "{tmp}/speech.wav", "-o", "{tmp}/x.ese"], "is neither an ONNX model nor"),
    (["info", "{tmp}/speech.wav"], "not an ese weight image"),
    (["verilog", "{tmp}/frames.npy", "-o", "{tmp}/x.v"], "not an ese weight image"),
    (["predict", "{image}", "-i", "{tmp}/speech.wav", "-o", "{tmp}/y.npy"], "not a .npy"),
    (["predict", "{image}", "-i", "{tmp}/empty.npy", "-o", "{tmp}/y.npy"], "not a .npy"),
    (["predict", "{image}", "-i", "{tmp}/two.npz", "-o", "{tmp}/y.npy"], ".npz archive"),
    (["predict", "{image}", "-i", "{tmp}/nan.npy", "-o", "{tmp}/y.npy"], "NaN"),
    (["predict", "{image}", "-i", "{tmp}/frames.npy", "-o", "{tmp}/no/such/dir/y.npy"],
     "No such file or directory"),
    (["predict", "{image}", "-i", "{tmp}", "-o", "{tmp}/y.npy"], "is not a file"),
    (["run", "{image}", "-i", "{tmp}/misnamed.npz", "--transport", "sim", "-o", "{tmp}/y.npz"],
     "not named channel"),
    (["corpus", "{tmp}/frames.npy"], "frames.npy"),
    (["demo", "--seed", "-1"], "non-negative integer seed"),
    (["bench", "--row-spread", "-1"], "a spread in [0, 4)"),
    (["simulate", "{image}", "--frames", "0"], "positive integer"),
    (["compile", "{tmp}/speech.wav", "-o", "{tmp}/x.ese", "--stream-window", "3"], "window"),
    (["speech-eval", "--rtl-utterances", "-2"], "non-negative integer"),
    (["compile", "{tmp}/speech.wav", "-o", "{tmp}/x.ese", "--delta", "0.1"],
     "2 or 3 thresholds"),
    (["compile", "{tmp}/speech.wav", "-o", "{tmp}/x.ese", "--delta", "0.1", "-1"],
     "a threshold in [0, 16)"),
    (["soak", "--delta", "0.1", "16"], "a threshold in [0, 16)"),
    (["estimate", "--pes", "zero"], "positive integer"),
    (["no-such-command"], "invalid choice"),
])
def test_wrong_files_and_options_give_one_line_and_status_2(arguments, message, image, tmp_path,
                                                            capsys):
    _bad_files(tmp_path, image)
    try:
        status = main([a.format(tmp=tmp_path, image=image) for a in arguments])
    except SystemExit as exit:          # argparse's own refusals
        status = exit.code
    error = capsys.readouterr().err
    assert status == 2, error
    assert message in error
    assert "Traceback" not in error and len(error.strip().splitlines()) == 1, error


def test_saturated_inputs_are_counted(image, tmp_path, capsys):
    x = frames(4, 6)
    x[0, :3] = 100.0
    x[1, 0] = -100.0
    np.save(tmp_path / "loud.npy", x)
    assert main(["predict", str(image), "-i", str(tmp_path / "loud.npy"),
                 "-o", str(tmp_path / "y.npy")]) == 0
    assert "note: 4 of 24 input values lay beyond the input format" in capsys.readouterr().err


def test_an_internal_error_is_one_line_unless_asked_for(monkeypatch, image, capsys):
    import ese.sw.runtime.program as program_module

    def broken(*args, **kwargs):
        raise RuntimeError("simulated bug")
    monkeypatch.setattr(program_module, "load", broken)
    assert main(["info", str(image)]) == 3
    error = capsys.readouterr().err
    assert "internal error: RuntimeError: simulated bug" in error and "ESE_TRACEBACK" in error
    monkeypatch.setenv("ESE_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="simulated bug"):
        main(["info", str(image)])


def test_non_power_of_two_pe_count_is_a_clean_error(tmp_path):
    torch.save(torch.nn.LSTMCell(3, 4).state_dict(), tmp_path / "cell.pt")
    run = ese_command("compile", tmp_path / "cell.pt", "-o", tmp_path / "x.ese", "--pes", "3")
    assert run.returncode == 2 and "power of two" in run.stderr


@pytest.mark.rtl
def test_bench_reports_every_figure_for_a_small_layer():
    """`ese bench` end to end on a small layer (the demo's shape: it shares the demo's build)."""
    run = ese_command("bench", "--inputs", 40, "--cells", 96, "--proj", 48, "--pes", 4,
                      "--density", 0.3, "--frames", 8, "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    for name in ("pes", "channels", "inputs", "cells", "proj", "density", "nonzeros",
                 "padding_entries", "bound_cycles", "cycles_per_frame", "latency_us",
                 "utilization", "model_cycles_per_frame", "gops", "cpu_dense_us",
                 "cpu_sparse_us", "bitexact", "frame_latency_us",
                 "simulated_cycles_per_second", "verilator_build_seconds"):
        assert name in report, name
    assert report["bitexact"] and report["global"]["bitexact"]
    assert report["bound_cycles"] == report["nonzeros"] / 4
    assert abs(report["model_error"]) < 0.1
    assert report["latency_us"] == report["cycles_per_frame"] / report["clock_mhz"]
    assert report["load_balance_speedup"] > 0.9


@pytest.mark.rtl
def test_bench_runs_a_gru_with_pytorchs_own_gru_beside_it():
    """`ese bench --cell gru`: a GRU of the given size, against its bound, the model and
    PyTorch's CPU (its step dense and CSR, and nn.GRU's fused forward), all in one run."""
    run = ese_command("bench", "--cell", "gru", "--inputs", 40, "--cells", 96, "--pes", 4,
                      "--density", 0.3, "--frames", 8, "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["cell"] == "gru" and report["proj"] == 0
    assert report["bitexact"] and report["global"]["bitexact"]
    assert report["bound_cycles"] == report["nonzeros"] / 4
    assert abs(report["model_error"]) < 0.05
    assert report["cpu_module_us"] > 0 and "ese_latency_us" not in report
    assert report["utilization"] > 0.9


def test_explore_gives_the_front_and_the_smallest_machine_for_a_latency(tmp_path, capsys):
    """`ese explore` on a small LSTMP: every valid machine of the given parameters with the
    performance model's cycles and the resource model's resources, the Pareto front of
    latency against LUTs (each machine on it faster than the one before and smaller than
    every faster one), its plot, and the smallest machine meeting a latency: none faster is
    smaller."""
    torch.manual_seed(0)
    path = tmp_path / "model.pt"
    torch.save(ese.PeepholeLSTM(40, 96, proj_size=48).state_dict(), path)
    output = tmp_path / "explore.json"
    assert main(["explore", str(path), "--pes", "4", "8", "16", "--block-columns", "1", "4",
                 "--cell-lanes", "1", "2", "--density", "0.3", "--latency-us", "5",
                 "-o", str(output), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert json.loads(output.read_text()) == report
    assert report["command"].startswith("ese ")    # the command line that made the report
    assert output.with_suffix(".png").stat().st_size > 0
    machines = report["machines"]
    # Two lanes need eight PEs and blocks of two columns or more: 3 x 2 + 2 valid machines.
    assert len(machines) == 8
    assert {(m["pes"], m["block_columns"], m["cell_lanes"]) for m in machines} >= {
        (4, 1, 1), (16, 4, 2)}
    assert all(m["cycles_per_frame"] > 0 and m["lut"] > 0 for m in machines)
    front = report["pareto_front"]
    assert [m["latency_us"] for m in front] == sorted(m["latency_us"] for m in front)
    assert all(a["lut"] > b["lut"] for a, b in zip(front, front[1:]))
    for machine in machines:
        assert any(m["latency_us"] <= machine["latency_us"] and m["lut"] <= machine["lut"]
                   for m in front)
    chosen = report["chosen"]
    assert chosen["latency_us"] <= 5
    assert not any(m["latency_us"] <= 5 and m["lut"] < chosen["lut"] and m["fits"]
                   for m in machines)
    assert report["ese"] == {"latency_us": 82.7, "lut": 293_920}


def test_bench_model_only_projects_lock_step_channels(capsys):
    """`ese bench --model-only`: the analytical model for machines too big to simulate; a step
    of C channels costs one frame's cycles, but a column is skipped only where every
    channel's activation is zero, so more channels skip less: more multiplies per step."""
    reports = {}
    for channels in (1, 8):
        assert main(["bench", "--inputs", "40", "--cells", "96", "--proj", "48", "--pes", "4",
                     "--density", "0.3", "--channels", str(channels), "--model-only",
                     "--json"]) == 0
        reports[channels] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    one, eight = reports[1], reports[8]
    assert "model" in eight["measured_by"] and "bitexact" not in eight
    assert one["nonzeros"] == eight["nonzeros"]
    assert eight["effective_bound_cycles"] > one["effective_bound_cycles"]
    for report in (one, eight):
        assert report["model_cycles_per_frame"] >= report["effective_bound_cycles"] > 0
    step_seconds = eight["model_cycles_per_frame"] / eight["clock_mhz"] * 1e-6
    assert eight["frames_per_second"] == pytest.approx(8 / step_seconds)
    assert eight["gops"] == pytest.approx(2 * eight["nonzeros"] * 8 / step_seconds / 1e9)


def test_bench_delta_names_a_missing_recognizer_and_how_to_make_one(tmp_path):
    run = ese_command("bench", "--delta", "--recognizer", tmp_path / "absent")
    assert run.returncode != 0
    assert "absent.ese" in run.stderr and "--export PREFIX" in run.stderr


def test_the_committed_delta_recognizer_has_delta_layers_for_hardware_with_delta_units():
    """What `ese bench --delta` runs by default: the speech study's delta-tuned recognizer."""
    from ese.sw.speech import CompiledRecognizer
    from ese.sw.tools.delta_bench import DELTA_RECOGNIZER
    recognizer = CompiledRecognizer(DELTA_RECOGNIZER)
    assert recognizer.program.config.delta == 1
    assert all(layer.delta is not None for layer in recognizer.program.model.layers)


@pytest.mark.rtl
def test_bench_streams_weights_through_the_whole_system():
    """`ese bench --stream-window`: the same layer with its weights streamed from the DDR
    model (rings far smaller than the model) and on chip, both through the driver and the
    system RTL. With 8 PEs on a 64-bit memory port the streamed machine waits for the memory,
    and the model's memory bound predicts it; both runs are bit-exact."""
    run = ese_command("bench", "--inputs", 40, "--cells", 96, "--proj", 48, "--pes", 8,
                      "--density", 0.3, "--frames", 6, "--stream-window", 16,
                      "--memory-bits", 64, "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    streamed, resident = report["streamed"], report["resident"]
    assert streamed["bitexact"] and resident["bitexact"]
    assert streamed["entry_words_per_pe"] > 8 * streamed["on_chip_entry_words_per_pe"]
    assert streamed["model_limited_by"].startswith("off-chip memory")
    assert streamed["step_cycles"] > resident["step_cycles"]
    # Every step but the last streams the next step's input columns too, so the memory's
    # bound is the busy cycles per step (the first step's ring fill included), not the last.
    assert streamed["busy_cycles_per_step"] == pytest.approx(streamed["model_cycles_per_step"],
                                                             rel=0.02)


@pytest.mark.rtl
def test_run_frames_through_the_simulated_card(tmp_path):
    from helpers import hardware
    program = ese.compile(ese.PeepholeLSTM(13, 22, proj_size=9, num_layers=2),
                          hardware(4, channels=2), density=0.3)   # tests/system's build
    program.save(tmp_path / "model.ese")
    a, b1, b2 = frames(4, 13, seed=1), frames(2, 13, seed=2), frames(3, 13, seed=3)
    np.savez(tmp_path / "frames.npz", channel0=a, channel1_0=b1, channel1_1=b2)
    run = ese_command("run", tmp_path / "model.ese", "-i", tmp_path / "frames.npz",
                      "-o", tmp_path / "out.npz", "--transport", "sim", "--stalls", "0.2")
    assert run.returncode == 0, run.stderr
    out = np.load(tmp_path / "out.npz")
    assert np.array_equal(out["channel0_0"], program.predict(a))
    assert np.array_equal(out["channel1_0"], program.predict(b1))
    assert np.array_equal(out["channel1_1"], program.predict(b2))
    assert "ran 5 frame steps" in run.stdout      # channel 1: 2 + 3 frames


def test_run_on_a_missing_card_says_so(tmp_path, image):
    np.save(tmp_path / "x.npy", np.zeros((2, 6)))
    run = ese_command("run", image, "-i", tmp_path / "x.npy", "-o", tmp_path / "y.npy",
                      "--device", tmp_path / "xdma9")
    assert run.returncode == 2 and "no XDMA device" in run.stderr
    assert "Traceback" not in run.stderr


class _Tagger(torch.nn.Module):
    """A model as users save it: an LSTMP stack inside, a classifier head around it."""

    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.LSTM(6, 10, num_layers=2, proj_size=4)
        self.head = torch.nn.Linear(4, 3)

    def forward(self, x):
        y, _ = self.encoder(x)
        return self.head(y)


def test_compile_reads_a_torchscript_archives_submodule_and_a_state_dict(tmp_path, capsys):
    torch.manual_seed(0)
    model = _Tagger().eval()
    archive, weights = tmp_path / "tagger.pt", tmp_path / "weights.pt"
    torch.jit.save(torch.jit.script(model), str(archive))
    torch.save(model.state_dict(), weights)
    assert main(["compile", str(archive), "--list-parts"]) == 0
    assert capsys.readouterr().out.strip() == "'encoder'"
    run = ese_command("compile", archive, "-o", tmp_path / "x.ese", "--pes", "4")
    assert run.returncode == 2 and "--submodule" in run.stderr and "'encoder'" in run.stderr
    expected = ese.compile(model.encoder, ese.Config(pes=4), density=0.5)
    for path in (archive, weights):
        out = tmp_path / f"{path.stem}.ese"
        assert main(["compile", str(path), "--submodule", "encoder", "-o", str(out),
                     "--pes", "4", "--density", "0.5"]) == 0
        assert all(a.equals(b) for a, b in zip(ese.load(out).model.layers,
                                                expected.model.layers))
        capsys.readouterr()
        assert main(["info", str(out)]) == 0
        described = capsys.readouterr().out
        assert f"{path.name} encoder, 6->10 cells->4 proj; 4->10 cells->4 proj" in described


@pytest.mark.slow
def test_the_front_end_table_holds_every_row_within_its_tolerance(capsys):
    """ese frontends (the README's table of front ends; reports/frontends.json adds --rtl):
    every row the hardware runs is within 1e-5 of its framework in float and within
    FLOAT_TOLERANCE in fixed point, but Brevitas with its own 8-bit activations (within 3
    steps of its output quantizer, tests/unit/test_brevitas.py); the rest are refused by name."""
    from helpers import FLOAT_TOLERANCE
    assert main(["frontends", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rows"]
    refused = [row for row in rows if "refused" in row]
    assert {row["layer"] for row in refused} == {"GRU (reset_after=False)"}
    for row in rows:
        if "refused" in row:
            continue
        if "8-bit activations" in row["layer"]:
            assert row["predict_error"] < 3 / 128
        else:
            assert row["float_error"] < 1e-5 and row["predict_error"] < FLOAT_TOLERANCE, row


def test_compile_and_info_describe_a_bidirectional_lstmp_and_a_keras_gru(tmp_path, capsys):
    """ese compile of a bidirectional two-layer LSTMP's state_dict and of a Keras GRU's
    .keras file; ese info names their layers, halves and passes."""
    import os
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras
    torch.manual_seed(0)
    module = torch.nn.LSTM(6, 10, num_layers=2, proj_size=4, bidirectional=True)
    torch.save(module.state_dict(), tmp_path / "bilstmp.pt")
    keras.utils.set_random_seed(0)
    keras.Sequential([keras.Input((None, 6)),
                      keras.layers.GRU(8, return_sequences=True, name="gru")]).save(
                          tmp_path / "gru.keras")
    for name in ("bilstmp.pt", "gru.keras"):
        assert main(["compile", str(tmp_path / name), "-o", str(tmp_path / f"{name}.ese"),
                     "--pes", "4", "--density", "0.5"]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "bilstmp.pt.ese")]) == 0
    described = capsys.readouterr().out
    assert ("6->10 cells->4 proj; backward 6->10 cells->4 proj; 8->10 cells->4 proj; "
            "backward 8->10 cells->4 proj") in described
    assert ("4 passes (layer 0, layer 1 backward, layer 2, layer 3 backward)" in described)
    assert main(["info", str(tmp_path / "gru.keras.ese")]) == 0
    assert "Keras GRU gru, 6->8 GRU units" in capsys.readouterr().out
