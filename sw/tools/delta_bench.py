"""``ese bench --delta``: what temporal sparsity buys on speech, in RTL, against the same model
without thresholds.

The committed delta recognizer (or another exported one) runs on hardware with delta units
(``Config.delta=1``) twice in one run: with its delta layers' thresholds, and with the same
weights as plain layers. Both run on the first test utterances of the speech corpus in the
Verilator model; each utterance is a sequence from zero state, and its first frames (the
pipeline's fill) are left out of the per-frame figures. The report gives, for both, the mean,
median and 99th-percentile cycles per frame, the golden model's phone error rate over the
whole test split (and the RTL's decodes of the simulated utterances, which must equal it),
the fraction of columns each kind transmits, the performance model against the RTL, and the
ESE-sized layer (153 -> 1024 -> 512 on 32 PEs) predicted by the model at the measured
transmission rates.
"""

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bench import WARMUP_FRAMES
from .reports import DeltaBenchReport, DeltaRun

__all__ = ["DeltaBenchSettings", "delta_benchmark", "transmission_rates", "ese_layer_cycles",
           "DELTA_RECOGNIZER"]

#: The committed recognizer with delta layers: the speech study's delta-tuned model at the
#: chosen threshold (``ese speech-eval --delta-thresholds ... --export PREFIX`` writes it as
#: ``PREFIX_delta``).
DELTA_RECOGNIZER = Path(__file__).parent.parent / "speech" / "models" / "phones_delta"


@dataclass
class DeltaBenchSettings:
    #: An exported recognizer (PREFIX.ese and PREFIX.npz); "" for the committed delta one.
    recognizer: str = ""
    #: Thresholds (theta_x, theta_h[, theta_m]), real, for a recognizer without delta layers;
    #: None: the recognizer's own.
    thresholds: tuple = None
    #: The speech corpus (default: the study's, synthesised if absent).
    corpus: str = ""
    #: Test utterances run in RTL (both programs); the PER is over the whole test split.
    utterances: int = 4
    #: The ESE-sized layer's frames in the model, at the measured rates.
    model_frames: int = 24
    seed: int = 0


def transmission_rates(traces, layers):
    """Fractions of columns transmitted over ``traces`` (golden-model traces of delta layers,
    one per utterance): {"inputs", "recurrent", "projection", "first_layer_inputs"}, each the
    transmitted columns over all columns read, every layer and frame together."""
    sent = {"inputs": 0, "recurrent": 0, "cells": 0, "first": 0}
    seen = dict.fromkeys(sent, 0)
    for trace in traces:
        for index, (layer, recorded) in enumerate(zip(layers, trace)):
            kinds = [("inputs", "inputs"), ("recurrent", "recurrent")]
            if layer.proj:
                kinds.append(("cells", "cells"))
            if index == 0:
                kinds.append(("first", "inputs"))
            for kind, key in kinds:
                sent[kind] += int(np.count_nonzero(recorded[key]))
                seen[kind] += recorded[key].size
    rate = {kind: sent[kind] / seen[kind] if seen[kind] else 0.0 for kind in sent}
    return {"inputs": rate["inputs"], "recurrent": rate["recurrent"],
            "projection": rate["cells"], "first_layer_inputs": rate["first"]}


def ese_layer_cycles(rates, frames=24, seed=0):
    """ESE's layer (153 inputs, 1024 cells, projection 512, peepholes, density 0.112,
    load-balanced) on 32 PEs with delta units, by the performance model, with each column sent
    independently at the given rates (``rates["first_layer_inputs"]`` for x, ``"recurrent"``
    for y_{t-1}, ``"projection"`` for m): mean steady cycles per frame, and the same with
    nothing sent (the hardware's floor)."""
    import ese

    from ...hw.timing import hardware_timing
    from ..compiler.performance import phase_demands, step_chain_ends
    from .workloads import random_peephole_program
    config = ese.Config(pes=32, delta=1)
    image = random_peephole_program(153, 1024, 512, config, density=0.112, seed=seed).image
    timing = hardware_timing(image.config)
    rng = np.random.default_rng(seed)
    phases = phase_demands(image)

    def masks(scale):
        frames_masks = []
        for _ in range(frames):
            gates = np.concatenate([
                rng.random(153) < rates["first_layer_inputs"] * scale,
                rng.random(512) < rates["recurrent"] * scale])
            frames_masks.append([gates, rng.random(1024) < rates["projection"] * scale])
        assert [p.kind for p in phases] == ["gates", "projection"]
        return frames_masks

    def steady(frames_masks):
        return float(np.mean(np.diff(step_chain_ends(image, timing, frames_masks))
                             [WARMUP_FRAMES - 1:]))
    return steady(masks(1.0)), steady(masks(0.0))


def _run(program, recognizer, data, count, log, label):
    """One program on the first ``count`` utterances of ``data`` in RTL, and its golden model
    on all of them: a DeltaRun and the golden traces of the simulated utterances."""
    from ...hw.timing import hardware_timing
    from ..compiler.performance import predict_performance
    from ..speech.evaluation import golden_outputs
    from ..speech.scoring import greedy_decode, phone_error_rate
    started = time.monotonic()
    golden = golden_outputs(program, data.inputs)
    decodes = [greedy_decode(recognizer.log_probabilities(y)) for y in golden]
    per = phone_error_rate(decodes, data.targets)
    if log:
        log(f"{label}: simulating {count} test utterances in RTL")
    utterances = list(data.inputs[:count])
    result = program.simulate([utterances], log=log)
    lengths = [len(x) for x in utterances]
    rtl, model, traces = [], [], []
    timing = hardware_timing(program.config)
    position = 0
    for x, length in zip(utterances, lengths):
        trace = []
        program.predict_codes(program.encode_inputs(x)[0], trace=trace)
        traces.append(trace)
        predicted = predict_performance(program.image, timing, trace).frame_cycles
        rtl.extend(result.cycles_per_frame[position + WARMUP_FRAMES:position + length])
        model.extend(predicted[WARMUP_FRAMES:])
        position += length
    rtl_decodes = [greedy_decode(recognizer.log_probabilities(y)) for y in result.outputs[0]]
    run = DeltaRun(
        thresholds=[None if layer.delta is None else
                    {name: int(getattr(layer.delta, name)) for name in layer.delta.NAMES}
                    for layer in program.model.layers],
        frames=len(rtl),
        mean_cycles_per_frame=float(np.mean(rtl)),
        median_cycles_per_frame=float(np.median(rtl)),
        p99_cycles_per_frame=float(np.percentile(rtl, 99)),
        model_mean_cycles_per_frame=float(np.mean(model)),
        model_error=float(np.mean(model) / np.mean(rtl) - 1),
        latency_us=float(np.mean(rtl)) / program.config.clock_mhz,
        test_golden_per=per,
        test_utterances=len(data.inputs),
        rtl_per=phone_error_rate(rtl_decodes, data.targets[:count]),
        rtl_bitexact=result.bitexact,
        rtl_decodes_equal_golden=rtl_decodes == decodes[:count],
        seconds=time.monotonic() - started)
    return run, traces


def delta_benchmark(settings, log=None):
    """Run the benchmark (see the module's documentation); returns a DeltaBenchReport."""
    import dataclasses

    from ...sim.build import cache_root
    from ..contract.errors import InputError
    from ..speech import CompiledRecognizer
    from ..speech.corpus import SPLITS, UTTERANCES, build_corpus
    from ..speech.frontend import load_features
    prefix = settings.recognizer or str(DELTA_RECOGNIZER)
    missing = [f"{prefix}{suffix}" for suffix in (".ese", ".npz")
               if not Path(f"{prefix}{suffix}").is_file()]
    if missing:
        raise InputError(f"no recognizer at {prefix} ({', '.join(missing)} missing): export one "
                         f"with `ese speech-eval ... --export PREFIX` (with --delta-thresholds "
                         f"for PREFIX_delta), or give --recognizer PREFIX")
    recognizer = CompiledRecognizer(prefix)
    program = recognizer.program
    hardware = dataclasses.replace(program.config, delta=1)
    if settings.thresholds is not None:
        delta = program.retarget(hardware).with_delta(tuple(settings.thresholds))
    elif program.model.has_delta:
        delta = program.retarget(hardware)
    else:
        raise InputError(f"the recognizer {prefix} has no delta layers: give thresholds "
                         f"(ese bench --delta --thresholds THETA_X THETA_H)")
    plain = delta.with_delta(None)
    corpus = Path(settings.corpus or cache_root() / f"corpus-wordnet-{UTTERANCES}-0")
    if not all((corpus / split).is_dir() for split in SPLITS):
        if settings.corpus:
            raise InputError(f"{corpus} holds no speech corpus (train, dev and test folders): "
                             f"build one with `ese speech-corpus {corpus}`")
        if log:
            log(f"synthesising the speech corpus in {corpus}")
        build_corpus(corpus, UTTERANCES, seed=0, log=log)
    data, _, _ = load_features(corpus, "test", recognizer.phones, recognizer.normalisation,
                               log=log)
    count = min(settings.utterances, len(data.inputs))
    without, _ = _run(plain, recognizer, data, count, log, "without thresholds")
    with_delta, traces = _run(delta, recognizer, data, count, log, "with thresholds")
    rates = transmission_rates(traces, delta.model.layers)
    if log:
        log("the ESE-sized layer in the performance model")
    ese_cycles, ese_floor = ese_layer_cycles(rates, settings.model_frames, settings.seed)
    clock = hardware.clock_mhz
    return DeltaBenchReport(
        recognizer=prefix, pes=hardware.pes, corpus=str(corpus),
        utterances=count, warmup_frames=WARMUP_FRAMES,
        without_thresholds=without, with_thresholds=with_delta,
        mean_ratio=without.mean_cycles_per_frame / with_delta.mean_cycles_per_frame,
        median_ratio=without.median_cycles_per_frame / with_delta.median_cycles_per_frame,
        per_difference=with_delta.test_golden_per - without.test_golden_per,
        transmitted=rates,
        ese_layer_cycles_per_frame=ese_cycles,
        ese_layer_latency_us=ese_cycles / clock,
        ese_layer_floor_cycles=ese_floor,
        ese_layer_target_us=12.0,
        clock_mhz=clock)
