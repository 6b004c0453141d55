"""The study and sweeps as groups: planning, bad grids, one shared split, the study table,
best-by-validation, cancel and delete of a group, and the time estimate."""

import json
import math
import re

import pytest

from flower_core.cli import main
from flower_core.config import DEFAULT_MAX_RUNS, MAX_SEEDS, STUDY_RESULTS, make_config
from flower_core.errors import FlowerError
from flower_core.groups import group as groups
from flower_core.groups.study import BASELINE, STUDY_PRESETS, plan_study, start_study, study_table
from flower_core.groups.sweep import (
    best_by_validation,
    best_config,
    combinations,
    parse_grid,
    plan_sweep,
    start_sweep,
    sweep_results,
)
from flower_core.models.backbone_specs import BACKBONES
from flower_core.models.features import INDEX_FILE, FeatureCache
from flower_core.store.runs import CONFIG, RunStore, peek_status, read_json, write_json
from flower_core.training import estimate
from flower_core.training.progress import update_status

TINY = {"backbone": "mobilenet", "weights": "none", "image_size": 32, "epochs": 1}


@pytest.mark.parametrize(
    "grid, message",
    [
        ("bogus=1,2", "unknown training setting 'bogus'"),
        ("seed=1,2", "cannot vary seed"),
        ("dropout=0.2,abc", "dropout takes a value of type float. Received: dropout='abc'"),
        ("augment=maybe", "augmentation takes true or false"),
        ("dropout", "name=value,value"),
        ("dropout=", "no values for dropout"),
        (" ; ", "empty grid"),
        ("dropout=0.1;dropout=0.2", "appears twice"),
    ],
)
def test_a_bad_grid_is_one_clear_error(grid, message):
    with pytest.raises(FlowerError, match=message):
        parse_grid(grid)


def test_grid_values_take_the_settings_types():
    grid = parse_grid(
        "dropout=0.2,0.5,0.2; learning-rate=1e-3; augment=yes,off; dense_units=64/32,16; pooling=avg"
    )
    assert grid == {
        "dropout": [0.2, 0.5],
        "learning_rate": [0.001],
        "augment": [True, False],
        "dense_units": [[64, 32], [16]],
        "pooling": ["avg"],
    }
    assert len(combinations(grid)) == 8
    sample = combinations(grid, samples=3)
    assert len(sample) == 3 and sample == combinations(grid, samples=3)
    assert len({json.dumps(c, sort_keys=True) for c in sample}) == 3


def test_plan_sweep_checks_values_and_the_run_limit():
    with pytest.raises(FlowerError, match="pooling must be max or avg"):
        plan_sweep("base", parse_grid("pooling=max,median"))
    with pytest.raises(FlowerError, match="more than the maximum of 3"):
        plan_sweep("base", parse_grid("dropout=0.2,0.5;learning_rate=1e-3,1e-4"), max_runs=3)
    with pytest.raises(FlowerError, match=f"maximum of {DEFAULT_MAX_RUNS}"):
        plan_sweep("base", parse_grid("dropout=" + ",".join(f"0.{i:02d}" for i in range(1, 34))), seeds=2)
    planned = plan_sweep("dropout20", parse_grid("dropout=0.1,0.3"), seeds=2, **TINY)
    assert [(p.label, p.config.dropout, p.config.seed) for p in planned] == [
        ("dropout=0.1", 0.1, 0),
        ("dropout=0.1", 0.1, 1),
        ("dropout=0.3", 0.3, 0),
        ("dropout=0.3", 0.3, 1),
    ]
    assert all(p.config.augment and p.config.image_size == 32 for p in planned)


def test_plan_study_is_the_seven_presets_times_seeds_and_the_baseline():
    planned = plan_study(seeds=2, baseline=True, **TINY)
    assert [p.label for p in planned[:14:2]] == list(STUDY_RESULTS)
    assert [p.config.seed for p in planned[:2]] == [0, 1]
    assert [p.label for p in planned[14:]] == [BASELINE, BASELINE]
    assert all(p.config.weights == "none" and p.config.preset == "base" for p in planned[14:])
    assert planned[10].config.preprocessing == "imagenet" and planned[13].config.batchnorm
    with pytest.raises(FlowerError, match="seeds must be between 1 and 10"):
        plan_study(seeds=0)


def _row(preset, seed, state="done", acc=None, loss=0.5, label=None):
    return {
        "run_id": f"{preset}-{seed}",
        "preset": preset,
        "seed": seed,
        "state": state,
        "test_accuracy": acc,
        "test_loss": loss if acc is not None else None,
        "group_label": label or preset,
    }


def test_study_table_mean_sd_per_seed_states_and_gains():
    rows = [
        _row("base", 0, acc=0.80),
        _row("base", 1, acc=0.90),
        _row("dropout50", 0, acc=0.95),
        _row("dropout50", 1, "running"),
        _row("dropout20", 0, "queued"),
        _row("dropout20", 1, "queued"),
        _row("base", 2, "failed"),
        _row("base", 0, acc=0.1, label=BASELINE),
    ]
    table = {row["preset"]: row for row in study_table(rows)}
    assert list(table) == [*STUDY_PRESETS, BASELINE]
    base = table["base"]
    assert base["runs"] == 2 and base["mean"] == pytest.approx(0.85)
    assert base["sd"] == pytest.approx(math.sqrt(0.005)) and base["per_seed"] == {"0": 0.80, "1": 0.90}
    assert base["study_accuracy"] == STUDY_RESULTS["base"][1] and base["states"] == {"failed": 1}
    assert base["gain"] is None and base["study_gain"] is None
    drop = table["dropout50"]
    assert drop["sd"] is None and drop["gain"] == pytest.approx(0.10) and drop["states"] == {"running": 1}
    assert drop["study_gain"] == pytest.approx(STUDY_RESULTS["dropout50"][1] - STUDY_RESULTS["base"][1])
    assert table["dropout20"]["mean"] is None and table["dropout20"]["states"] == {"queued": 2}
    assert table["dropout20"]["gain"] is None and table[BASELINE]["mean"] == pytest.approx(0.1)
    assert table[BASELINE]["study_accuracy"] is None
    assert BASELINE not in {row["preset"] for row in study_table(rows[:-1])}


def test_best_of_a_sweep_is_chosen_by_validation_never_test():
    def row(label, dropout, val, test, state="done"):
        return {
            "run_id": label + str(val),
            "group_label": label,
            "state": state,
            "best_val_accuracy": val,
            "test_accuracy": test,
            "config": {**make_config("base", dropout=dropout).to_json(), "seed": 3},
        }

    rows = [
        row("dropout=0.2", 0.2, 0.70, 0.99),
        row("dropout=0.5", 0.5, 0.80, 0.60),
        row("dropout=0.5", 0.5, 0.90, 0.60),
        row("dropout=0.7", 0.7, None, None, "queued"),
    ]
    results = sweep_results(rows, ["dropout"])
    assert [r["combination"] for r in results] == ["dropout=0.5", "dropout=0.2", "dropout=0.7"]
    assert results[0]["val_accuracy"] == pytest.approx(0.85) and results[0]["runs"] == 2
    assert results[2]["states"] == {"queued": 1} and results[2]["dropout"] == 0.7
    assert best_by_validation(rows, ["dropout"])["combination"] == "dropout=0.5"
    config = best_config(rows, ["dropout"])
    assert config.dropout == 0.5 and config.seed == 0
    with pytest.raises(FlowerError, match="no run of this sweep has finished"):
        best_config(rows[3:], ["dropout"])


def test_a_group_shares_one_split_and_is_cancelled_and_deleted_as_one(synthetic_dataset, tmp_path):
    runs = tmp_path / "runs"
    record = start_sweep(
        synthetic_dataset, runs, preset="base", grid=parse_grid("dropout=0.1,0.2,0.3"), start=False, **TINY
    )
    run_dirs = groups.group_run_dirs(runs, record["id"])
    assert len(run_dirs) == 3 and [g["id"] for g in groups.list_groups(runs)] == [record["id"]]
    configs = [read_json(d / CONFIG) for d in run_dirs]
    assert {c["group"] for c in configs} == {record["id"]} and all(c["share_split"] for c in configs)
    assert {c["split_file"] for c in configs} == {
        str(groups.group_dir(runs, record["id"]).resolve() / "split.json")
    }
    assert all(row["tags"] == [record["id"]] for row in groups.group_rows(runs, record["id"]))
    update_status(run_dirs[0], state="done")
    with pytest.raises(FlowerError, match="still queued or running: cancel the group first"):
        groups.delete_group(runs, record["id"])
    assert groups.cancel_group(runs, record["id"]) == 2
    assert [peek_status(d).state for d in run_dirs] == ["done", "cancelled", "cancelled"]
    assert groups.delete_group(runs, record["id"]) == 3
    assert RunStore(runs).run_dirs() == [] and groups.list_groups(runs) == []
    with pytest.raises(FlowerError, match="no study or sweep"):
        groups.group_rows(runs, record["id"])


@pytest.mark.parametrize("named", ["outside", "another group's", None])
def test_a_planted_config_cannot_have_a_shared_split_written_elsewhere(synthetic_dataset, tmp_path, named):
    from flower_core.training.train import run_training

    runs, outside = tmp_path / "runs", tmp_path / "outside" / "split.json"
    record = start_sweep(
        synthetic_dataset, runs, preset="base", grid=parse_grid("dropout=0.1"), start=False, **TINY
    )
    (run_dir,) = groups.group_run_dirs(runs, record["id"])
    split_file = {"outside": outside, "another group's": runs / ".groups" / "other" / "split.json"}.get(named)
    config = read_json(run_dir / CONFIG)
    write_json(run_dir / CONFIG, {**config, "split_file": split_file and str(split_file)})
    assert run_training(run_dir) == "failed"
    assert "shared split file" in peek_status(run_dir).message and "\n" not in peek_status(run_dir).message
    assert not outside.exists() and not (runs / ".groups" / "other").exists()


def test_a_bad_run_in_a_group_queues_nothing(synthetic_dataset, tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(FlowerError, match="weights file not found|not found"):
        start_study(
            synthetic_dataset,
            runs,
            start=False,
            seeds=1,
            backbone="mobilenet",
            weights=str(tmp_path / "missing.h5"),
        )
    assert RunStore(runs).run_dirs() == [] and groups.list_groups(runs) == []


def test_cli_sweep_bad_grid_exits_2_with_one_line(synthetic_dataset, tmp_path, capsys):
    runs = tmp_path / "runs"
    code = main(["sweep", "--data", str(synthetic_dataset), "--runs", str(runs), "--grid", "nope=1"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: unknown training setting 'nope'") and err.count("\n") == 1
    assert not runs.exists()


# Five settings with forty values each: 40**5 combinations, which building before counting
# would take tens of GB.
FORTY = range(1, 41)
GRID_BOMB = ";".join(
    [
        "dropout=" + ",".join(f"{i / 100}" for i in FORTY),
        "label_smoothing=" + ",".join(f"{i / 100}" for i in FORTY),
        "epochs=" + ",".join(map(str, FORTY)),
        "patience=" + ",".join(map(str, FORTY)),
        "batch_size=" + ",".join(map(str, FORTY)),
    ]
)


def _args(command, dataset, runs, *options) -> list[str]:
    return [command, "--data", str(dataset), "--runs", str(runs), *options]


def test_a_grid_bomb_is_refused_from_its_counts_and_creates_nothing(synthetic_dataset, tmp_path, capsys):
    runs = tmp_path / "runs"
    code = main(_args("sweep", synthetic_dataset, runs, "--grid", GRID_BOMB))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"{40**5:,} runs, more than the maximum of {DEFAULT_MAX_RUNS}" in err
    assert not runs.exists()


def test_a_sample_of_a_huge_grid_is_drawn_without_building_the_grid():
    planned = plan_sweep("base", parse_grid(GRID_BOMB), samples=5, **TINY)
    assert len(planned) == 5 and len({p.label for p in planned}) == 5
    small = parse_grid("dropout=0.1,0.2,0.3;epochs=1,2,3;patience=0,1")
    every = combinations(small)
    assert all(c in every for c in combinations(small, samples=7))


def test_sweep_seeds_are_refused_past_max_seeds_like_the_studys(synthetic_dataset, tmp_path, capsys):
    message = f"seeds must be between 1 and {MAX_SEEDS}. Received: seeds={MAX_SEEDS + 1}"
    with pytest.raises(FlowerError, match=re.escape(message)):
        plan_sweep("base", parse_grid("dropout=0.1"), seeds=MAX_SEEDS + 1, **TINY)
    with pytest.raises(FlowerError, match=re.escape(message)):
        plan_study(seeds=MAX_SEEDS + 1, **TINY)
    runs = tmp_path / "runs"
    code = main(
        _args("sweep", synthetic_dataset, runs, "--grid", "dropout=0.1", "--seeds", str(MAX_SEEDS + 1))
    )
    err = capsys.readouterr().err
    assert code == 2 and err == f"error: {message}\n"
    assert not runs.exists()


@pytest.mark.parametrize("weights, roots", [("/etc/passwd", True), ("/no/such/weights.h5", False)])
def test_a_weights_path_in_a_grid_is_checked_as_train_checks_it(
    synthetic_dataset, tmp_path, capsys, monkeypatch, weights, roots
):
    if roots:
        monkeypatch.setenv("FLOWER_ALLOWED_ROOTS", f"{synthetic_dataset}:{tmp_path}")
    runs = tmp_path / "runs"
    tiny = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items() if k != "weights"]
    assert (
        main(["train", "--data", str(synthetic_dataset), "--runs", str(runs), "--weights", weights, *tiny])
        == 2
    )
    train_error = capsys.readouterr().err
    assert weights in train_error and train_error.count("\n") == 1
    code = main(_args("sweep", synthetic_dataset, runs, "--grid", f"weights={weights},imagenet", *tiny))
    assert code == 2 and capsys.readouterr().err == train_error
    code = main(_args("study", synthetic_dataset, runs, "--weights", weights, *tiny))
    assert code == 2 and capsys.readouterr().err == train_error
    assert not runs.exists() or not any(runs.iterdir())


def _cache_entry(cache: FeatureCache, name: str, **meta) -> None:
    (cache.root / name).mkdir(parents=True)
    (cache.root / name / INDEX_FILE).write_text(json.dumps(meta))


def test_estimate_measures_speed_from_the_cache_and_shares_features_in_a_group(synthetic_dataset, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    typical = estimate.backbone_speed("mobilenet", 112, cache.root)
    assert typical.source == "typical"
    assert typical.photos_per_s == pytest.approx(BACKBONES["mobilenet"].fallback_photos_per_s * 4)
    _cache_entry(cache, "a", backbone="mobilenet", image_size=224, photos=100, seconds=4.0)
    measured = estimate.backbone_speed("mobilenet", 224, cache.root)
    assert measured == estimate.Speed(25.0, "measured", 25.0 * 0.7, 25.0 * 1.3)

    base = make_config("base", backbone="mobilenet", image_size=224)
    plateau = make_config("plateau", backbone="mobilenet", image_size=224)
    group = estimate.estimate_group(
        [base, base, plateau], synthetic_dataset, runs_root=tmp_path / "runs", cache_root=cache.root
    )
    first, second, third = group["runs"]
    assert group["photos"] == 120 and first["extraction_s"] == pytest.approx(120 / 25.0)
    assert second["extraction_s"] == 0 and second["cached"]
    assert third["extraction_s"] == pytest.approx(120 / 25.0)  # feature maps: another backbone pass
    assert group["seconds"] == pytest.approx(sum(r["seconds"] for r in group["runs"]))

    root = str(synthetic_dataset.resolve())
    _cache_entry(
        cache,
        "b",
        backbone="mobilenet",
        image_size=224,
        photos=120,
        kind="clean",
        preprocessing="rescale",
        pooling="max",
        weights="imagenet",
        data_root=root,
    )
    assert estimate.estimate_run(base, synthetic_dataset, cache_root=cache.root)["cached"]
    scratch = estimate.estimate_run(make_config("base", **TINY), synthetic_dataset, cache_root=cache.root)
    assert scratch["extraction_s"] == 0 and scratch["training_s"] > 0
    assert estimate.format_duration(45) == "45 s" and estimate.format_duration(7500) == "2 h 05 min"


def _finished_run(runs, **files: str):
    """A finished ImageNet MobileNet run on 100 training photos whose files hold `files` as text."""
    run_dir = RunStore(runs).create({"preset": "base", "backbone": "mobilenet", "weights": "imagenet"})
    write_json(run_dir / "facts.json", {"class_names": ["a", "b"], "split_sizes": {"train": 100}})
    write_json(run_dir / "status.json", {"state": "done", "message": "finished"})
    for name, text in files.items():
        (run_dir / name).write_text(text)
    return run_dir


@pytest.mark.parametrize("seconds", ['"z"', "NaN"])
def test_an_epoch_line_of_the_wrong_type_never_reaches_the_estimate(synthetic_dataset, tmp_path, seconds):
    runs = tmp_path / "runs"
    lines = '{"epoch": 1, "seconds": 0.5}\n' + f'{{"epoch": 2, "seconds": {seconds}}}\n'
    _finished_run(runs, **{"history.jsonl": lines})
    config = make_config("base", backbone="mobilenet")
    result = estimate.estimate_run(config, synthetic_dataset, runs_root=runs)
    assert math.isfinite(result["seconds"])
    assert result["training_s"] == pytest.approx(config.epochs * result["photos"] * 0.7 * 0.5 / 100)


def test_a_test_accuracy_that_is_not_a_number_leaves_the_study_table_standing(tmp_path):
    runs = tmp_path / "runs"
    _finished_run(runs, **{"metrics.json": '{"test_accuracy": 0.8}'})
    broken = _finished_run(runs, **{"metrics.json": '{"test_accuracy": NaN}'})
    rows = RunStore(runs).list_runs()
    base = next(row for row in study_table(rows) if row["preset"] == "base")
    assert (base["runs"], base["mean"], base["sd"]) == (1, 0.8, None)
    [corrupt] = [row for row in rows if row["state"] == "corrupt"]
    assert corrupt["run_id"] == broken.name
    assert "'test_accuracy' should be a finite number" in corrupt["message"]


@pytest.mark.slow
def test_cli_study_waits_and_prints_seven_rows_on_one_split(synthetic_dataset, tmp_path, capsys):
    runs = tmp_path / "runs"
    code = main(
        [
            "study",
            "--data",
            str(synthetic_dataset),
            "--runs",
            str(runs),
            "--seeds",
            "1",
            "--wait",
            "--json",
            *(f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()),
        ]
    )
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and out["states"] == {"done": 7}
    assert [row["preset"] for row in out["table"]] == list(STUDY_RESULTS)
    assert all(row["runs"] == 1 and row["mean"] is not None for row in out["table"])
    splits = {(runs / run_id / "split.json").read_bytes() for run_id in out["runs"]}
    assert len(splits) == 1
    write_json(runs / "x.json", {})  # a stray file in the runs folder is not a run
    assert main(["runs", "--runs", str(runs), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert listed["studies"][out["group"]] == out["table"]
