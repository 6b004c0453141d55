"""`python -m flower_core ...`: the command line that scripts and checks rely on (DESIGN.md).

With `--json` the last line printed is one JSON object. Any `FlowerError` (bad argument, bad
data, missing weights) exits with status 2 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from flower_core.errors import FlowerError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _import_tensorflow_quietly() -> None:
    """TensorFlow's C++ runtime prints start-up notices on stderr that no setting silences
    (without also disabling oneDNN); import it with stderr muted so ours stays one line."""
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise FlowerError(f"{self.prog}: {message}")


def _emit(args, payload: dict, text: str) -> None:
    if args.json:
        print(json.dumps(payload))
    else:
        print(text)


def _cmd_synth(args) -> None:
    from flower_core.synthetic import generate

    summary = generate(args.out, per_class=args.per_class, size=args.size, seed=args.seed, masks=args.masks)
    _emit(args, summary, f"synthetic dataset: {summary['images']} images in {summary['out']}")


def _cmd_eda(args) -> None:
    from flower_core.data import resolve_data_root
    from flower_core.eda import dataset_report, format_report

    report = dataset_report(resolve_data_root(args.data))
    _emit(args, report, format_report(report))


def _units(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise FlowerError(f"--dense-units takes comma-separated integers. Received: {text!r}") from None


def _cmd_train(args) -> None:
    from flower_core.config import make_config
    from flower_core.data import resolve_data_root
    from flower_core.progress import TerminalReporter
    from flower_core.train import train_new_run

    overrides = {
        "backbone": args.backbone,
        "weights": args.weights,
        "image_size": args.image_size,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "fine_tune_blocks": args.fine_tune_blocks,
        "learning_rate": args.learning_rate,
        "cache_features": False if args.no_cache else None,
        "strategy": args.strategy,
        "preprocessing": args.preprocessing,
        "pooling": args.pooling,
        "dropout": args.dropout,
        "label_smoothing": args.label_smoothing,
        "augment_views": args.augment_views,
        "augment_cache": args.augment_cache,
        "fine_tune_epochs": args.fine_tune_epochs,
        "fine_tune_learning_rate": args.fine_tune_learning_rate,
        "patience": args.patience,
        "augment": args.augment,
        "dense_units": _units(args.dense_units),
    }
    config = make_config(args.preset, **overrides)
    reporter = None if args.json else TerminalReporter()
    run_dir = train_new_run(config, resolve_data_root(args.data), args.runs, reporter=reporter,
                            split_file=args.split)
    from flower_core.runs import read_json, read_status

    status = read_status(run_dir)
    if status.get("state") == "failed":
        raise FlowerError(f"{status.get('message', 'training failed')} (run {run_dir.name})")
    metrics = read_json(run_dir / "metrics.json", default={}) or {}
    payload = {"run_id": run_dir.name, "run_dir": str(run_dir), "state": status.get("state"),
               "test_accuracy": metrics.get("test_accuracy"), "test_loss": metrics.get("test_loss")}
    accuracy = metrics.get("test_accuracy")
    summary = f"test accuracy {accuracy:.4f}" if accuracy is not None else "no test metrics"
    _emit(args, payload, f"run {run_dir.name}: {status.get('state')}, {summary} ({run_dir})")


def _cmd_runs(args) -> None:
    from flower_core.runs import RunStore

    rows = RunStore(args.runs).list_runs()
    lines = [f"{r['run_id']:<48} {r.get('state') or '':<11} acc={r.get('test_accuracy')}" for r in rows]
    _emit(args, {"runs": rows}, "\n".join(lines) or "no runs yet")


def _cmd_evaluate(args) -> None:
    from flower_core.evaluate import evaluate_run, format_metrics

    metrics = evaluate_run(args.run, args.data)
    _emit(args, metrics, format_metrics(metrics))


def _cmd_predict(args) -> None:
    from flower_core.predict import format_predictions, predict_paths

    results = predict_paths(args.run, args.images, top_k=args.top_k)
    _emit(args, {"predictions": results}, format_predictions(results))


def _cmd_explain(args) -> None:
    from flower_core.explain import explain_path

    result = explain_path(args.run, args.image, method=args.method, out=args.out,
                          layer=args.layer, target_class=args.target_class)
    _emit(args, result, f"{result['predicted_class']}: heatmap {result['heatmap_path']}, "
          f"faithfulness {result['faithfulness']:.3f}")


def _cmd_export(args) -> None:
    from flower_core.export import export_run, format_report

    report = export_run(args.run, args.out, args.formats)
    _emit(args, report, format_report(report))


def _cmd_worker(args) -> None:
    from flower_core.jobs import run_worker

    run_worker(args.runs)


def build_parser() -> argparse.ArgumentParser:
    from flower_core.export_formats import DEFAULT_FORMATS, FORMATS

    parser = _Parser(prog="python -m flower_core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("synth", help="generate the labelled synthetic demo dataset")
    p.add_argument("--out", required=True)
    p.add_argument("--per-class", type=int, default=60)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--masks", action="store_true", help="also write flower-region masks")
    p.set_defaults(handler=_cmd_synth)

    p = sub.add_parser("eda", help="dataset statistics")
    p.add_argument("--data")
    p.set_defaults(handler=_cmd_eda)

    p = sub.add_parser("train", help="train a model and store it as a run")
    p.add_argument("--data")
    p.add_argument("--runs")
    p.add_argument("--preset", default="base")
    p.add_argument("--backbone")
    p.add_argument("--weights", help="imagenet, none or a weights file path")
    p.add_argument("--image-size", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--fine-tune-blocks", type=int)
    p.add_argument("--fine-tune-epochs", type=int)
    p.add_argument("--fine-tune-learning-rate", type=float,
                   help="Adam learning rate of the fine-tuning phase (default 1e-5)")
    p.add_argument("--preprocessing", choices=["rescale", "imagenet"])
    p.add_argument("--pooling", choices=["max", "avg"])
    p.add_argument("--dense-units", help="comma-separated head sizes, e.g. 512,128")
    p.add_argument("--dropout", type=float)
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--augment-views", type=int, help="cached augmented views per photo")
    p.add_argument("--augment-cache", choices=["maps", "views"],
                   help="with augmentation on a frozen backbone: cache each photo's feature maps and "
                        "augment them every epoch (maps, one backbone pass; the default) or cache K "
                        "augmented views of each photo (views, K passes)")
    p.add_argument("--patience", type=int, help="early-stopping patience in epochs")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="study augmentation on or off (overrides the preset)")
    p.add_argument("--split", help="reuse the split.json of an earlier run")
    p.add_argument("--no-cache", action="store_true", help="train end to end, no feature cache")
    p.add_argument("--strategy", choices=["default", "mirrored"],
                   help="mirrored: data-parallel over all GPUs (or logical CPUs)")
    p.set_defaults(handler=_cmd_train)

    p = sub.add_parser("evaluate", help="metrics of a run on its test split or a folder")
    p.add_argument("--run", required=True)
    p.add_argument("--data")
    p.set_defaults(handler=_cmd_evaluate)

    p = sub.add_parser("predict", help="top-k classes of photos")
    p.add_argument("--run", required=True)
    p.add_argument("images", nargs="+")
    p.add_argument("--top-k", type=int, default=3)
    p.set_defaults(handler=_cmd_predict)

    p = sub.add_parser("explain", help="Grad-CAM heatmap of a photo")
    p.add_argument("--run", required=True)
    p.add_argument("image")
    p.add_argument("--method", default="gradcam", choices=["gradcam", "gradcam++", "scorecam"])
    p.add_argument("--layer")
    p.add_argument("--target-class")
    p.add_argument("--out")
    p.set_defaults(handler=_cmd_explain)

    p = sub.add_parser("export", help="export a run's model to SavedModel, TFLite and ONNX, verified")
    p.add_argument("--run", required=True)
    p.add_argument("--out", required=True, help="a new folder to write")
    p.add_argument("--formats", help=f"comma-separated: {','.join(FORMATS)} "
                                    f"(default {','.join(DEFAULT_FORMATS)})")
    p.set_defaults(handler=_cmd_export)

    p = sub.add_parser("runs", help="list runs")
    p.add_argument("--runs")
    p.set_defaults(handler=_cmd_runs)

    p = sub.add_parser("worker", help="train queued runs one at a time (used by the app)")
    p.add_argument("--runs")
    p.set_defaults(handler=_cmd_worker)

    for action in sub.choices.values():
        action.add_argument("--json", action="store_true", help="print one JSON object last")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command not in ("synth", "eda", "runs"):
            _import_tensorflow_quietly()
        args.handler(args)
    except FlowerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0
