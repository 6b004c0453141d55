"""What each file of a run folder holds, as frozen dataclasses checked when read
(docs/ARCHITECTURE.md, "The run folder"; `runs.Run` reads them).

Every field an older run may lack has a default, so old runs read as they are; what changed shape
between layouts is turned into today's layout by one function, `migrate`. A value of the wrong
type, or a number that is not finite, makes the file corrupt: one line naming the file and the
field, which the run lists and pages show instead of failing on it later.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flower_core.errors import FlowerError
from flower_core.store.typed_json import JsonRecord, WrongValue, corrupt, fields_from

if TYPE_CHECKING:
    from flower_core.config import TrainConfig


@dataclass(frozen=True)
class RunConfig:
    """`config.json`: the settings a run was queued with (`TrainConfig`, stored flat beside the
    rest), its dataset and split file, its place in a group (`flower_core.groups.group`), and the
    run it repeats on a fixed dataset (`flower_core.training.retrain`)."""

    settings: TrainConfig
    data_root: str | None = None
    split_file: str | None = None
    group: str | None = None
    group_kind: str | None = None
    group_label: str | None = None
    share_split: bool = False
    repeats: str | None = None

    @classmethod
    def from_json(cls, data: Any, source: str | Path) -> RunConfig:
        """Checked like a `JsonRecord`; `TrainConfig` is imported here, when a config is first
        read, because `flower_core.config` imports Keras."""
        from flower_core.config import TrainConfig

        if not isinstance(data, dict):
            raise corrupt(source, f"expected a JSON object, found {type(data).__name__}")
        hints = typing.get_type_hints(cls, localns={"TrainConfig": TrainConfig})
        try:
            settings = TrainConfig(**fields_from(TrainConfig, data))
            return cls(settings, **fields_from(cls, data, hints=hints, skip={"settings"}))
        except WrongValue as error:
            raise corrupt(source, str(error)) from None

    def to_json(self) -> dict:
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "settings"}
        return {**self.settings.to_json(), **{k: v for k, v in own.items() if v is not None}}


@dataclass(frozen=True)
class Facts(JsonRecord):
    """`facts.json`: what a run learned when it started, written once when its model is built;
    every field empty before that."""

    class_names: tuple[str, ...] = ()
    dataset_fingerprint: str | None = None
    skipped_files: tuple[tuple[str, ...], ...] = ()  # (photo, why it could not be read)
    split_sizes: dict[str, int] = field(default_factory=dict)
    augment_cache: str | None = None  # as it ran: `views` where the maps were too small
    host: str | None = None  # the machine that trained it
    node: str | None = None  # its Ray node on a cluster (`training.cluster_runs`)


@dataclass(frozen=True)
class Extraction(JsonRecord):
    """Progress of a feature-cache build, in `status.json` while it lasts (`progress.Throughput`)."""

    what: str = ""
    photos_done: int = 0
    photos_total: int = 0
    photos_per_s: float | None = None
    eta_s: float | None = None
    message: str = ""


@dataclass(frozen=True)
class Estimate(JsonRecord):
    """The time a run was estimated to take as it was queued (`estimate.recorded_estimate`), in
    `status.json`, so its actual time can be compared with it (`estimate.estimate_error`)."""

    seconds: float
    low_s: float
    high_s: float
    extraction_s: float = 0.0
    training_s: float = 0.0
    passes: float = 0.0
    photos_per_s: float | None = None
    source: str | None = None  # `estimate.SPEED_SOURCES`' key: what the speed rests on


@dataclass(frozen=True)
class Status(JsonRecord):
    """`status.json`: the run's state and progress; `interrupted` and `corrupt` are read
    (`runs.read_status`, `runs.peek_status`), never written."""

    state: str = "unknown"
    epoch: int = 0
    epochs: int = 0
    message: str = ""
    queued: str | None = None
    queued_ns: int | None = None
    started: str | None = None
    finished: str | None = None
    heartbeat: float | None = None
    pid: int | None = None
    pid_start: str | None = None
    host: str | None = None
    replicas: int | None = None
    phase: str | None = None
    batch: int | None = None
    batches: int | None = None
    loss: float | None = None
    accuracy: float | None = None
    lr: float | None = None
    elapsed: float | None = None
    eta: float | None = None
    kept_epoch: int | None = None  # the epoch whose model `model.keras` holds
    extraction: Extraction | None = None
    stop_reason: str | None = None
    lost: str | None = None  # why a cluster run's task ended without its trainer saying so
    estimate: Estimate | None = None  # made as the run was queued

    def merged(self, source: str | Path, **fields) -> Status:
        """This status with `fields` changed (a name that is no field raises `TypeError`), checked
        as if read back from `source`, so a writer never leaves a file its readers refuse."""
        return Status.from_json(dataclasses.replace(self, **fields).to_json(), source)


@dataclass(frozen=True)
class Meta(JsonRecord):
    """`meta.json`: the name and tags a user gave the run."""

    name: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class HistoryRow(JsonRecord):
    """One line of `history.jsonl`: a finished epoch."""

    epoch: int
    phase: str = "train"  # runs from before phases were logged trained in one phase
    loss: float | None = None
    accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    lr: float | None = None
    seconds: float | None = None

    @property
    def line(self) -> str:
        """The epoch as a line of the run's log on the Train page."""
        val = (
            f" · val_loss {_shown(self.val_loss, '.4f')} · val_acc {_shown(self.val_accuracy, '.1%')}"
            if self.val_loss is not None
            else ""
        )
        return (
            f"epoch {self.epoch:>3} [{self.phase}] loss {_shown(self.loss, '.4f')} · "
            f"acc {_shown(self.accuracy, '.1%')}{val} · {self.seconds or 0:.1f}s"
        )


def _shown(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def history_rows(text: str) -> tuple[HistoryRow, ...]:
    """The rows of `history.jsonl`'s text. A torn line (a killed writer), a line that is not an
    object, or a row with a wrong-typed or non-finite value is left out: one bad epoch line
    never hides the others, and never reaches a reader."""
    rows = []
    for line in text.splitlines():
        try:
            rows.append(HistoryRow.from_json(json.loads(line), "history.jsonl"))
        except (ValueError, FlowerError):  # not JSON, or not a row
            continue
    return tuple(rows)


@dataclass(frozen=True)
class ClassReport(JsonRecord):
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    support: int | None = None


@dataclass(frozen=True)
class ConfusedPair(JsonRecord):
    true: str
    predicted: str
    count: int


@dataclass(frozen=True)
class Mistake(JsonRecord):
    """A misclassified test photo."""

    path: str
    true_class: str
    predicted_class: str
    confidence: float | None = None
    true_probability: float | None = None
    loss: float | None = None


@dataclass(frozen=True)
class Skipped(JsonRecord):
    path: str
    reason: str = ""


@dataclass(frozen=True)
class CalibrationBin(JsonRecord):
    confidence: float
    accuracy: float
    count: int
    lower: float | None = None
    upper: float | None = None


@dataclass(frozen=True)
class Calibration(JsonRecord):
    """The reliability curve and its expected calibration error (`calibration.reliability`)."""

    ece: float | None = None
    bins: tuple[CalibrationBin, ...] = ()


@dataclass(frozen=True)
class Threshold(JsonRecord):
    """The run's own low-confidence threshold (`calibration.confidence_threshold`)."""

    threshold: float
    target_accuracy: float | None = None
    val_photos: int | None = None
    coverage: float | None = None
    accuracy_above: float | None = None


@dataclass(frozen=True)
class Metrics(JsonRecord):
    """`metrics.json`: the test results (`evaluate.summarise`) and the confidence threshold;
    every field empty before the run is evaluated."""

    test_loss: float | None = None
    test_accuracy: float | None = None
    num_files: int | None = None
    per_class: dict[str, ClassReport] = field(default_factory=dict)
    confusion: tuple[tuple[int, ...], ...] = ()
    class_names: tuple[str, ...] = ()
    most_confused: tuple[ConfusedPair, ...] = ()
    misclassified: tuple[Mistake, ...] = ()
    calibration: Calibration | None = None
    skipped: tuple[Skipped, ...] = ()
    confidence: Threshold | None = None

    def problem(self) -> tuple[str, str] | None:
        n = len(self.class_names)
        square = len(self.confusion) == n and all(len(row) == n for row in self.confusion)
        if self.class_names and self.confusion and not square:
            return "confusion", f"should be {n} x {n}, one row and column per class"
        return None

    @property
    def evaluated(self) -> bool:
        """Whether there are test results to show: a confusion matrix and its classes."""
        return bool(self.confusion and self.class_names)

    @property
    def threshold(self) -> float | None:
        """The run's own "sure" threshold, `None` for a run trained before thresholds were stored."""
        return self.confidence.threshold if self.confidence else None

    def confused_cells(self) -> list[tuple[str, str, int]]:
        """(true class, predicted class, photos) of every confusion cell with mistakes, most
        confused first (row by row among equals): all of them, where `most_confused` keeps five."""
        names = self.class_names
        cells = [
            (names[t], names[p], count)
            for t, row in enumerate(self.confusion)
            for p, count in enumerate(row)
            if t != p and count
        ]
        return sorted(cells, key=lambda cell: -cell[2])

    def mistakes(self, true_class: str, predicted_class: str) -> list[Mistake]:
        """The misclassified test photos of one confusion cell, worst first."""
        cell = (true_class, predicted_class)
        return [m for m in self.misclassified if (m.true_class, m.predicted_class) == cell]

    def right(self, true_class: str, test_files: Iterable[str]) -> list[str]:
        """The test photos of `true_class` predicted right (its cell on the diagonal): those of
        `test_files`, the run's test split, in its class folder that were neither misclassified
        nor skipped, since only the mistakes are kept photo by photo."""
        left_out = {m.path for m in self.misclassified} | {s.path for s in self.skipped}
        return [path for path in test_files if path.split("/", 1)[0] == true_class and path not in left_out]


# The facts a run learned when it started; before `facts.json` existed it added them to config.json.
FACT_NAMES = tuple(f.name for f in dataclasses.fields(Facts))


def migrate(config: dict, facts: dict | None) -> tuple[dict, dict]:
    """A run's `config.json` and `facts.json` (`None` when absent) as today's layout holds them,
    whichever layout wrote them; the one place that knows the older layouts:

    - before `facts.json` existed, a run added its facts to `config.json` when it started (none
      when it never started: then it has no `class_names`);
    - before the `augment_cache` setting existed, augmentation on a frozen backbone cached
      augmented views.
    """
    if facts is None:
        started = "class_names" in config
        facts = {name: config[name] for name in FACT_NAMES if name in config} if started else {}
    if "augment_cache" not in config:
        config = {**config, "augment_cache": "views"}
    return config, facts
