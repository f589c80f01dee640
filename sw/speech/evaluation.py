"""The study behind ``ese speech-eval``: dense, pruned (both kinds) and fixed-point phone
error rates at each density, and the RTL on a few utterances, for an LSTMP recognizer or
(``--cell gru``) a GRU one.

The protocol: every choice (model size, epochs, learning rate, densities, retraining) is made
on the dev set, which every run evaluates; the test set is evaluated only when asked for
(``EvaluationSettings.test``, ``ese speech-eval --test``), by the final command, once per
reported row. The report records the command, the seeds and which splits it evaluated."""

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..contract.errors import InputError
from .corpus import UTTERANCES
from .frontend import load_features
from .recognizer import export_recognizer
from .scoring import greedy_decode, phone_error_rate
from .training import (
    TrainingSettings,
    density_of,
    float_hypotheses,
    load_model,
    output_layer,
    prune_iteratively,
    save_model,
    train,
)

__all__ = ["EvaluationSettings", "evaluate", "write_report", "plot_report", "plot_delta"]

#: Frames of each utterance left out of cycles per frame (the pipeline's fill; the first
#: frame transmits every column).
WARMUP_FRAMES = 2


@dataclass
class EvaluationSettings:
    """What `ese speech-eval` runs (see :func:`evaluate`)."""

    corpus: str = ""                 # a corpus directory; built there if it has no splits
    utterances: int = UTTERANCES     # size of a corpus to build
    training: TrainingSettings = dataclasses.field(default_factory=TrainingSettings)
    densities: tuple = (0.5, 0.3, 0.2, 0.15, 0.112, 0.08, 0.05)
    target_density: float = 0.112    # where the golden model and the RTL are checked
    prune_steps: int = 1
    #: The pruning chains run: load-balanced and global (ESE's comparison), or one of them.
    kinds: tuple = ("balanced", "global")
    #: Block entries (Config.block_columns) to compare with single weights: for each width, a
    #: load-balanced chain from the same dense model through the densities down to the
    #: target, pruning whole blocks of that many columns, evaluated on a machine of such
    #: entries; empty for none.
    block_columns: tuple = ()
    #: The chosen width is the largest whose dev golden PER at the target density is within
    #: this many points of single weights' (load-balanced).
    block_budget: float = 1.0
    #: Column banks to compare with single weights balanced per PE: for each count, the same
    #: chain with every (PE, bank) balanced (the balance column lanes would need; see
    #: ese.sw.compiler.pruning), evaluated on a machine of single weights;
    #: empty for none.
    column_banks: tuple = ()
    #: Retraining epochs after pruning to each density (in the order of ``densities``), or
    #: one count for all. The target's step gets the most (0.15 -> 0.112 removes a quarter of
    #: what is left from a network already at 15%). Set before the WordNet corpus's first run
    #: (the grammar corpus's schedule, shortened where it had slack); an epoch of the default
    #: LSTMP takes about 45 s here, so 20 dense epochs and 2 x 16 retraining epochs leave the
    #: study well inside 90 minutes.
    retrain_epochs: "int | tuple" = (1, 1, 2, 3, 5, 2, 2)
    pes: int = 32
    weight_bits: int = 12
    activation_bits: int = 16
    rtl_utterances: int = 3
    work: str = ""                   # checkpoints and the trained models
    #: Where to write the recognizer at the target density, load-balanced (PREFIX.ese and
    #: PREFIX.npz, see export_recognizer), compiled for ``export_pes`` PEs; "" for nowhere.
    export: str = ""
    export_pes: int = 8
    #: Delta-aware fine-tuning (docs/arithmetic.md, "Delta layers"), of the load-balanced
    #: model at the target density: one chain through these thresholds (real, theta for the
    #: inputs, y and m alike), from the smallest up, each fine-tuned through the thresholded
    #: forward pass for ``delta_epochs`` from the one before (the first from the pruned model),
    #: as the pruning chain goes through the densities; empty for none.
    delta_thresholds: tuple = ()
    delta_epochs: int = 2
    #: The chosen threshold is the largest whose dev golden PER is within this many points of
    #: the same pruned model without thresholds.
    delta_budget: float = 1.0
    #: The weight of the L1 term on the states' frame-to-frame changes in the fine-tuning
    #: (``train_delta``'s ``change_weight``); 0 for none.
    delta_change_weight: float = 0.0
    #: Dev (and test) utterances whose golden traces give the columns sent and, through the
    #: performance model, the cycles per frame on the export hardware with delta units.
    delta_trace_utterances: int = 20
    #: Evaluate the test set too: the final run, once every choice has been made on dev.
    test: bool = False
    #: The command that ran the evaluation, for the report.
    command: str = ""


def evaluate(settings, log=None, timing_of=None):
    """The whole pipeline; returns the report (a dict).

    Dense float PER; then, for each pruning kind, one chain through the densities from the
    largest down (each pruned further from the one before and retrained, as ESE prunes), and
    at each the pruned float PER and the PER through ``Program.predict`` (fixed point, the
    hardware's golden model), on dev and (``settings.test``) on test; at the target density
    with load-balanced pruning, ``Program.simulate`` (RTL) on the first utterances of the last
    split evaluated, whose decodes must equal ``predict``'s. The dense and pruned models are
    kept in ``work`` and reused when their settings match, so an interrupted run resumes and the
    final run (``test``) evaluates the models the dev runs chose.

    With ``settings.delta_thresholds``, the delta study follows (:func:`_delta_study`); its
    cycles per frame come from the performance model with the hardware's latencies,
    ``timing_of(config)`` (``ese.hw.timing.hardware_timing``, which the command line passes:
    this package does not import the hardware).
    """

    import ese

    from .corpus import SPLITS, build_corpus, corpus_statistics
    started = time.monotonic()
    say = log or (lambda text: None)
    epochs_for = _retrain_schedule(settings)
    if settings.delta_thresholds and not (
            "balanced" in settings.kinds
            and any(math.isclose(d, settings.target_density) for d in settings.densities)):
        raise InputError(f"the delta study fine-tunes the load-balanced model at the target "
                         f"density {settings.target_density:g}: run the balanced chain "
                         f"(--pruning both or balanced) through that density")
    corpus = Path(settings.corpus)
    if not all((corpus / split).is_dir() for split in SPLITS):
        say(f"synthesising a corpus of {settings.utterances} utterances in {corpus}")
        build_corpus(corpus, settings.utterances, seed=settings.training.seed, log=log)
    work = Path(settings.work or corpus / "work")
    work.mkdir(parents=True, exist_ok=True)
    train_data, phones, normalisation = load_features(corpus, "train", log=log)
    evaluated = {split: load_features(corpus, split, phones, normalisation, log=log)[0]
                 for split in (("dev", "test") if settings.test else ("dev",))}
    training = settings.training
    # A GRU's models sit beside the LSTMP's in one work folder.
    tag = "" if training.cell == "lstmp" else f"_{training.cell}"
    dense_path = work / f"dense{tag}.pt"
    if dense_path.exists():
        model, saved_phones, _, saved = load_model(dense_path)
        if saved_phones != phones or saved != training:
            model = None
    else:
        model = None
    losses = []
    if model is None:
        model, losses = train(train_data, phones, training, log=log,
                              checkpoint=work / f"checkpoint{tag}.pt")
        save_model(model, dense_path, phones, normalisation, training)
    described = corpus / "corpus.json"
    built = json.loads(described.read_text()) if described.is_file() else {}
    report = {
        "protocol": {
            "command": settings.command,
            "evaluated": list(evaluated),
            "choices": "made on dev; test evaluated once per row, by the final command "
                       "(--test)",
            "seeds": {"corpus": built.get("seed"), "training": training.seed,
                      "retraining": f"{training.seed} + pruning step"},
        },
        "corpus": {"directory": str(corpus), "text": built.get("text", "the user's own"),
                   "train": len(train_data.inputs),
                   **{split: len(data.inputs) for split, data in evaluated.items()},
                   "phones": len(phones),
                   **{f"{split}_phones": int(sum(len(r) for r in data.targets))
                      for split, data in evaluated.items()},
                   # Phones training never had: always errors (load_features).
                   **{f"{split}_unknown_phones": data.unknown_phones
                      for split, data in evaluated.items()},
                   "statistics": corpus_statistics(corpus)},
        "model": {"cell": training.cell, "inputs": int(train_data.inputs[0].shape[1]),
                  "cells": training.cells,
                  "proj": training.proj if training.cell == "lstmp" else 0,
                  "layers": training.layers,
                  "parameters": int(sum(p.numel() for p in model.parameters()))},
        "training": {**dataclasses.asdict(training), "losses": losses},
        "dense": _error_rates(model, None, evaluated)[0],
    }
    say("dense float PER " + _described(report["dense"]))
    config = ese.Config(pes=settings.pes, weight_bits=settings.weight_bits,
                        activation_bits=settings.activation_bits)
    rows = {density: {"density": density} for density in settings.densities}
    for kind in settings.kinds:
        # One chain per kind, as in ESE: each density starts from the one before, pruned
        # further and retrained.
        pruned, chain = model, [dataclasses.asdict(training), kind, settings.pes,
                                settings.prune_steps]
        for density in sorted(settings.densities, reverse=True):
            row = rows[density]
            row["retrain_epochs"] = epochs_for[density]
            # A model pruned along the same chain before is reused (resuming a run).
            chain = chain + [density, epochs_for[density]]
            saved_path = work / f"pruned{tag}_{kind}_{density}.pt"
            pruned = _along_chain(
                saved_path, chain, pruned, say, f"density {density} {kind}",
                lambda previous, density=density: prune_iteratively(
                    previous, train_data, density, kind, settings.pes, settings.prune_steps,
                    epochs_for[density], training.learning_rate / 4, training.batch,
                    training.seed, log=log))
            program = ese.compile(pruned.recurrent, config)
            rates, golden = _error_rates(pruned, program, evaluated)
            row[kind] = {"density": density_of(pruned.recurrent), **rates,
                         "saturated_weights": int(program.report.saturated_total)}
            say(f"density {density} {kind}: " + _described(rates))
            if kind == "balanced" and math.isclose(density, settings.target_density):
                target = (pruned, chain, rates)
                split = list(evaluated)[-1]
                report["rtl"] = {"split": split, **_rtl_check(
                    program, pruned, evaluated[split], golden[split], settings.rtl_utterances,
                    log)}
                if settings.export:
                    export_recognizer(pruned, phones, normalisation,
                                      config.replace(pes=settings.export_pes), settings.export)
                    say(f"recognizer written to {settings.export}.ese and .npz")
    report["densities"] = [rows[density] for density in settings.densities]
    if settings.block_columns:
        report["blocks"] = _pattern_study(settings, model, train_data, evaluated, work, tag,
                                          epochs_for, rows, say, log, "block_columns")
    if settings.column_banks:
        report["banks"] = _pattern_study(settings, model, train_data, evaluated, work, tag,
                                         epochs_for, rows, say, log, "column_banks")
    if settings.delta_thresholds:
        if timing_of is None:
            raise InputError("the delta study needs the hardware's latencies: pass timing_of "
                             "(ese.hw.timing.hardware_timing)")
        report["delta"] = _delta_study(settings, target, train_data, evaluated, phones,
                                       normalisation, work, tag, timing_of, say, log)
    report["seconds"] = time.monotonic() - started
    return report


def _pattern_chain(settings, model, train_data, evaluated, work, tag, epochs_for, say, log,
                   block_columns=1, column_banks=1):
    """A load-balanced chain from the dense ``model`` through the densities down to the
    target, pruning blocks of ``block_columns`` columns balanced per (PE, ``column_banks``
    bank); at the target, the float and golden PER on each evaluated split (the golden model
    on a machine of such entries) and the multiply cycles of the busiest PE."""
    import ese
    training = settings.training
    target = settings.target_density
    densities = sorted((d for d in settings.densities if d >= target or math.isclose(d, target)),
                       reverse=True)
    pattern, count, described = (
        ("banks", column_banks, f"{column_banks} column banks") if column_banks > 1
        else ("blocks", block_columns, f"blocks of {block_columns}"))
    pruned, chain = model, [dataclasses.asdict(training), "balanced", settings.pes,
                            settings.prune_steps, pattern, count]
    for density in densities:
        chain = chain + [density, epochs_for[density]]
        pruned = _along_chain(
            work / f"pruned{tag}_{pattern}{count}_{density}.pt", chain, pruned, say,
            f"density {density}, {described}",
            lambda previous, density=density: prune_iteratively(
                previous, train_data, density, "balanced", settings.pes,
                settings.prune_steps, epochs_for[density], training.learning_rate / 4,
                training.batch, training.seed, log=log, block_columns=block_columns,
                column_banks=column_banks))
    config = ese.Config(pes=settings.pes, block_columns=block_columns,
                        weight_bits=settings.weight_bits,
                        activation_bits=settings.activation_bits)
    program = ese.compile(pruned.recurrent, config)
    rates, _ = _error_rates(pruned, program, evaluated)
    say(f"{described} at {target}: " + _described(rates))
    return {"density": density_of(pruned.recurrent), **rates,
            "multiply_cycles_per_pe": int(program.image.real_entries_per_pe.max())}


def _chosen(single, rows, key, budget):
    """The largest ``key`` among ``rows`` whose dev golden PER is within ``budget`` points of
    ``single`` weights' (None where none is)."""
    within = [row[key] for row in rows
              if single is not None and row["dev_golden_per"]
              <= single["dev_golden_per"] + budget]
    return max(within) if within else None


def _pattern_study(settings, model, train_data, evaluated, work, tag, epochs_for, rows, say,
                   log, key):
    """Block entries (``key`` "block_columns", see EvaluationSettings.block_columns) or column
    banks ("column_banks") against single weights balanced per PE: per value, a load-balanced
    chain of that pattern (:func:`_pattern_chain`); the largest value within
    ``settings.block_budget`` points of single weights chosen on dev."""
    target = settings.target_density
    single = rows[min(rows, key=lambda d: abs(d - target))].get("balanced")
    measured = [{key: value,
                 **_pattern_chain(settings, model, train_data, evaluated, work, tag,
                                  epochs_for, say, log, **{key: value})}
                for value in sorted(getattr(settings, key))]
    return {"budget_points": settings.block_budget, "density": target, "single": single,
            "widths" if key == "block_columns" else "banks": measured,
            "chosen": _chosen(single, measured, key, settings.block_budget)}


def _delta_study(settings, target, train_data, evaluated, phones, normalisation, work, tag,
                 timing_of, say, log):
    """Delta-aware fine-tuning over ``settings.delta_thresholds`` (see EvaluationSettings):
    per threshold, the golden PER on each evaluated split, the columns sent and the cycles per
    frame (the performance model on the export hardware with delta units, from golden traces
    of the first ``delta_trace_utterances`` of the last split); the threshold chosen on dev;
    and, with ``settings.export``, that model exported beside the recognizer as
    ``EXPORT_delta``."""

    import ese

    from ..compiler.performance import predict_performance
    from .training import train_delta
    training = settings.training
    pruned, pruning_chain, rates = target
    hardware = ese.Config(pes=settings.export_pes, weight_bits=settings.weight_bits,
                          activation_bits=settings.activation_bits, delta=1)
    timing = timing_of(hardware)
    split = list(evaluated)[-1]
    traced = evaluated[split].inputs[:settings.delta_trace_utterances]

    def cycles(compiled):
        """Mean steady cycles per frame, and the fractions of columns sent, over ``traced``."""
        frames, sent, seen = [], {}, {}
        for x in traced:
            trace = []
            compiled.predict_codes(compiled.encode_inputs(x)[0], trace=trace)
            frames.extend(predict_performance(compiled.image, timing, trace)
                          .frame_cycles[WARMUP_FRAMES:])
            for index, recorded in enumerate(trace):
                kinds = ["inputs", "recurrent"] + (["cells"] if compiled.model.layers[
                    index].proj else [])
                for kind in kinds:
                    sent[kind] = sent.get(kind, 0) + int(np.count_nonzero(recorded[kind]))
                    seen[kind] = seen.get(kind, 0) + recorded[kind].size
        return float(np.mean(frames)), {("projection" if k == "cells" else k): sent[k] / seen[k]
                                        for k in sent}

    plain = ese.compile(pruned.recurrent, hardware)
    base_cycles, _ = cycles(plain)
    study = {"hardware": {"pes": settings.export_pes, "delta": 1},
             "epochs": settings.delta_epochs, "budget_points": settings.delta_budget,
             "change_weight": settings.delta_change_weight,
             "traced": {"split": split, "utterances": len(traced)},
             "without": {**{f"{s}_golden_per": rates[f"{s}_golden_per"] for s in evaluated},
                         "cycles_per_frame": base_cycles},
             "thresholds": []}
    # A model tuned along the same chain (the pruning chain, then these thresholds) before is
    # reused (resuming a run).
    tuned, chain = pruned, pruning_chain + ["delta", settings.delta_epochs]
    if settings.delta_change_weight:
        chain = chain + ["change_weight", settings.delta_change_weight]
        tag = f"{tag}_l1_{settings.delta_change_weight:g}"
    chosen = None
    for theta in sorted(settings.delta_thresholds):
        chain = chain + [theta]
        path = work / f"delta{tag}_{theta}.pt"
        tuned = _along_chain(
            path, chain, tuned, say, f"delta threshold {theta}",
            lambda previous, theta=theta: train_delta(
                previous, train_data, (theta, theta), settings.delta_epochs,
                training.learning_rate / 4, training.batch, training.seed, log=log,
                change_weight=settings.delta_change_weight))
        compiled = ese.compile(tuned.recurrent, hardware).with_delta((theta, theta))
        row = {"theta": theta}
        for name, data in evaluated.items():
            decodes = [greedy_decode(output_layer(tuned, outputs))
                       for outputs in golden_outputs(compiled, data.inputs)]
            row[f"{name}_golden_per"] = phone_error_rate(decodes, data.targets)
        row["cycles_per_frame"], row["sent"] = cycles(compiled)
        row["speedup"] = base_cycles / row["cycles_per_frame"]
        study["thresholds"].append(row)
        say(f"delta threshold {theta}: " + ", ".join(
            f"{name} {value:.2f}" for name, value in row.items() if name.endswith("per"))
            + f", {row['cycles_per_frame']:.0f} cycles per frame ({row['speedup']:.2f}x)")
        if row["dev_golden_per"] <= study["without"]["dev_golden_per"] + settings.delta_budget:
            chosen = (theta, tuned, compiled)
    study["chosen"] = None if chosen is None else chosen[0]
    if chosen is not None and settings.export:
        prefix = f"{settings.export}_delta"
        export_recognizer(chosen[1], phones, normalisation, hardware, prefix,
                          delta=(chosen[0], chosen[0]))
        study["export"] = prefix
        say(f"delta recognizer written to {prefix}.ese and .npz")
    return study


def _error_rates(model, program, evaluated):
    """``{SPLIT_float_per, SPLIT_golden_per}`` of ``model`` (float) and ``program`` (its
    golden model; skipped when None) on each evaluated split, and the golden decodes."""
    rates, golden = {}, {}
    for split, data in evaluated.items():
        rates[f"{split}_float_per"] = phone_error_rate(float_hypotheses(model, data),
                                                       data.targets)
        if program is not None:
            golden[split] = [greedy_decode(output_layer(model, outputs))
                             for outputs in golden_outputs(program, data.inputs)]
            rates[f"{split}_golden_per"] = phone_error_rate(golden[split], data.targets)
    return rates, golden


#: What the forked workers of :func:`golden_outputs` run: set before they fork.
_SHARED = {}


def _predict_shared(index):
    return _SHARED["program"].predict(_SHARED["inputs"][index])


def golden_outputs(program, inputs, workers=None):
    """``program.predict`` of each utterance in ``inputs``, in order, over ``workers``
    processes (default: one per core this process may use). The golden model is one Python
    loop per utterance, so the study's evaluation spends most of its time here; the workers are
    forked, sharing the program and the inputs, and run numpy alone (the host's output layer,
    in PyTorch, stays in this process)."""
    import multiprocessing
    import os
    workers = workers or len(os.sched_getaffinity(0))
    if workers <= 1 or len(inputs) <= 1:
        return [program.predict(x) for x in inputs]
    _SHARED.update(program=program, inputs=inputs)
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            return pool.map(_predict_shared, range(len(inputs)), chunksize=4)
    finally:
        _SHARED.clear()


def _described(rates):
    return ", ".join(f"{name.replace('_per', '').replace('_', ' ')} {value:.2f}%"
                     for name, value in rates.items())


def _retrain_schedule(settings):
    """Retraining epochs per density, from ``settings.retrain_epochs``."""
    epochs = settings.retrain_epochs
    if isinstance(epochs, int):
        epochs = (epochs,) * len(settings.densities)
    epochs = tuple(epochs)
    if len(epochs) != len(settings.densities) or any(int(e) < 0 for e in epochs):
        raise InputError(f"retraining epochs {list(epochs)} do not match the densities "
                         f"{list(settings.densities)}: give one count, or one per density")
    return dict(zip(settings.densities, (int(e) for e in epochs)))


def _along_chain(path, chain, previous, say, what, derive):
    """The model made along ``chain``: the one saved at ``path`` if it was made along the
    same chain (resuming a run), else ``derive(previous)``, saved there with its chain."""
    import torch
    reused = _load_along_chain(path, chain, previous)
    if reused is not None:
        say(f"{what}: reusing {path}")
        return reused
    say(f"{what}: deriving it from the model before")
    model = derive(previous)
    torch.save({"chain": chain, "state": model.state_dict()}, path)
    return model


def _load_along_chain(path, chain, like):
    """The model saved at ``path`` if it was made along ``chain`` (pruned, or delta-tuned),
    else None."""
    import copy

    import torch
    if not Path(path).exists():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:       # an unreadable or older file: prune again
        return None
    if not isinstance(saved, dict) or saved.get("chain") != json.loads(json.dumps(chain)):
        return None
    model = copy.deepcopy(like)
    model.load_state_dict(saved["state"])
    return model


def _rtl_check(program, model, data, golden, count, log):
    """Run the first ``count`` test utterances on the RTL; their decodes must equal the golden
    model's."""
    decodes, exact = [], True
    for index in range(min(count, len(data.inputs))):
        result = program.simulate(data.inputs[index], log=log)
        exact &= result.bitexact
        decodes.append(greedy_decode(output_layer(model, result.outputs)) == golden[index])
    return {"utterances": len(decodes), "bitexact": bool(exact),
            "decodes_equal_predict": bool(all(decodes))}


def write_report(report, path):
    Path(path).write_text(json.dumps(report, indent=2) + "\n")


def plot_report(report, path):
    """PER against density for both pruning kinds (float and fixed point), and the dense PER."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot
    split = report["protocol"]["evaluated"][-1]
    densities = [row["density"] for row in report["densities"]]
    figure, axes = pyplot.subplots(figsize=(6, 4))
    for kind, colour in (("balanced", "tab:blue"), ("global", "tab:orange")):
        if kind not in report["densities"][0]:
            continue
        axes.plot(densities, [row[kind][f"{split}_float_per"] for row in report["densities"]],
                  "o--", color=colour, label=f"{kind}, float")
        axes.plot(densities, [row[kind][f"{split}_golden_per"] for row in report["densities"]],
                  "s-", color=colour, label=f"{kind}, fixed point (golden model)")
    dense = report["dense"][f"{split}_float_per"]
    axes.axhline(dense, color="gray", linestyle=":", label="dense, float")
    axes.axhline(dense + 0.5, color="gray", linestyle="--", linewidth=0.8,
                 label="dense + 0.5 (the target at density <= 0.112)")
    axes.set_xscale("log")
    axes.set_xticks(densities, [f"{d:g}" for d in densities])
    axes.minorticks_off()
    axes.set_xlabel("density (non-zero weights)")
    axes.set_ylabel("phone error rate (%)")
    model = report["model"]
    name = (f"{model['layers']}-layer GRU of {model['cells']} units"
            if model.get("cell") == "gru" else
            f"{model['layers']}-layer LSTMP {model['cells']}-{model['proj']}")
    axes.set_title(f"{split.capitalize()} PER after pruning and quantization: {name}",
                   fontsize=10)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)


def plot_delta(report, path):
    """The delta study: golden PER against cycles per frame over the thresholds (each split
    evaluated), with the model without thresholds."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot
    delta = report["delta"]
    rows = delta["thresholds"]
    figure, axes = pyplot.subplots(figsize=(6, 4))
    for split, colour in zip(report["protocol"]["evaluated"], ("tab:blue", "tab:orange")):
        x = [delta["without"]["cycles_per_frame"]] + [row["cycles_per_frame"] for row in rows]
        y = [delta["without"][f"{split}_golden_per"]] + [row[f"{split}_golden_per"]
                                                          for row in rows]
        axes.plot(x, y, "o-", color=colour, label=f"{split}, golden model")
        for theta, cx, cy in zip(["none"] + [f"{row['theta']:g}" for row in rows], x, y):
            axes.annotate(theta, (cx, cy), textcoords="offset points", xytext=(4, 4),
                          fontsize=7)
    axes.set_xscale("log")
    axes.set_xlabel(f"cycles per frame (performance model, {delta['hardware']['pes']} PEs "
                    f"with delta units)")
    axes.set_ylabel("phone error rate (%)")
    model = report["model"]
    equal = "theta_x = theta_h" + (" = theta_m" if model.get("proj") else "")
    axes.set_title(f"Delta layers over thresholds ({equal})\n"
                   f"{model['layers']}-layer {model.get('cell', 'lstmp').upper()} of "
                   f"{model['cells']} cells, pruned and delta-tuned", fontsize=9)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)

