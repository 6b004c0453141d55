"""How long a run, or a group of runs, will take on this machine, before it is started.

A run's time is mostly backbone passes over the photos: none when the feature cache already
holds what it needs, one pass per photo (K for augmented views) when it does not, and every
epoch for a network trained end to end. So an estimate is the photos still to pass through the
backbone, divided by this machine's speed for that backbone and image size, plus the head's
epochs and the time to check the photos and build and trace the model (`SETUP_GRAPHS` times what a
calibration timed). The speed comes from, in order:

1. the feature cache: each entry records how long it took to build (`seconds`), so the machine's
   speed is measured from its own past runs, photo decoding included (`"measured"`);
2. a calibration: a few of the dataset's photos through the backbone, timed on this machine as
   a run computes its features, and kept on disk (`<cache>/.speeds.json`, per host), made when
   nothing was measured and a caller asks for it (`calibration="now"`; a page asks for it in the
   `"background"` and shows a typical figure until it is done), once (`"calibrated"`);
3. the backbone's `fallback_photos_per_s` (`backbone_specs`): a typical 2-core CPU at 224 px,
   used only when this machine has measured nothing and no calibration was asked for (`"typical"`).

Figures for another image size are scaled by the pixel count. The head's seconds per photo and
epoch are measured from past runs' histories when there are any. Every estimate is a range
(`low_s` to `high_s`): the speed's spread (the measured figures' own, at least `SPEED_SPREAD`
either way; wider for a typical figure), and early stopping, which may end a run after
`patience + 1` epochs (`seconds`, the middle figure, counts every epoch).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import itertools
import logging
import multiprocessing
import os
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from flower_core.config import MIN_MAP_POSITIONS, TrainConfig
from flower_core.data.dataset import list_candidates
from flower_core.data.images import is_candidate_image
from flower_core.errors import FlowerError
from flower_core.models.backbones import get_backbone
from flower_core.models.classifier import preprocessing_mode
from flower_core.models.features import FeatureCache, extractors, weights_identity
from flower_core.store.run_files import Estimate, Status
from flower_core.store.runs import Run, RunStore, read_json, write_json

REFERENCE_SIZE = 224
# A training step (forward and backward pass) costs about three forward passes.
TRAIN_COST = 3.0
# The head's seconds per training photo and epoch when no past run says: the medians of the
# study's MobileNet runs on the real photos (docs/RESULTS.md); on feature maps the head also
# augments and pools them, so its cost grows with the maps' positions (7 x 7 in those runs).
FALLBACK_HEAD_S_PER_PHOTO = {"features": 0.0003, "maps": 0.0006}
FALLBACK_MAP_POSITIONS = 49
# Building the model and tracing its graphs, per run, until a calibration has timed them here.
RUN_OVERHEAD_S = 10.0
# A calibration builds and traces one feature model; a run builds and traces that, then its
# head's training step and its evaluation: about this many times the calibration's setup.
SETUP_GRAPHS = 2
# Checking one photo at the start of a run (its size and header) on a busy 2-core machine.
SCAN_S_PER_PHOTO = 0.0015
# How far a speed measured here may move either way between two runs (other work on the machine).
SPEED_SPREAD = 0.3
# A typical figure is another machine's: it may be off by this factor either way.
TYPICAL_SPREAD = 2.0
# Calibrations kept in the feature cache's folder, one per host, backbone and image size.
SPEEDS_FILE = ".speeds.json"
# Photos a calibration times (after its first batch, which also traces the graph).
CALIBRATION_PHOTOS = 96
# What each source of a speed means, for the pages and the command line.
SPEED_SOURCES = {
    "measured": "this machine's speed, measured on its past feature extractions",
    "calibrated": "this machine's speed, from a short timing of the backbone here",
    "typical": "a typical 2-core CPU's speed: not yet measured on this machine",
}


@dataclass(frozen=True)
class Speed:
    """Backbone forward passes per second on this machine, the slowest and fastest to expect,
    where the figure came from (a `SPEED_SOURCES` key), and the seconds a run takes to build its
    feature model and trace it (timed by a calibration, else half of `RUN_OVERHEAD_S`)."""

    photos_per_s: float
    source: str
    slowest: float
    fastest: float
    setup_s: float = RUN_OVERHEAD_S / SETUP_GRAPHS
    calibrating: bool = False


def _spread(rate: float, source: str, seen: list[float] = (), setup_s: float | None = None) -> Speed:
    """A speed with the slowest and fastest figures to expect: `SPEED_SPREAD` either way of one
    measured here, or of the figures seen if they spread wider; `TYPICAL_SPREAD` for a typical one."""
    setup_s = RUN_OVERHEAD_S / SETUP_GRAPHS if setup_s is None else setup_s
    if source == "typical":
        return Speed(rate, source, rate / TYPICAL_SPREAD, rate * TYPICAL_SPREAD, setup_s)
    slowest, fastest = rate * (1 - SPEED_SPREAD), rate * (1 + SPEED_SPREAD)
    return Speed(rate, source, min([slowest, *seen]), max([fastest, *seen]), setup_s)


def _speeds_file(cache_root) -> Path:
    return FeatureCache(cache_root).root / SPEEDS_FILE


def _speed_key(backbone: str, image_size: int) -> str:
    return f"{os.uname().nodename}/{backbone}/{image_size}"


def calibrated_speed(backbone: str, image_size: int, cache_root=None) -> dict | None:
    """What a calibration recorded here for `backbone` at `image_size`, `{"photos_per_s",
    "setup_s"}`, if any (anything else in the file is ignored)."""
    recorded = read_json(_speeds_file(cache_root), {})
    value = recorded.get(_speed_key(backbone, image_size)) if isinstance(recorded, dict) else None
    if not isinstance(value, dict):
        return None
    if not all(isinstance(value.get(k), (int, float)) and value[k] > 0 for k in ("photos_per_s", "setup_s")):
        return None
    return value


def calibrate(backbone: str, image_size: int, data_root, cache_root=None) -> dict:
    """Time the backbone here on a few of the dataset's photos, as a run computes its features,
    and record its speed and the seconds to build and trace it (`SPEEDS_FILE`); returns
    `{"photos_per_s", "setup_s"}`.

    A random-initialised backbone (the arithmetic is the weights') computes pooled features of
    `CALIBRATION_PHOTOS` photos through the feature cache's own pipeline (decoding included) into
    a throw-away cache; the first batch, which also traces the graph, is not timed. Costs a few
    seconds, once per host, backbone and image size.
    """
    timed = _timed_extraction(backbone, image_size, str(Path(data_root).resolve()))
    path = _speeds_file(cache_root)
    recorded = read_json(path, {})
    recorded = recorded if isinstance(recorded, dict) else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {**recorded, _speed_key(backbone, image_size): timed})
    return timed


def backbone_speed(
    backbone: str,
    image_size: int,
    cache_root=None,
    *,
    calibrate_on: str | os.PathLike | None = None,
    background: bool = False,
) -> Speed:
    """This machine's forward speed for `backbone` at `image_size` (see the module docstring);
    `calibrate_on` names the dataset whose photos a calibration times, when one is needed, and
    `background` starts it in a thread and returns the typical figure (`calibrating`) meanwhile.
    A pair of backbones runs each of its members on every photo: its speed is theirs combined."""
    members = get_backbone(backbone).members
    if members:
        speeds = [
            backbone_speed(m, image_size, cache_root, calibrate_on=calibrate_on, background=background)
            for m in members
        ]
        return _one_after_another(speeds)
    rates = []
    for entry in FeatureCache(cache_root).entries():
        if entry.get("backbone") == backbone and entry.get("seconds") and entry.get("photos"):
            rate = entry["photos"] * entry.get("passes", 1) / entry["seconds"]
            rates.append(rate * (entry["image_size"] / image_size) ** 2)
    calibrated = calibrated_speed(backbone, image_size, cache_root)
    if rates:
        return _spread(statistics.median(rates), "measured", rates, calibrated and calibrated["setup_s"])
    if calibrated is None and calibrate_on is not None and not background:
        calibrated = calibrate(backbone, image_size, calibrate_on, cache_root)
    if calibrated is not None:
        return _spread(calibrated["photos_per_s"], "calibrated", setup_s=calibrated["setup_s"])
    fallback = get_backbone(backbone).fallback_photos_per_s
    typical = _spread(fallback * (REFERENCE_SIZE / image_size) ** 2, "typical")
    if calibrate_on is None:
        return typical
    _calibrate_in_background(backbone, image_size, str(calibrate_on), str(FeatureCache(cache_root).root))
    return dataclasses.replace(typical, calibrating=True)


def _one_after_another(speeds: list[Speed]) -> Speed:
    """The speed of running each of `speeds`' backbones on every photo."""

    def rate(attribute: str) -> float:
        return 1 / sum(1 / getattr(speed, attribute) for speed in speeds)

    return Speed(
        rate("photos_per_s"),
        _least_sure(speed.source for speed in speeds),
        rate("slowest"),
        rate("fastest"),
        sum(speed.setup_s for speed in speeds),
        any(speed.calibrating for speed in speeds),
    )


# The calibration process this one started last, if any: one at a time per app server.
_CALIBRATION: multiprocessing.process.BaseProcess | None = None
_CALIBRATION_LOCK = threading.Lock()


def _calibrate_logged(backbone: str, image_size: int, data_root: str, cache_root: str) -> None:
    try:
        calibrate(backbone, image_size, data_root, cache_root)
    except Exception:  # a page's estimate keeps the typical figure
        logging.getLogger(__name__).warning("calibrating %s failed", backbone, exc_info=True)


def _calibrate_in_background(backbone: str, image_size: int, data_root: str, cache_root: str) -> None:
    """Start a calibration in a fresh process ("spawn"), unless one is still running: the backbone
    it builds and traces would otherwise stay in the app server's memory, and several at once
    (sessions, a pair's members) would share its cores with the runs. The page keeps the typical
    figure meanwhile and asks again at its next estimate; a calibration leaves its timing on
    disk, and a failed one is logged and tried again then."""
    global _CALIBRATION
    with _CALIBRATION_LOCK:
        if _CALIBRATION is not None and _CALIBRATION.is_alive():  # is_alive also reaps a finished one
            return
        _CALIBRATION = multiprocessing.get_context("spawn").Process(
            target=_calibrate_logged,
            args=(backbone, image_size, data_root, cache_root),
            name=f"calibrate-{backbone}",
            daemon=True,
        )
        _CALIBRATION.start()


def _sample_photos(root: Path, count: int) -> tuple[list[str], list[str]]:
    """Class folders and up to `count` photos taken from them in turn, read lazily: a page that
    has the dataset loaded does not list all its folders again for a calibration."""
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir(follow_symlinks=False) and e.name[0] != ".")
    each = -(-count // max(len(classes), 1))
    picked: list[list[str]] = []
    for name in classes:
        with os.scandir(root / name) as entries:
            photos = (f"{name}/{e.name}" for e in entries if e.is_file() and is_candidate_image(Path(e.name)))
            picked.append(sorted(itertools.islice(photos, each)))
    return classes, [f for group in itertools.zip_longest(*picked) for f in group if f][:count]


@functools.cache
def _timed_extraction(backbone: str, image_size: int, data_root: str) -> dict:
    """Photos per second of a feature-cache build of a few photos, and the seconds from building
    the model to its first batch less that batch's photos (once per process)."""
    import tempfile

    from flower_core.models.classifier import build_classifier
    from flower_core.models.photo_features import cached_features

    classes, files = _sample_photos(Path(data_root), CALIBRATION_PHOTOS)
    config = TrainConfig(backbone=backbone, weights="none", image_size=image_size).validate()
    began = time.perf_counter()
    model = build_classifier(config, len(classes)).feature_model
    first: list[float] = []

    def progress(done, total):
        if not first:
            first.extend((done, time.perf_counter()))

    with tempfile.TemporaryDirectory(prefix=".calibration.") as scratch:
        cached_features(FeatureCache(scratch), model, config, data_root, files, "calibration", progress)
        ended = time.perf_counter()
    batch, since = first
    rate = (len(files) - batch) / max(ended - since, 1e-6) if len(files) > batch else batch / (since - began)
    setup = max(since - began - batch / rate, 0.1)
    return {"photos_per_s": round(rate, 3), "setup_s": round(setup, 2)}


def feature_needs(config: TrainConfig) -> list[dict]:
    """The cache entries a run reads, as (kind, pooling, passes, part of the photos); none for a
    network trained end to end."""
    if not config.head_on_cache:
        return []
    if config.augments_maps and map_positions(config) >= MIN_MAP_POSITIONS:
        return [{"kind": "feature maps", "pooling": None, "passes": 1, "part": "all"}]
    clean = {"kind": "clean", "pooling": config.pooling, "passes": 1}
    if config.augment:
        views = config.augment_views
        return [
            {"kind": f"{views} augmented views", "pooling": config.pooling, "passes": views, "part": "train"},
            {**clean, "part": "val+test"},
        ]
    return [{**clean, "part": "all"}]


def _parts(config: TrainConfig, photos: int) -> dict[str, float]:
    val, test = photos * config.val_fraction, photos * config.test_fraction
    return {"all": photos, "train": photos - val - test, "val": val, "test": test, "val+test": val + test}


def _signature(config: TrainConfig, need: dict, data_root) -> tuple:
    return (
        config.backbone,
        config.image_size,
        preprocessing_mode(config),
        need["kind"],
        need["pooling"],
        weights_identity(config),
        str(Path(data_root).resolve()),
    )


def _covered(signature: tuple, entries: list[dict], photos: float) -> bool:
    """Whether cache entries of this signature hold about `photos` photos (entries made before
    the cache recorded pooling, weights or dataset match any)."""
    backbone, size, prep, kind, pooling, weights, root = signature
    held = sum(
        e.get("photos", 0)
        for e in entries
        if (e.get("backbone"), e.get("image_size"), e.get("preprocessing"), e.get("kind"))
        == (backbone, size, prep, kind)
        and e.get("pooling", pooling) == pooling
        and e.get("weights", weights) == weights
        and e.get("data_root", root) == root
    )
    return held >= 0.99 * photos


def _head_s_per_photo(runs_root) -> dict[str, float]:
    """Median head seconds per training photo and epoch of past finished runs, by input kind; on
    feature maps per map position too, since a run at another size has more or fewer."""
    samples: dict[str, list[float]] = {"features": [], "maps": []}
    store = RunStore(runs_root)
    for run_dir in store.run_dirs():
        run = Run(run_dir)
        try:
            settings, train = run.config.settings, run.facts.split_sizes.get("train")
        except (FlowerError, OSError):  # an unreadable run says nothing about speed
            continue
        if not train or settings.weights == "none" or settings.fine_tune_blocks:
            continue
        kind = "maps" if settings.augment and run.augment_cache_ran == "maps" else "features"
        per = train * (map_positions(settings) if kind == "maps" else 1)
        samples[kind] += [row.seconds / per for row in run.history if row.seconds]
    fallback = {
        "features": FALLBACK_HEAD_S_PER_PHOTO["features"],
        "maps": FALLBACK_HEAD_S_PER_PHOTO["maps"] / FALLBACK_MAP_POSITIONS,
    }
    return {k: statistics.median(v) if v else fallback[k] for k, v in samples.items()}


def map_positions(config: TrainConfig) -> int:
    """Positions of the backbone's last feature maps at the config's image size."""
    return (config.image_size // get_backbone(config.backbone).stride) ** 2


def _seconds(
    config: TrainConfig, parts: dict, extraction_passes: float, rate: float, head: dict, epochs: int
):
    """(extraction, training) seconds at `rate` backbone passes per second, training `epochs`."""
    extraction = extraction_passes / rate
    if feature_needs(config):
        kind = "maps" if feature_needs(config)[0]["kind"] == "feature maps" else "features"
        training = epochs * parts["train"] * head[kind] * (map_positions(config) if kind == "maps" else 1)
    else:
        epoch = (parts["train"] * TRAIN_COST + parts["val"]) / rate
        training = epochs * epoch + parts["test"] / rate
    if config.fine_tune_blocks:
        training += config.fine_tune_epochs * (parts["train"] * TRAIN_COST + parts["val"]) / rate
    return extraction, training


def estimate_run(
    config: TrainConfig,
    data_root,
    *,
    runs_root=None,
    cache_root=None,
    calibration: str | None = None,
    photos: int | None = None,
    computed: set | None = None,
    head: dict | None = None,
) -> dict:
    """Seconds one run should take here, as a range: backbone passes not yet cached, epochs,
    overhead.

    Args:
        config: the run's settings.
        data_root: the dataset folder (its photos are counted, not decoded).
        runs_root, cache_root: where past runs and the feature cache live. Default to
            `FLOWER_RUNS` / `FLOWER_CACHE`.
        calibration: when nothing has measured the backbone's speed here yet, time it (once,
            kept on disk) `"now"`, or in the `"background"` (the typical figure meanwhile, with
            `calibrating` true). Defaults to `None` (a typical figure).
        photos: the number of photos, when already known. Defaults to counting them.
        computed: cache signatures an earlier run of the same group will have built; this run's
            are added to it. Defaults to `None`.
        head: the head's seconds per photo and epoch by input kind, when already read.
            Defaults to reading them from past runs.

    Returns:
        `{"seconds", "low_s", "high_s", "extraction_s", "training_s", "overhead_s", "photos",
        "passes", "photos_per_s", "speed_source", "cached"}`: `seconds` at the likeliest speed
        with every epoch, `low_s` at the fastest speed stopping as early as early stopping can,
        `high_s` at the slowest speed with every epoch; `passes` the backbone passes to compute.
    """
    if photos is None:
        photos = sum(len(files) for files in list_candidates(data_root)[1].values())
    if calibration not in (None, "now", "background"):
        raise FlowerError(f"calibration is 'now', 'background' or None. Received: {calibration!r}")
    speed = backbone_speed(
        config.backbone,
        config.image_size,
        cache_root,
        calibrate_on=data_root if calibration else None,
        background=calibration == "background",
    )
    parts = _parts(config, photos)
    entries = FeatureCache(cache_root).entries()
    computed = set() if computed is None else computed
    passes = 0.0
    for need in feature_needs(config):
        # A pair's pooled features are its members' entries: a pass of one member costs its share.
        pooled = need["kind"] != "feature maps"
        for extractor in extractors(config) if pooled else [config]:
            signature = _signature(extractor, need, data_root)
            if signature not in computed and not _covered(signature, entries, parts[need["part"]]):
                share = 1.0
                if extractor is not config:
                    share = (
                        speed.photos_per_s
                        / backbone_speed(extractor.backbone, config.image_size, cache_root).photos_per_s
                    )
                passes += parts[need["part"]] * need["passes"] * share
            computed.add(signature)
    head = _head_s_per_photo(runs_root) if head is None and feature_needs(config) else head
    extraction, training = _seconds(config, parts, passes, speed.photos_per_s, head, config.epochs)
    low = sum(_seconds(config, parts, passes, speed.fastest, head, min(config.epochs, config.patience + 1)))
    high = sum(_seconds(config, parts, passes, speed.slowest, head, config.epochs))
    overhead = SETUP_GRAPHS * speed.setup_s + photos * SCAN_S_PER_PHOTO
    return {
        "seconds": extraction + training + overhead,
        "low_s": low + overhead,
        "high_s": high + overhead,
        "extraction_s": extraction,
        "training_s": training,
        "overhead_s": overhead,
        "photos": photos,
        "passes": passes,
        "photos_per_s": speed.photos_per_s,
        "speed_source": speed.source,
        "calibrating": speed.calibrating,
        "cached": passes == 0,
    }


def estimate_group(
    configs: list[TrainConfig],
    data_root,
    *,
    runs_root=None,
    cache_root=None,
    calibration: str | None = None,
    photos: int | None = None,
) -> dict:
    """Seconds a group of runs should take, in order: features one run builds, the next ones
    reuse (a group shares one split, so its runs share cache entries).

    Args:
        photos: the number of photos, when already known. Defaults to counting them once.
        Others: as `estimate_run`.

    Returns:
        `{"seconds", "low_s", "high_s", "runs": [per-run estimates], "photos", "speed_source",
        "calibrating"}`.
    """
    if photos is None:
        photos = sum(len(files) for files in list_candidates(data_root)[1].values())
    computed: set = set()
    head = _head_s_per_photo(runs_root)
    runs = [
        estimate_run(
            c,
            data_root,
            runs_root=runs_root,
            cache_root=cache_root,
            calibration=calibration,
            photos=photos,
            computed=computed,
            head=head,
        )
        for c in configs
    ]
    return {
        "seconds": sum(r["seconds"] for r in runs),
        "low_s": sum(r["low_s"] for r in runs),
        "high_s": sum(r["high_s"] for r in runs),
        "runs": runs,
        "photos": photos,
        "speed_source": _least_sure(r["speed_source"] for r in runs),
        "calibrating": any(r["calibrating"] for r in runs),
    }


def _least_sure(sources) -> str:
    """Of several runs' speed sources, the one to say: the least measured."""
    order = list(SPEED_SOURCES)
    return max(sources, key=order.index, default="typical")


def recorded_estimate(estimate: dict) -> Estimate:
    """What a run keeps of its estimate at queue time (`status.json`'s `estimate`)."""
    keys = ("seconds", "low_s", "high_s", "extraction_s", "training_s", "passes", "photos_per_s")
    return Estimate(**{k: round(float(estimate[k]), 2) for k in keys}, source=estimate["speed_source"])


def format_duration(seconds: float) -> str:
    """`45 s`, `12 min`, `2 h 05 min`: rounded as an estimate should be."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def format_range(low: float, high: float) -> str:
    """`2–4 min`, `40 s – 2 min`: an estimate's range, in one unit where both share it."""
    low_text, high_text = format_duration(low), format_duration(high)
    if low_text == high_text:
        return low_text
    low_number, _, low_unit = low_text.partition(" ")
    high_number, _, high_unit = high_text.partition(" ")
    if low_unit == high_unit and "h" not in low_unit:
        return f"{low_number}–{high_number} {low_unit}"
    return f"{low_text} – {high_text}"


def estimate_text(estimate: dict) -> str:
    """`about 2–4 min (this machine's speed, measured on ...)`: a range and what it rests on."""
    source = SPEED_SOURCES[estimate["speed_source"]]
    text = f"about {format_range(estimate['low_s'], estimate['high_s'])} ({source}"
    if estimate.get("calibrating"):
        text += "; timing the backbone here now, for the next estimate"
    return text + ")"


def run_eta(status: Status) -> float | None:
    """The whole run's seconds left, from the click: what its trainer last wrote (during
    extraction too), else, while it waits in the queue, the estimate it was queued with."""
    if status.eta is not None:
        return status.eta
    if status.state == "queued" and status.estimate is not None:
        return status.estimate.seconds
    return None


def estimate_error(status: Status) -> dict | None:
    """A finished run's estimate beside its actual time (`started` to `finished`), or `None`
    when it has no estimate or did not finish.

    Returns:
        `{"estimate_s", "low_s", "high_s", "actual_s", "error", "in_range", "source"}`; `error` is
        `(estimate - actual) / actual` (+0.25: the estimate was 25% too long).
    """
    estimate = status.estimate
    if estimate is None or status.state != "done" or not status.started or not status.finished:
        return None
    try:
        started, finished = (dt.datetime.fromisoformat(t) for t in (status.started, status.finished))
    except ValueError:
        return None
    actual = (finished - started).total_seconds()
    if actual <= 0:
        return None
    return {
        "estimate_s": estimate.seconds,
        "low_s": estimate.low_s,
        "high_s": estimate.high_s,
        "actual_s": round(actual, 1),
        "error": round((estimate.seconds - actual) / actual, 3),
        "in_range": estimate.low_s <= actual <= estimate.high_s,
        "source": estimate.source,
    }
