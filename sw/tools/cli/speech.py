"""Commands of the speech study: the corpus, the evaluation and the formats study."""

import json
from pathlib import Path

from .common import (
    density_value,
    make_console,
    non_negative_int,
    number_in,
    positive_int,
    seed_value,
    threshold_value,
)


def cmd_corpus(args):
    from ...speech.corpus import build_corpus
    console = make_console()
    with console.status("synthesising") as status:
        counts = build_corpus(args.directory, args.utterances, seed=args.seed,
                              log=lambda text: status.update(text))
    print(f"wrote {sum(counts.values())} utterances to {args.directory} "
          f"(train {counts['train']}, dev {counts['dev']}, test {counts['test']})")
    return 0


def _retrain_epochs(args):
    from ...speech import EvaluationSettings
    if args.retrain_epochs is None:
        default = EvaluationSettings()
        return default.retrain_epochs if tuple(args.densities) == default.densities else 2
    return args.retrain_epochs[0] if len(args.retrain_epochs) == 1 else tuple(args.retrain_epochs)


def cmd_speech_eval(args):
    from ....hw.timing import hardware_timing
    from ....sim.build import cache_root
    from ...speech import (
        EvaluationSettings,
        TrainingSettings,
        evaluate,
        plot_delta,
        plot_report,
        write_report,
    )
    # The WordNet corpus of this size and seed (the grammar's corpora before it had no name).
    corpus = args.corpus or str(cache_root() / f"corpus-wordnet-{args.utterances}-{args.seed}")
    training = TrainingSettings(cell=args.cell, cells=args.cells, proj=args.proj,
                                layers=args.layers,
                                epochs=args.epochs, batch=args.batch, seed=args.seed)
    settings = EvaluationSettings(
        corpus=corpus, utterances=args.utterances, training=training,
        densities=tuple(args.densities), target_density=args.target_density,
        prune_steps=args.prune_steps,
        kinds=("balanced", "global") if args.pruning == "both" else (args.pruning,),
        retrain_epochs=_retrain_epochs(args),
        pes=args.pes,
        rtl_utterances=args.rtl_utterances, work=args.work or "", export=args.export or "",
        export_pes=args.export_pes, test=args.test,
        delta_thresholds=tuple(args.delta_thresholds or ()), delta_epochs=args.delta_epochs,
        delta_budget=args.delta_budget, delta_change_weight=args.delta_change_weight,
        block_columns=tuple(args.block_columns or ()), block_budget=args.block_budget,
        column_banks=tuple(args.column_banks or ()),
        command=args.command_line)
    console = make_console()
    with console.status("speech evaluation") as status:
        report = evaluate(settings, log=lambda text: status.update(text),
                          timing_of=hardware_timing)
    # The plots go beside the report unless named, so that a second study (another cell,
    # another -o) never draws over the first one's.
    output = Path(args.output)
    plot = args.plot or output.with_suffix(".png")
    write_report(report, output)
    plot_report(report, plot)
    if "delta" in report:
        plot_delta(report, args.delta_plot or output.with_name(f"{output.stem}_delta.png"))
    from rich.table import Table
    splits = report["protocol"]["evaluated"]
    table = Table(title=f"phone error rates (%) on {' and '.join(splits)}, float / golden model")
    table.add_column("density")
    kinds = settings.kinds
    for kind in kinds:
        for split in splits:
            table.add_column(f"{kind}, {split}")
    table.add_row("dense", *[f"{report['dense'][f'{split}_float_per']:.2f}"
                             for _ in kinds for split in splits])
    for row in report["densities"]:
        table.add_row(f"{row['density']:g}", *[
            f"{row[kind][f'{split}_float_per']:.2f} / {row[kind][f'{split}_golden_per']:.2f}"
            for kind in kinds for split in splits])
    console.print(table)
    _print_pattern_studies(console, report, splits)
    delta = report.get("delta")
    if delta:
        table = Table(title=f"delta layers at density {settings.target_density:g}, "
                            f"{delta['hardware']['pes']} PEs: golden PER (%) and cycles per "
                            f"frame (model, {delta['traced']['utterances']} "
                            f"{delta['traced']['split']} utterances)"
                            + (f", L1 weight {delta['change_weight']:g}"
                               if delta["change_weight"] else ""))
        for column in ("theta", *[f"{split} PER" for split in splits], "cycles/frame",
                       "speedup", "x / h / m sent"):
            table.add_column(column)
        without = delta["without"]
        table.add_row("none", *[f"{without[f'{split}_golden_per']:.2f}" for split in splits],
                      f"{without['cycles_per_frame']:.0f}", "1.00", "")
        for row in delta["thresholds"]:
            sent = row["sent"]
            table.add_row(f"{row['theta']:g}", *[f"{row[f'{split}_golden_per']:.2f}"
                                                 for split in splits],
                          f"{row['cycles_per_frame']:.0f}", f"{row['speedup']:.2f}",
                          " / ".join(f"{sent.get(k, 0):.0%}"
                                     for k in ("inputs", "recurrent", "projection")))
        console.print(table)
        console.print(f"chosen on dev (within {delta['budget_points']:g} points): "
                      f"{delta['chosen']}")
    rtl = report.get("rtl")
    if rtl and rtl["utterances"]:
        console.print(f"RTL on {rtl['utterances']} {rtl['split']} utterances: bit-exact "
                      f"{rtl['bitexact']}, decodes equal predict {rtl['decodes_equal_predict']}")
    elif rtl:
        console.print("RTL: no utterance run (--rtl-utterances 0)")
    console.print(f"report written to {output}, plot to {plot}")
    return 0 if not rtl or (rtl["bitexact"] and rtl["decodes_equal_predict"]) else 1


def _print_pattern_studies(console, report, splits):
    """The block-entry and column-bank studies of a speech-eval report, as tables."""
    from rich.table import Table
    for name, rows, key, heading, title in (
            ("blocks", "widths", "block_columns", "columns per entry",
             "block entries at density {:g}, load-balanced"),
            ("banks", "banks", "column_banks", "banks",
             "column banks at density {:g}, balanced per (PE, bank)")):
        study = report.get(name)
        if not study:
            continue
        table = Table(title=title.format(study["density"])
                      + ": PER (%) float / golden model, multiply cycles per PE")
        for column in (heading, *splits, "cycles per PE"):
            table.add_column(column)
        for row in study[rows]:
            table.add_row(str(row[key]), *[
                f"{row[f'{split}_float_per']:.2f} / {row[f'{split}_golden_per']:.2f}"
                for split in splits], str(row["multiply_cycles_per_pe"]))
        console.print(table)
        console.print(f"chosen on dev (golden PER at most {study['budget_points']:g} above "
                      f"single weights balanced per PE): {study['chosen']}")


def cmd_formats_study(args):
    from ...speech import CompiledRecognizer
    from ..demo import RECOGNIZER
    from ..formats_study import FormatsStudySettings, run_formats_study
    settings = FormatsStudySettings(gain=args.gain,
                                    calibration_sentences=args.calibration_sentences,
                                    test_sentences=args.test_sentences, seed=args.seed)
    console = make_console()
    with console.status("formats study") as status:
        report = run_formats_study(settings, CompiledRecognizer(RECOGNIZER),
                                   log=lambda text: status.update(text))
    from rich.table import Table
    table = Table(title=f"the committed recognizer rescaled by {report.gain:g} (largest weight "
                        f"{report.largest_weight:.2f}); {report.test_frames} test frames, "
                        f"float PER {report.float_per:.2f}%")
    for column in ("formats", "x, W_x", "saturated w / x", "max |err|", "mean |err|",
                   "golden PER"):
        table.add_column(column)
    for row in report.rows:
        table.add_row(row["formats"], f"{row['input_format']}, {row['input_weight_format']}",
                      f"{row['saturated_weights']} / {row['saturated_inputs']}",
                      f"{row['max_error']:.4f}", f"{row['mean_error']:.5f}",
                      f"{row['golden_per']:.2f}%")
    console.print(table)
    if args.output:
        Path(args.output).write_text(json.dumps(report.to_dict(), indent=1) + "\n")
        console.print(f"report written to {args.output}")
    if args.json:
        print(json.dumps(report.to_dict()))
    return 0


def register(commands):
    """Add the speech commands to the parser's subcommands."""
    from ...speech import EvaluationSettings, TrainingSettings
    corp = commands.add_parser(
        "corpus", help="synthesise a phone-labelled speech corpus with espeak-ng",
        description="Synthesise DIR/{train,dev,test}/NAME.wav with NAME.phn phone "
                    "transcripts (espeak-ng voices, speeds, pitches, noise). Your own corpus "
                    "in the same layout works with `ese speech-eval --corpus DIR`.")
    corp.add_argument("directory")
    corp.add_argument("--utterances", type=positive_int, default=EvaluationSettings.utterances)
    corp.add_argument("--seed", type=seed_value, default=0)
    corp.set_defaults(run=cmd_corpus)

    speech = commands.add_parser(
        "speech-eval", help="train an LSTMP (or GRU) phone recognizer, prune, quantize, "
                            "report PER")
    speech.add_argument("--corpus", help="corpus directory (default: one synthesised in the "
                                         "cache, of --utterances utterances)")
    speech.add_argument("--utterances", type=positive_int, default=EvaluationSettings.utterances)
    speech.add_argument("--cell", choices=("lstmp", "gru"), default="lstmp",
                        help="the recognizer's layers: LSTMP (default) or GRU (--cells units, "
                             "no --proj)")
    speech.add_argument("--cells", type=positive_int, default=TrainingSettings.cells)
    speech.add_argument("--proj", type=positive_int, default=TrainingSettings.proj)
    speech.add_argument("--layers", type=positive_int, default=2)
    speech.add_argument("--epochs", type=positive_int, default=TrainingSettings.epochs)
    speech.add_argument("--batch", type=positive_int, default=TrainingSettings.batch)
    speech.add_argument("--densities", type=density_value, nargs="+",
                        default=list(EvaluationSettings.densities))
    speech.add_argument("--target-density", type=density_value, default=0.112,
                        help="the density checked on the RTL")
    speech.add_argument("--prune-steps", type=positive_int, default=1,
                        help="pruning steps from one density to the next")
    speech.add_argument("--retrain-epochs", type=non_negative_int, nargs="+", default=None,
                        help="retraining epochs after pruning to each density (one count for "
                             "all, or one per density; default: "
                             f"{' '.join(map(str, EvaluationSettings.retrain_epochs))} for the "
                             "default densities, else 2)")
    speech.add_argument("--pes", type=positive_int, default=32)
    speech.add_argument("--rtl-utterances", type=non_negative_int, default=3)
    speech.add_argument("--work", help="checkpoints and models (default: CORPUS/work)")
    speech.add_argument("--export", metavar="PREFIX",
                        help="write the load-balanced recognizer at the target density as "
                             "PREFIX.ese (the accelerator's image) and PREFIX.npz (the host's "
                             "output layer, phones, feature scaling)")
    speech.add_argument("--export-pes", type=positive_int, default=8,
                        help="PEs the exported recognizer is compiled for")
    speech.add_argument("--pruning", choices=["both", "balanced", "global"], default="both",
                        help="the pruning chains: load-balanced and global (default), or one")
    speech.add_argument("--block-columns", type=positive_int, nargs="+", metavar="K",
                        help="block entries of K columns against single weights: for each, a "
                             "load-balanced chain pruning whole blocks from the same dense "
                             "model down to the target density, with float and golden PER")
    speech.add_argument("--column-banks", type=positive_int, nargs="+", metavar="B",
                        help="single weights balanced per (PE, column bank) against per PE "
                             "(the balance column lanes would need): "
                             "for each B, a chain from the same dense model, column c in bank "
                             "c mod B")
    speech.add_argument("--block-budget", type=number_in(0.0, 1000.0, "points of PER", True),
                        default=EvaluationSettings.block_budget,
                        help="the chosen block width's (or bank count's) dev PER may exceed "
                             "single weights' by this many points")
    speech.add_argument("--delta-thresholds", type=threshold_value, nargs="+",
                        metavar="THETA",
                        help="delta-aware fine-tuning of the load-balanced model at the target "
                             "density, one chain through these thresholds (theta_x = theta_h "
                             "= theta_m, real), with golden PER, columns sent and cycles per "
                             "frame for each")
    speech.add_argument("--delta-epochs", type=positive_int,
                        default=EvaluationSettings.delta_epochs,
                        help="fine-tuning epochs per threshold")
    speech.add_argument("--delta-budget", type=number_in(0.0, 1000.0, "points of PER", True),
                        default=EvaluationSettings.delta_budget,
                        help="the chosen threshold's dev PER may exceed the model's without "
                             "thresholds by this many points")
    speech.add_argument("--delta-change-weight", type=number_in(0.0, 1e6, "a weight", True),
                        default=EvaluationSettings.delta_change_weight, metavar="WEIGHT",
                        help="delta-aware fine-tuning adds WEIGHT times the states' mean "
                             "absolute change from frame to frame to the loss (an L1 term, "
                             "as in Neil et al.'s Delta Networks; default 0, none)")
    speech.add_argument("--delta-plot",
                        help="with --delta-thresholds: PER against cycles per frame (default: "
                             "beside the report, OUTPUT's name with _delta.png)")
    speech.add_argument("--seed", type=seed_value, default=0)
    speech.add_argument("--test", action="store_true",
                        help="evaluate the test set too: for the final run only, once every "
                             "choice has been made on the dev set (which every run evaluates)")
    speech.add_argument("-o", "--output", default="reports/speech.json")
    speech.add_argument("--plot", help="PER against density (default: beside the report, "
                                       "OUTPUT's name with .png)")
    speech.set_defaults(run=cmd_speech_eval)

    study = commands.add_parser(
        "formats-study",
        help="output error against float with ESE's formats and with chosen ones",
        description="Rescale the committed recognizer into an equivalent float model whose "
                    "weights lie beyond Q1.10 and compare, on sentences spoken by test voices, "
                    "its fixed-point output error and PER with ESE's formats, formats from the "
                    "weights, and formats from the weights and calibration frames.")
    study.add_argument("--gain", type=number_in(1.0, 1024.0, "a gain from 1 to 1024", True),
                       default=16.0, help="factor W_x and W_ym grow by (default 16)")
    study.add_argument("--calibration-sentences", type=positive_int, default=4)
    study.add_argument("--test-sentences", type=positive_int, default=8)
    study.add_argument("--seed", type=seed_value, default=11)
    study.add_argument("-o", "--output", help="write the report as JSON to this file")
    study.add_argument("--json", action="store_true")
    study.set_defaults(run=cmd_formats_study)
