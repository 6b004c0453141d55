"""`python -m flower_core study | sweep | groups`: queue the study or a sweep as one group, follow
it, and find, cancel or delete groups. Added to `commands.build_parser` by `add_commands`."""

from __future__ import annotations

import sys

from flower_core.cli.options import add_data_option, add_runs_option, add_setting_option, emit
from flower_core.config import DEFAULT_MAX_RUNS, DEFAULT_PRESET, MAX_SEEDS
from flower_core.errors import FlowerError


def _data_root(args):
    from flower_core.data.dataset import resolve_data_root

    return resolve_data_root(args.data)


def _queue(args, kind: str, planned_fn, start_fn, **options) -> None:
    """Estimate, queue, and (with --wait) follow a group; prints what it queued, or the table."""
    from flower_core.groups.group import group_rows, wait_group
    from flower_core.training.estimate import estimate_group, estimate_text

    data_root = _data_root(args)
    planned = planned_fn(**options)
    configs = [p.config for p in planned]
    estimate = estimate_group(configs, data_root, runs_root=args.runs, calibration="now")
    record = start_fn(data_root, args.runs, **options)
    note = f"{kind} {record['id']}: {len(record['runs'])} runs queued, {estimate_text(estimate)}"
    if args.wait:
        print(note, file=sys.stderr)
        rows = wait_group(
            args.runs, record["id"], on_change=lambda counts: print(f"  {counts}", file=sys.stderr)
        )
    else:
        rows = group_rows(args.runs, record["id"])
    payload, text = _results(kind, rows, record)
    emit(
        args,
        {
            "group": record["id"],
            "kind": kind,
            "runs": record["runs"],
            "estimate_s": round(estimate["seconds"], 1),
            "estimate_range_s": [round(estimate["low_s"], 1), round(estimate["high_s"], 1)],
            **payload,
        },
        f"{note}\n{text}",
    )


def _results(kind: str, rows: list[dict], record: dict) -> tuple[dict, str]:
    from flower_core.groups.group import state_counts

    states = state_counts(rows)
    if kind == "study":
        from flower_core.groups.study import format_table, study_table

        table = study_table(rows)
        return {"states": states, "table": table}, format_table(table)
    from flower_core.evaluation.uncertainty import accuracy_text
    from flower_core.groups.sweep import best_by_validation, sweep_results

    settings = list(record["info"]["grid"])
    results = sweep_results(rows, settings)
    best = best_by_validation(rows, settings)
    tied = [r["combination"] for r in results if r["leader"]]

    def shown(value):
        return value if value is None else round(value, 4)

    lines = [
        f"{r['combination']:<40} val {shown(r['val_accuracy'])}  "
        f"test {accuracy_text(r['test_accuracy'], r['test_photos'])}"
        for r in results
    ]
    if best:
        lines.append(f"best by validation: {best['combination']}")
    elif tied:
        lines.append(
            f"a tie by validation, no single best (within the validation photos' noise): {', '.join(tied)}"
        )
    return {"states": states, "results": results, "best": best, "tied": tied}, "\n".join(lines)


def _cmd_study(args) -> None:
    from flower_core.groups.study import plan_study, start_study

    _queue(
        args,
        "study",
        plan_study,
        start_study,
        seeds=args.seeds,
        backbone=args.backbone,
        weights=args.weights,
        image_size=args.image_size,
        epochs=args.epochs,
        baseline=args.baseline,
    )


def _cmd_sweep(args) -> None:
    from flower_core.groups.sweep import parse_grid, plan_sweep, start_sweep

    options = {
        "preset": args.preset,
        "grid": parse_grid(args.grid),
        "samples": args.samples,
        "seeds": args.seeds,
        "max_runs": args.max_runs,
    }
    common = {
        "backbone": args.backbone,
        "weights": args.weights,
        "image_size": args.image_size,
        "epochs": args.epochs,
    }
    options.update({k: v for k, v in common.items() if v is not None})
    _queue(args, "sweep", plan_sweep, start_sweep, **options)


def _cmd_groups(args) -> None:
    from flower_core.groups.group import cancel_group, delete_group, group_record, group_rows, list_groups

    if args.cancel:
        count = cancel_group(args.runs, args.cancel)
        emit(args, {"group": args.cancel, "cancelled": count}, f"{args.cancel}: {count} runs cancelled")
    elif args.delete:
        count = delete_group(args.runs, args.delete)
        emit(args, {"group": args.delete, "deleted": count}, f"{args.delete}: {count} runs deleted")
    elif args.show:
        record = group_record(args.runs, args.show)
        payload, text = _results(record["kind"], group_rows(args.runs, args.show), record)
        emit(args, {"group": record, **payload}, text)
    else:
        records = list_groups(args.runs)
        emit(
            args,
            {"groups": records},
            "\n".join(f"{r['id']:<32} {len(r['runs']):>3} runs  {r['created']}" for r in records)
            or "no studies or sweeps yet",
        )


def add_commands(sub) -> None:
    """Add `study`, `sweep` and `groups` to the CLI's subcommands."""

    p = sub.add_parser("study", help="queue the study's seven presets x N seeds on one split")
    _common(p)
    p.add_argument("--seeds", type=int, default=1, help=f"seeds per preset, 1 to {MAX_SEEDS} (default 1)")
    p.add_argument("--baseline", action="store_true", help="add the no-transfer baseline")
    p.set_defaults(handler=_cmd_study)

    p = sub.add_parser("sweep", help="queue a grid (or random sample) of training settings")
    _common(p)
    p.add_argument(
        "--preset",
        default=DEFAULT_PRESET,
        help=f"the recipe every run starts from (default {DEFAULT_PRESET})",
    )
    p.add_argument(
        "--grid",
        required=True,
        help='training settings and their values, e.g. "dropout=0.2,0.5;learning_rate=1e-3,1e-4"',
    )
    p.add_argument("--samples", type=int, help="a random sample of this many combinations (default: all)")
    p.add_argument(
        "--seeds", type=int, default=1, help=f"seeds per combination, 1 to {MAX_SEEDS} (default 1)"
    )
    p.add_argument(
        "--max-runs",
        type=int,
        default=DEFAULT_MAX_RUNS,
        help=f"refuse a sweep of more runs (default {DEFAULT_MAX_RUNS})",
    )
    p.set_defaults(handler=_cmd_sweep)

    p = sub.add_parser("groups", help="list studies and sweeps; show, cancel or delete one")
    add_runs_option(p)
    action = p.add_mutually_exclusive_group()
    action.add_argument("--show", metavar="ID", help="its table")
    action.add_argument("--cancel", metavar="ID", help="cancel its queued and running runs")
    action.add_argument("--delete", metavar="ID", help="delete all its runs")
    p.set_defaults(handler=_cmd_groups)


def _common(p) -> None:
    """The options a study and a sweep share: where, and the settings they may set for every run."""
    add_data_option(p)
    add_runs_option(p)
    for name in ("backbone", "weights", "image_size", "epochs"):
        add_setting_option(p, name)
    p.add_argument("--wait", action="store_true", help="block until every run ends, then print the table")


def studies_payload(runs_root) -> dict:
    """`{study id: its table}` for `runs --json`."""
    from flower_core.groups.group import group_rows
    from flower_core.groups.study import list_studies, study_table

    try:
        return {r["id"]: study_table(group_rows(runs_root, r["id"])) for r in list_studies(runs_root)}
    except FlowerError:
        return {}
