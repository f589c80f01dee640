"""What chosen formats buy on a model whose weights lie beyond ESE's formats.

The committed phone recognizer fits Q1.10 and Q3.12, so it is rescaled into an *equivalent*
float model that does not: W_x times ``gain`` reading features divided by ``gain`` (a front end
that scales its features down), and each projection's W_ym times ``gain`` with what reads y (W_r,
the next layer's W_x) divided by it. The float function is the recognizer's own, so its float
phone error rate is unchanged; what changes is how the fixed point copes. The study compiles
the rescaled model three ways (ESE's configured formats; formats from the weights; formats
from the weights and calibration frames), beside the recognizer itself with its own formats as
the baseline, and reports, on sentences that the calibration did
not see, spoken by the corpus's test voices, the largest and mean output error against the
float model and the golden model's phone error rate. The last projection's outputs come out
``gain`` times larger; the host's output layer divides them back (errors are given on that
scale, the recognizer's own).
"""

from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = ["FormatsStudySettings", "run_formats_study", "float_recognizer", "rescale"]


@dataclass
class FormatsStudySettings:
    gain: float = 16.0
    calibration_sentences: int = 4
    test_sentences: int = 8
    pes: int = 8
    seed: int = 11


@dataclass
class FormatsStudyReport:
    gain: float
    largest_weight: float
    calibration_frames: int
    test_frames: int
    float_per: float
    rows: list = field(default_factory=list)

    def to_dict(self):
        return asdict(self)


def float_recognizer(program):
    """The recognizer's LSTM layers as a float ``nn.LSTM``: its integer weights decoded (each
    exactly a float), so the float model is the one the fixed point approximates."""
    import torch
    from torch import nn
    config = program.config
    layers = program.model.layers
    first = layers[0]
    module = nn.LSTM(first.inputs, first.cells, num_layers=len(layers), proj_size=first.proj)
    with torch.no_grad():
        for index, layer in enumerate(layers):
            def real(name, values, layer=layer):
                fmt = layer.formats.format(config, name)
                return torch.tensor(values / fmt.scale, dtype=torch.float32)
            getattr(module, f"weight_ih_l{index}").copy_(real("input_weights",
                                                              layer.input_weights))
            getattr(module, f"weight_hh_l{index}").copy_(real("recurrent_weights",
                                                              layer.recurrent_weights))
            getattr(module, f"weight_hr_l{index}").copy_(real("projection", layer.projection))
            getattr(module, f"bias_ih_l{index}").copy_(real("bias", layer.bias))
            getattr(module, f"bias_hh_l{index}").zero_()
    return module.eval()


def rescale(module, gain):
    """The same float function, with inputs ``gain`` times smaller and projections ``gain``
    times larger: W_x(layer 0) and every W_ym grow by ``gain``, what reads y shrinks by it."""
    import copy

    import torch
    module = copy.deepcopy(module)
    with torch.no_grad():
        module.weight_ih_l0.mul_(gain)
        for index in range(module.num_layers):
            getattr(module, f"weight_hr_l{index}").mul_(gain)
            getattr(module, f"weight_hh_l{index}").div_(gain)
            if index + 1 < module.num_layers:
                getattr(module, f"weight_ih_l{index + 1}").div_(gain)
    return module


def _speak(recognizer, texts, seed):
    from ..speech.corpus import PITCHES, SPEEDS, VARIANTS, synthesise
    rng = np.random.default_rng(seed)
    spoken = []
    for text in texts:
        audio, phones = synthesise(text, "en-us", str(rng.choice(VARIANTS["test"])),
                                   int(rng.choice(SPEEDS)), int(rng.choice(PITCHES)))
        spoken.append((recognizer.features(audio), phones))
    return spoken


def run_formats_study(settings, recognizer, log=None):
    """Run the study on a :class:`~ese.sw.speech.CompiledRecognizer`; returns the report."""
    import torch

    import ese

    from ..speech import edit_distance
    from ..speech.corpus import sentences
    say = log or (lambda text: None)
    module = rescale(float_recognizer(recognizer.program), settings.gain)
    largest = max(p.abs().max().item() for p in module.parameters())
    texts = sentences(settings.calibration_sentences + settings.test_sentences, settings.seed)
    say("synthesising sentences with espeak-ng")
    spoken = _speak(recognizer, texts, settings.seed)
    scale = 1.0 / settings.gain
    calibration = [features * scale for features, _ in spoken[:settings.calibration_sentences]]
    tests = [(features * scale, phones)
             for features, phones in spoken[settings.calibration_sentences:]]

    def per(outputs):
        errors = sum(edit_distance(phones, recognizer.decode(y))
                     for y, (_, phones) in zip(outputs, tests))
        return 100.0 * errors / sum(len(phones) for _, phones in tests)

    with torch.no_grad():
        reference = [module(torch.tensor(x, dtype=torch.float32))[0].double().numpy() * scale
                     for x, _ in tests]
    report = FormatsStudyReport(
        gain=settings.gain, largest_weight=largest,
        calibration_frames=sum(len(x) for x in calibration),
        test_frames=sum(len(x) for x, _ in tests), float_per=per(reference))
    config = ese.Config(pes=settings.pes)
    original = float_recognizer(recognizer.program)
    for label, model, options, gain in (
            ("not rescaled, configured", original, {"formats": "configured"}, 1.0),
            ("configured (ESE's)", module, {"formats": "configured"}, settings.gain),
            ("from the weights", module, {}, settings.gain),
            ("weights + calibration", module, {"calibration": calibration}, settings.gain)):
        say(f"compiling with {label}")
        program = ese.compile(model, config, **options)
        outputs, saturated_inputs = [], 0
        for x, _ in tests:
            codes, clipped = program.encode_inputs(x * settings.gain / gain)
            saturated_inputs += clipped
            outputs.append(program.decode_outputs(program.predict_codes(codes)) / gain)
        errors = np.concatenate([np.abs(y - r).ravel() for y, r in zip(outputs, reference)])
        first = program.model.layers[0].formats
        report.rows.append({
            "formats": label,
            "saturated_weights": program.report.saturated_total,
            "saturated_inputs": saturated_inputs,
            "input_format": str(program.input_format).split(" ")[0],
            "input_weight_format": str(first.format(program.config, "input_weights")).split(
                " ")[0],
            "max_error": float(errors.max()),
            "mean_error": float(errors.mean()),
            "golden_per": per(outputs),
        })
    return report
