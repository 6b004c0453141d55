"""Every training setting in one dataclass, and the study's tuning steps as named presets.

A run's `config.json` is `TrainConfig.to_json()` plus what the run learned about its data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from flower_core.backbones import BACKBONES, DEFAULT_BACKBONE
from flower_core.errors import FlowerError

PREPROCESSING_CHOICES = ("rescale", "imagenet")
POOLING_CHOICES = ("max", "avg")
STRATEGY_CHOICES = ("default", "mirrored")
# How a frozen backbone's augmented training photos are cached (flower_core/features.py).
AUGMENT_CACHE_CHOICES = ("views", "maps")


@dataclass
class TrainConfig:
    """All settings of one training run; defaults are the study's `base` recipe on VGG16."""

    preset: str = "base"
    backbone: str = DEFAULT_BACKBONE
    weights: str = "imagenet"
    image_size: int = 224
    preprocessing: str = "rescale"
    pooling: str = "max"
    dense_units: list[int] = field(default_factory=lambda: [512, 128])
    dropout: float = 0.0
    batchnorm: bool = False
    augment: bool = False
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-3
    patience: int = 5
    reduce_lr: bool = False
    class_weights: bool = False
    label_smoothing: float = 0.0
    seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    fine_tune_blocks: int = 0
    fine_tune_epochs: int = 10
    fine_tune_learning_rate: float = 1e-5
    cache_features: bool = True
    augment_views: int = 5
    # Augmented feature maps: one backbone pass per photo, as accurate as K = 5 views or more
    # (docs/RESULTS.md); "views" caches K augmented photos' features instead.
    augment_cache: str = "maps"
    strategy: str = "default"

    def validate(self) -> TrainConfig:
        """Check every value up front, with the received value and the fix in the message."""
        checks = [
            (self.backbone in BACKBONES, f"backbone must be one of {', '.join(BACKBONES)}", "backbone"),
            (self.preprocessing in PREPROCESSING_CHOICES, "preprocessing must be rescale or imagenet", "preprocessing"),
            (self.pooling in POOLING_CHOICES, "pooling must be max or avg", "pooling"),
            (32 <= self.image_size <= 1024, "image size must be between 32 and 1024 pixels", "image_size"),
            (self.epochs >= 1, "epochs must be at least 1", "epochs"),
            (self.batch_size >= 1, "batch size must be at least 1", "batch_size"),
            (self.learning_rate > 0, "learning rate must be positive", "learning_rate"),
            (self.learning_rate < float("inf"), "learning rate must be a finite number", "learning_rate"),
            (self.fine_tune_learning_rate < float("inf"), "fine-tune learning rate must be a finite number",
             "fine_tune_learning_rate"),
            (0 <= self.seed < 2**32, "seed must be between 0 and 2**32 - 1", "seed"),
            (self.patience >= 0, "patience must be 0 or more epochs", "patience"),
            (self.fine_tune_epochs >= 0, "fine-tune epochs must be 0 or more", "fine_tune_epochs"),
            (0 <= self.dropout < 1, "dropout must be in [0, 1)", "dropout"),
            (0 <= self.label_smoothing < 1, "label smoothing must be in [0, 1)", "label_smoothing"),
            (self.fine_tune_blocks >= 0, "fine-tune blocks must be 0 or more", "fine_tune_blocks"),
            (self.fine_tune_learning_rate > 0, "fine-tune learning rate must be positive",
             "fine_tune_learning_rate"),
            (self.augment_views >= 1, "augmented views must be at least 1", "augment_views"),
            (self.augment_cache in AUGMENT_CACHE_CHOICES, "augment cache must be views or maps", "augment_cache"),
            (self.strategy in STRATEGY_CHOICES, "strategy must be default or mirrored", "strategy"),
            (all(u >= 1 for u in self.dense_units), "dense units must be positive", "dense_units"),
        ]
        for ok, message, name in checks:
            if not ok:
                raise FlowerError(f"{message}. Received: {name}={getattr(self, name)!r}")
        return self

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


_AUGMENTED = {"dropout": 0.5, "augment": True}

# The study's tuning steps, each as changes to the one before (DESIGN.md).
PRESETS: dict[str, dict] = {
    "base": {},
    "dropout50": dict(_AUGMENTED),
    "dropout20": {**_AUGMENTED, "dropout": 0.2},
    "batch64": {**_AUGMENTED, "dropout": 0.2, "batch_size": 64},
    "plateau": {**_AUGMENTED, "dropout": 0.2, "reduce_lr": True},
    "center": {**_AUGMENTED, "dropout": 0.2, "reduce_lr": True, "preprocessing": "imagenet"},
    "batchnorm": {
        **_AUGMENTED,
        "dropout": 0.2,
        "reduce_lr": True,
        "preprocessing": "imagenet",
        "batchnorm": True,
    },
    # Our best frozen-backbone recipe on the real photos (docs/RESULTS.md): the study's last step
    # with average pooling and label smoothing, no augmentation (it did not help on cached
    # features and costs K backbone passes per photo), at 384 px: most photos are larger than
    # 224 px, and MobileNet's features of the larger input scored 1.2 points higher.
    "best": {
        "image_size": 384,
        "dropout": 0.2,
        "reduce_lr": True,
        "preprocessing": "imagenet",
        "batchnorm": True,
        "pooling": "avg",
        "label_smoothing": 0.1,
    },
}

SUGGESTED_PRESET = "best"

PRESET_DESCRIPTIONS = {
    "base": "frozen backbone, GlobalMaxPooling, Dense 512 + 128, Adam 1e-3, batch 32, pixels / 255",
    "dropout50": "+ Dropout 0.5 after each dense layer, + augmentation (shear, zoom, rotation, flip)",
    "dropout20": "as dropout50 with Dropout 0.2",
    "batch64": "dropout20 with batch size 64",
    "plateau": "dropout20 + ReduceLROnPlateau on val_loss",
    "center": "plateau + the backbone's ImageNet preprocessing (mean-centering for VGG16)",
    "batchnorm": "center + BatchNormalization in the head",
    "best": "batchnorm with average pooling, label smoothing 0.1, no augmentation, 384 px (our best)",
}

# `best`'s test accuracy on the real photos, mean and standard deviation over 3 seeds (MobileNet,
# ImageNet weights, 384 px; docs/RESULTS.md, "Image size").
BEST_RESULT = (0.9312, 0.0047)

# The study's reported test loss and accuracy for each preset (VGG16, its own split).
STUDY_RESULTS = {
    "base": (0.4824, 0.8209),
    "dropout50": (0.5196, 0.8058),
    "dropout20": (0.5112, 0.8302),
    "batch64": (0.5477, 0.8035),
    "plateau": (0.4790, 0.8360),
    "center": (0.4891, 0.8407),
    "batchnorm": (0.3971, 0.8547),
}


def make_config(preset: str = "base", **overrides) -> TrainConfig:
    """A validated config from a preset, with any setting overridden (`None` values are ignored)."""
    if preset not in PRESETS:
        raise FlowerError(f"unknown preset '{preset}'. Choose one of: {', '.join(PRESETS)}")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    unknown = set(values) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise FlowerError(f"unknown settings: {', '.join(sorted(unknown))}")
    return TrainConfig(preset=preset, **values).validate()
