"""`python -m flower_core ...`: the command line that scripts and checks rely on (docs/ARCHITECTURE.md).

With `--json` the last line printed is one JSON object. Any `FlowerError` (bad argument, bad
data, missing weights) exits with status 2 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys

from flower_core.cli.groups import add_commands, studies_payload
from flower_core.cli.options import (
    Parser,
    add_data_option,
    add_run_option,
    add_runs_option,
    add_setting_option,
    add_setting_options,
    emit,
    presets_text,
)
from flower_core.errors import FlowerError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _import_tensorflow_quietly() -> None:
    """TensorFlow's C++ runtime prints start-up notices on stderr that no setting silences
    (without also disabling oneDNN); import it with stderr muted so ours stays one line.

    The garbage collector is off meanwhile, and the objects made are then frozen out of its
    reach: they all live as long as the process, and collecting them was a large part of the
    import (bench/README.md, "The train command against ..."). Keras imports pandas only to
    accept DataFrames, which no command gives it, so pandas is held back while
    Keras imports (Keras then takes no DataFrames in this process) and stays importable
    afterwards for what needs it."""
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    gc.disable()
    holds_pandas = "pandas" not in sys.modules
    if holds_pandas:
        sys.modules["pandas"] = None  # makes `import pandas` fail, which Keras allows for
    try:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    finally:
        if holds_pandas:
            del sys.modules["pandas"]
        gc.freeze()
        gc.enable()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _cmd_synth(args) -> None:
    from flower_core.data.synthetic import generate

    summary = generate(args.out, per_class=args.per_class, size=args.size, seed=args.seed, masks=args.masks)
    emit(args, summary, f"synthetic dataset: {summary['images']} images in {summary['out']}")


def _cmd_eda(args) -> None:
    from flower_core.data.dataset import resolve_data_root
    from flower_core.data.eda import dataset_report, format_report

    report = dataset_report(resolve_data_root(args.data))
    emit(args, report, format_report(report))


def _cmd_fix(args) -> None:
    from flower_core.data import fixes
    from flower_core.data.dataset import resolve_data_root

    root = resolve_data_root(args.data)
    if args.undo:
        entry = fixes.undo(root)
        emit(args, {"undone": entry}, f"undone: {fixes.describe(entry)}")
        return
    if (args.move or args.rename_class) and not args.to:
        raise FlowerError("--move and --rename-class need --to: the class to move to, or the new name")
    if args.move:
        entry = fixes.move_photo(root, args.move, args.to)
    elif args.rename_class:
        entry = fixes.rename_class(root, args.rename_class, args.to)
    elif args.exclude:
        entry = fixes.exclude_photo(root, args.exclude)
    elif args.keep:
        entry = fixes.keep_photo(root, args.keep)
    elif args.add_class:
        entry = fixes.add_class(root, args.add_class)
    else:
        entry = fixes.remove_class(root, args.remove_class)
    emit(args, {"done": entry}, f"done: {fixes.describe(entry)}")


def _cmd_audit(args) -> None:
    from flower_core.data.audit import audit_dataset, format_audit
    from flower_core.data.dataset import resolve_data_root

    reporter = None if args.json else _stage_bar()
    result = audit_dataset(
        resolve_data_root(args.data),
        backbone=args.backbone,
        weights=args.weights,
        image_size=args.image_size,
        folds=args.folds,
        seed=args.seed,
        progress=reporter,
    ).to_json()
    if reporter:
        print(file=sys.stderr)
    emit(args, result, format_audit(result))


def _stage_bar():
    """`progress(stage, done, total)` as one line on stderr, rewritten in place."""

    def report(stage: str, done: int, total: int) -> None:
        print(f"\r{stage} {done}/{total}   ", end="", file=sys.stderr, flush=True)

    return report


def _cmd_train(args) -> None:
    from flower_core.config import SETTINGS, make_config
    from flower_core.data.dataset import resolve_data_root
    from flower_core.training.jobs import train_new_run
    from flower_core.training.progress import TerminalReporter

    overrides = {name: getattr(args, name) for name in SETTINGS}
    config = make_config(args.preset, **overrides)
    reporter = None if args.json else TerminalReporter()
    run_dir = train_new_run(
        config, resolve_data_root(args.data), args.runs, reporter=reporter, split_file=args.split
    )
    from flower_core.store.runs import Run

    run = Run.open(run_dir)
    status = run.status
    if status.state == "failed":
        raise FlowerError(f"{status.message or 'training failed'} (run {run_dir.name})")
    metrics = run.metrics
    from flower_core.training.stopping import run_stop_reason

    stopped = run_stop_reason(run_dir, status)
    from flower_core.evaluation.uncertainty import accuracy_text, wilson_interval

    accuracy, photos = metrics.test_accuracy, metrics.num_files
    payload = {
        "run_id": run_dir.name,
        "run_dir": str(run_dir),
        "state": status.state,
        "test_accuracy": accuracy,
        "test_interval": list(wilson_interval(accuracy, photos)) if accuracy is not None and photos else None,
        "test_photos": photos,
        "test_loss": metrics.test_loss,
        "stop_reason": stopped,
    }
    summary = "no test metrics" if accuracy is None else f"test accuracy {accuracy_text(accuracy, photos)}"
    emit(args, payload, f"stopped: {stopped}\nrun {run_dir.name}: {status.state}, {summary} ({run_dir})")


def _cmd_runs(args) -> None:
    from flower_core.evaluation.uncertainty import accuracy_text
    from flower_core.store.runs import RunStore

    rows = RunStore(args.runs).list_runs()
    lines = [
        f"{r['run_id']:<48} {r.get('state') or '':<11} "
        f"acc={accuracy_text(r.get('test_accuracy'), r.get('test_photos'))}"
        for r in rows
    ]
    emit(
        args,
        {"runs": rows, "studies": studies_payload(args.runs) if args.json else {}},
        "\n".join(lines) or "no runs yet",
    )


def _cmd_evaluate(args) -> None:
    from flower_core.evaluation.evaluate import evaluate_run, format_metrics

    metrics = evaluate_run(args.run, args.data)
    emit(args, metrics, format_metrics(metrics))


def _cmd_predict(args) -> None:
    from flower_core.evaluation.predict import format_predictions, predict_paths, to_csv

    results = predict_paths(args.run, args.images, top_k=args.top_k)
    written = {"csv": str(to_csv(results, args.csv))} if args.csv else {}
    lines = format_predictions(results) + (f"\nwrote {written['csv']}" if written else "")
    emit(args, {"predictions": results, **written}, lines)


def _cmd_explain(args) -> None:
    from flower_core.explain import explain_path

    result = explain_path(
        args.run,
        args.image,
        method=args.method,
        out=args.out,
        layer=args.layer,
        target_class=args.target_class,
    )
    emit(
        args,
        result,
        f"{result['predicted_class']}: heatmap {result['heatmap_path']}, "
        f"faithfulness {result['faithfulness']:.3f}",
    )


def _cmd_export(args) -> None:
    from flower_core.export.exporter import export_run, format_report

    report = export_run(args.run, args.out, args.formats)
    emit(args, report, format_report(report))


def _cmd_worker(args) -> None:
    from flower_core.training.jobs import serve_worker

    serve_worker(args.runs, args.idle, args.warm_data)


def _idle_help() -> str:
    from flower_core.training.jobs import IDLE_ENV, WORKER_IDLE_S

    return (
        "wait this long for the next run once the queue is empty, with TensorFlow loaded "
        f"(default: {IDLE_ENV}, else {WORKER_IDLE_S:g}; 0 exits at once)"
    )


# Commands that never need TensorFlow: `main` does not import it for them.
LIGHT_COMMANDS = ("synth", "eda", "fix")


class _ExplainMethods:
    """The CAM methods' names, read from `flower_core.explain` (which imports TensorFlow) only
    when `explain` parses its `--method` or its help is shown, as argparse's `choices`."""

    @staticmethod
    def _names() -> list[str]:
        from flower_core.explain import METHODS

        return list(METHODS)

    def __contains__(self, name) -> bool:
        return name in self._names()

    def __iter__(self):
        return iter(self._names())


def build_parser() -> argparse.ArgumentParser:
    from flower_core.config import PRESETS, SUGGESTED_PRESET
    from flower_core.export.formats import DEFAULT_FORMATS, FORMATS

    parser = Parser(prog="python -m flower_core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("synth", help="generate the labelled synthetic demo dataset")
    p.add_argument("--out", required=True, help="the dataset folder to write")
    p.add_argument("--per-class", type=int, default=60, help="photos per class (default 60)")
    p.add_argument("--size", type=int, default=128, help="photo width and height in pixels (default 128)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the drawing (default 0)")
    p.add_argument("--masks", action="store_true", help="also write flower-region masks")
    p.set_defaults(handler=_cmd_synth)

    p = sub.add_parser("eda", help="dataset statistics")
    add_data_option(p)
    p.set_defaults(handler=_cmd_eda)

    p = sub.add_parser(
        "fix",
        help="relabel, exclude or keep a photo, add, rename or remove a class, or undo the last fix",
        description="Every fix is appended to the dataset's journal and undone last first; an excluded "
        "photo moves into a hidden folder of the dataset, never deleted.",
    )
    add_data_option(p)
    actions = p.add_mutually_exclusive_group(required=True)
    actions.add_argument("--move", metavar="PHOTO", help="move PHOTO (<class>/<photo>) into the class --to")
    actions.add_argument("--exclude", metavar="PHOTO", help="move PHOTO into the dataset's hidden folder")
    actions.add_argument("--keep", metavar="PHOTO", help="mark PHOTO reviewed, its label kept")
    actions.add_argument("--add-class", metavar="NAME", help="a new, empty class folder")
    actions.add_argument("--rename-class", metavar="NAME", help="rename the class NAME to --to")
    actions.add_argument("--remove-class", metavar="NAME", help="move the class NAME into the hidden folder")
    actions.add_argument("--undo", action="store_true", help="undo the last fix still standing")
    p.add_argument("--to", metavar="CLASS", help="the class to move to, or the new name of a class")
    p.set_defaults(handler=_cmd_fix)

    p = sub.add_parser(
        "audit",
        help="rank a dataset's likely label errors, duplicates and outliers",
        description="Out-of-fold class probabilities from heads trained on the photos' cached "
        "features, then confident learning; duplicates and outliers from the same features. The "
        f"backbone and image size default to the {SUGGESTED_PRESET} preset's "
        f"({PRESETS[SUGGESTED_PRESET]['backbone']}, {PRESETS[SUGGESTED_PRESET]['image_size']} px).",
    )
    add_data_option(p)
    add_setting_option(p, "backbone")
    add_setting_option(p, "weights")
    add_setting_option(p, "image_size")
    p.add_argument(
        "--folds", type=int, default=5, help="stratified folds of the out-of-fold heads (default 5)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the folds and heads (default 0)")
    p.set_defaults(handler=_cmd_audit)

    p = sub.add_parser(
        "train",
        help="train a model and store it as a run",
        epilog=presets_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_option(p)
    add_runs_option(p)
    p.add_argument("--split", help="reuse the split.json of an earlier run")
    add_setting_options(p)
    p.set_defaults(handler=_cmd_train)

    p = sub.add_parser("evaluate", help="metrics of a run on its test split or a folder")
    add_run_option(p)
    p.add_argument("--data", help="a labelled folder, <root>/<class>/<photo> (default: the run's test split)")
    p.set_defaults(handler=_cmd_evaluate)

    p = sub.add_parser("predict", help="top-k classes of photos")
    add_run_option(p)
    p.add_argument("images", nargs="+", help="photo files and folders (walked for photos)")
    p.add_argument("--top-k", type=int, default=3, help="classes listed per photo (default 3)")
    p.add_argument("--csv", help="also write one row per photo to this CSV file (written atomically)")
    p.set_defaults(handler=_cmd_predict)

    p = sub.add_parser("explain", help="Grad-CAM heatmap of a photo")
    add_run_option(p)
    p.add_argument("image", help="a photo file")
    p.add_argument(
        "--method",
        default="gradcam",
        choices=_ExplainMethods(),
        metavar="METHOD",
        help="the class-activation method: %(choices)s (default gradcam)",
    )
    p.add_argument("--layer", help="the convolution layer to explain (default: the backbone's last)")
    p.add_argument("--target-class", help="the class to explain (default: the predicted one)")
    p.add_argument(
        "--out", help="the overlay PNG to write (default: <run>/explanations/<photo>_<method>.png)"
    )
    p.set_defaults(handler=_cmd_explain)

    p = sub.add_parser("export", help="export a run's model to SavedModel, TFLite and ONNX, verified")
    add_run_option(p)
    p.add_argument("--out", required=True, help="a new folder to write")
    p.add_argument(
        "--formats", help=f"comma-separated: {','.join(FORMATS)} (default {','.join(DEFAULT_FORMATS)})"
    )
    p.set_defaults(handler=_cmd_export)

    p = sub.add_parser("runs", help="list runs")
    add_runs_option(p)
    p.set_defaults(handler=_cmd_runs)

    p = sub.add_parser("worker", help="train queued runs one at a time (used by the app)")
    add_runs_option(p)
    p.add_argument(
        "--idle",
        type=float,
        metavar="SECONDS",
        help=_idle_help(),
    )
    p.add_argument(
        "--warm-data",
        metavar="DIR",
        help="dataset folder whose photos the worker checks while it waits (default: the newest run's)",
    )
    p.set_defaults(handler=_cmd_worker)

    add_commands(sub)
    for action in sub.choices.values():
        action.add_argument("--json", action="store_true", help="print one JSON object last")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    light = bool(argv) and argv[0] in LIGHT_COMMANDS
    try:
        if not light:
            _import_tensorflow_quietly()
        args = build_parser().parse_args(argv)
        args.handler(args)
    except FlowerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0
