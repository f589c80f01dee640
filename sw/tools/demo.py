"""The demo: a small pruned, quantized LSTMP from PyTorch to a bit-exact RTL simulation, then
a trained phone recognizer hearing a synthesised sentence on the simulated hardware.

The first part builds a peephole LSTM with projection, prunes it load-balanced to the
requested density, quantizes and encodes it for a few PEs, generates the Verilog, simulates it
in Verilator and reports sizes, sparsity, the bit-exact check against the golden model, the
error against float PyTorch, and the cycles each frame took.

The second part loads the committed recognizer (``sw/speech/models/phones``: the speech
study's 2-layer LSTMP, 384 cells, projection 192, trained on the WordNet corpus, pruned
load-balanced to density 0.112, 12-bit weights, compiled for 8 PEs), speaks a sentence that is
in no split of that corpus with espeak-ng in a voice the recognizer never heard in training,
runs its features through the RTL, and prints the phones it recognised against espeak-ng's
own transcript.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..speech.corpus import DEMO_SENTENCE
from .reports import DemoReport, SpeechDemoReport
from .workloads import random_peephole_program

__all__ = ["DemoSettings", "run_demo", "SpeechDemoSettings", "run_speech_demo", "RECOGNIZER"]

#: The committed phone recognizer (see ese.sw.speech.export_recognizer).
RECOGNIZER = Path(__file__).parent.parent / "speech" / "models" / "phones"


@dataclass
class DemoSettings:
    inputs: int = 40
    cells: int = 96
    proj: int = 48
    layers: int = 1
    pes: int = 4
    density: float = 0.3
    frames: int = 12
    stall_probability: float = 0.0
    seed: int = 0


def run_demo(settings, console):
    """Run the demo and print its report on ``console`` (a rich Console); returns the
    :class:`~ese.sw.tools.reports.DemoReport`."""
    import ese
    config = ese.Config(pes=settings.pes)
    with console.status("pruning, quantizing and encoding"):
        program = random_peephole_program(settings.inputs, settings.cells, settings.proj,
                                          config, layers=settings.layers,
                                          density=settings.density, seed=settings.seed)
    rng = np.random.default_rng(settings.seed)
    frames = rng.normal(scale=1.0, size=(settings.frames, settings.inputs))
    predicted = program.predict(frames)
    reference = program.float_reference(frames)
    with console.status("generating Verilog and simulating it in Verilator") as status:
        result = program.simulate(frames, stall_probability=settings.stall_probability,
                                  log=lambda text: status.update(text))
    summary = program.summary()
    steady = result.cycles_per_frame[1:] or result.cycles_per_frame
    cycles = int(np.median(steady))
    report = DemoReport(**{
        "model": f"PeepholeLSTM {program.model.layers[0].inputs} inputs -> "
                 + ", ".join(f"{layer.cells} cells -> {layer.proj} proj"
                             for layer in program.model.layers),
        "pes": config.pes,
        "weights": summary["weights"],
        "nonzeros": summary["nonzeros"],
        "density": summary["density"],
        "padding_entries": summary["padding_entries"],
        "entries_per_pe": [summary["entries_per_pe_min"], summary["entries_per_pe_max"]],
        "frames": settings.frames,
        "mismatches": result.mismatches,
        "bitexact": result.bitexact and np.array_equal(result.outputs, predicted),
        "max_error_vs_float": float(np.max(np.abs(predicted - reference))),
        "cycles_per_frame": cycles,
        "latency_us": cycles / config.clock_mhz,
        "clock_mhz": config.clock_mhz,
        "load_cycles": result.load_cycles,
        "build_seconds": result.build_seconds,
        "simulation_seconds": result.wall_seconds,
    })
    _print_report(report, result, console)
    return report


def _print_report(report, result, console):
    from rich.table import Table

    table = Table(title="ese demo: PyTorch LSTMP -> pruned, quantized accelerator -> Verilator",
                  show_header=False)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("model", report.model),
        ("processing elements", str(report.pes)),
        ("weights / non-zeros", f"{report.weights} / {report.nonzeros} "
                                f"(density {report.density:.3f})"),
        ("padding entries", str(report.padding_entries)),
        ("entries per PE (min..max)", "{}..{}".format(*report.entries_per_pe)),
        ("frames simulated", str(report.frames)),
        ("RTL vs golden model", ("bit-exact" if report.bitexact else "MISMATCH")
         + f" ({report.mismatches} mismatched words)"),
        ("max |error| vs float PyTorch", f"{report.max_error_vs_float:.5f}"),
        ("cycles per frame (median)", f"{report.cycles_per_frame} "
                                      f"({report.latency_us:.2f} us at "
                                      f"{report.clock_mhz:g} MHz)"),
        ("cycles per frame (each)", " ".join(map(str, result.cycles_per_frame))),
        ("weight load", f"{report.load_cycles} cycles"),
        ("Verilator build", "cached" if result.build_cached
         else f"{report.build_seconds:.1f} s"),
        ("simulation wall time", f"{report.simulation_seconds:.1f} s"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


@dataclass
class SpeechDemoSettings:
    sentence: str = DEMO_SENTENCE    # in no split of the corpus the recognizer learned from
    voice: str = "en-us"             # with a test variant: no training utterance used it
    variant: str = "f4"
    speed: int = 160
    pitch: int = 50
    stall_probability: float = 0.0


def run_speech_demo(settings, console):
    """Recognise one synthesised sentence on the RTL; prints and returns a report."""
    from ..speech import CompiledRecognizer, edit_distance
    from ..speech.corpus import synthesise
    recognizer = CompiledRecognizer(RECOGNIZER)
    program = recognizer.program
    with console.status("synthesising the sentence with espeak-ng"):
        audio, reference = synthesise(settings.sentence, settings.voice, settings.variant,
                                      settings.speed, settings.pitch)
        frames = recognizer.features(audio)
    with console.status("simulating the recognizer in Verilator") as status:
        result = program.simulate(frames, stall_probability=settings.stall_probability,
                                  log=lambda text: status.update(text))
    predicted = program.predict(frames)
    heard = recognizer.decode(result.outputs)
    golden = recognizer.decode(predicted)
    summary = program.summary()
    layers = program.model.layers
    steady = result.cycles_per_frame[1:] or result.cycles_per_frame
    cycles = int(np.median(steady))
    report = SpeechDemoReport(**{
        "sentence": settings.sentence,
        "voice": f"{settings.voice}+{settings.variant}",
        "frames": len(frames),
        "reference_phones": reference,
        "recognised_phones": heard,
        "phone_errors": edit_distance(reference, heard),
        "phone_error_rate": 100.0 * edit_distance(reference, heard) / max(1, len(reference)),
        "bitexact": bool(result.bitexact and np.array_equal(result.outputs, predicted)),
        "decode_equals_golden": heard == golden,
        "pes": program.config.pes,
        "nonzeros": summary["nonzeros"],
        "density": summary["density"],
        "cycles_per_frame": cycles,
        "real_time_factor": 10_000.0 / (cycles / program.config.clock_mhz),
        "simulation_seconds": result.wall_seconds,
    })
    from rich.table import Table
    table = Table(title="ese demo: a phone recognizer on the simulated accelerator",
                  show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for name, value in [
        ("sentence (espeak-ng)", f"\"{report.sentence}\", voice {report.voice}, "
                                 f"{report.frames} frames of 10 ms"),
        ("model", f"{len(layers)}-layer LSTMP {layers[0].inputs} -> {layers[0].cells} cells -> "
                  f"{layers[0].proj}, {report.nonzeros} non-zero weights (density "
                  f"{report.density:.3f}), {report.pes} PEs"),
        ("espeak-ng's phones", " ".join(reference)),
        ("recognised on the RTL", " ".join(heard)),
        ("phone errors", f"{report.phone_errors} of {len(reference)} "
                         f"({report.phone_error_rate:.1f}%)"),
        ("RTL vs golden model", "bit-exact, same phones" if report.bitexact
         and report.decode_equals_golden else "MISMATCH"),
        ("cycles per frame (median)", f"{cycles} ({cycles / program.config.clock_mhz:.1f} us "
                                      f"at {program.config.clock_mhz:g} MHz: "
                                      f"{report.real_time_factor:.0f}x real time)"),
        ("simulation wall time", f"{result.wall_seconds:.1f} s"),
    ]:
        table.add_row(name, value)
    console.print(table)
    return report
