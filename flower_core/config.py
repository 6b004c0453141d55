"""Every training setting in one dataclass, and the study's tuning steps as named presets.

A run's `config.json` is `TrainConfig.to_json()` plus what the run learned about its data.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from flower_core.data.dataset import DEFAULT_SPLIT
from flower_core.errors import FlowerError
from flower_core.models.backbone_specs import BACKBONES, DEFAULT_BACKBONE

PREPROCESSING_CHOICES = ("rescale", "imagenet")
POOLING_CHOICES = ("max", "avg")
STRATEGY_CHOICES = ("default", "mirrored")
# How a frozen backbone's augmented training photos are cached (flower_core/models/features.py).
AUGMENT_CACHE_CHOICES = ("views", "maps")
# ReduceLROnPlateau multiplies the learning rate by this when the validation loss stalls.
REDUCE_LR_FACTOR = 0.2
# Feature maps with fewer positions (4 x 4) are too coarse for rotation and zoom to change them.
MIN_MAP_POSITIONS = 16
# Seeds go to NumPy, TensorFlow and Python's `random`; this range suits all three.
MAX_SEED = 2**31 - 1
# The most epochs of any phase, and the longest patience: a bound on absurd input only.
MAX_EPOCHS = 100_000
# How much one action may queue: a study's or a sweep's seeds per setting, a sweep's runs.
MAX_SEEDS = 10
DEFAULT_MAX_RUNS = 64


def check_seeds(seeds) -> int:
    """`seeds` if it is a whole number from 1 to `MAX_SEEDS`: the one check the study and sweeps
    share, so each refuses what its help says."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
        raise FlowerError(f"seeds must be between 1 and {MAX_SEEDS}. Received: seeds={seeds!r}")
    return seeds


@dataclass(frozen=True)
class Setting:
    """What the command line, the Train form and `validate` know about one training setting.

    Args:
        help: one or two sentences for a user, the CLI's `--help` and the form's tooltip.
        label: the form's label, in sentence case; its lower case names the setting in errors.
        choices: the allowed values, for a setting with a fixed list.
        minimum, maximum: inclusive limits; `above` and `below` are exclusive ones.
        options: the values the form offers on a slider (the CLI takes any valid value).
        unit: shown after the form's label, e.g. "px".
        cli_aliases: extra spellings on the command line that set a boolean to False.
    """

    help: str
    label: str
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    below: float | None = None
    options: tuple = ()
    unit: str = ""
    cli_aliases: tuple = ()

    @property
    def noun(self) -> str:
        return self.label[0].lower() + self.label[1:]

    def limits_text(self) -> str:
        """The allowed range in words, e.g. "between 32 and 1024", "positive", "in [0, 1)"."""
        low = None if self.minimum is None else f"[{_number(self.minimum)}"
        low = low or (None if self.above is None else f"({_number(self.above)}")
        high = None if self.maximum is None else f"{_number(self.maximum)}]"
        high = high or (None if self.below is None else f"{_number(self.below)})")
        if self.above == 0 and high is None:
            return "positive"
        if low and high:
            if low.startswith("[") and high.endswith("]"):
                return f"between {low[1:]} and {high[:-1]}"
            return f"in {low}, {high}"
        if low:
            return f"at least {low[1:]}" if low.startswith("[") else f"above {low[1:]}"
        return f"below {high[:-1]}" if high else ""

    def problem(self, value) -> str | None:
        """Why `value` is not allowed, in the words of `validate`'s errors; None when it is."""
        if self.choices and value not in self.choices:
            names = [str(c) for c in self.choices]
            allowed = " or ".join(names) if len(names) == 2 else "one of " + ", ".join(names)
            return f"{self.noun} must be {allowed}"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                return f"{self.noun} must be a finite number"
            outside = (
                (self.minimum is not None and value < self.minimum)
                or (self.maximum is not None and value > self.maximum)
                or (self.above is not None and value <= self.above)
                or (self.below is not None and value >= self.below)
            )
            if outside:
                return f"{self.noun} must be {self.limits_text()}"
        return None


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def setting(default, help: str, label: str, **spec):
    """A `TrainConfig` field whose `Setting` is its one description (dataclass field metadata)."""
    factory = (
        {"default_factory": lambda: list(default)} if isinstance(default, list) else {"default": default}
    )
    return field(metadata={"setting": Setting(help, label, **spec)}, **factory)


# Python's own types of each field, for the type check in `validate` (a run's config.json, or a
# value typed by hand, may hold anything).
_TYPES = {"int": int, "float": (int, float), "str": str, "bool": bool, "list[int]": list}


@dataclass
class TrainConfig:
    """All settings of one training run; defaults are the study's `base` recipe on VGG16.

    Each field but `preset` is a `setting(...)`: its help, limits and choices feed the command
    line (`flower_core/cli/commands.py`), the Train form (`ui/train_form.py`) and `validate`.
    """

    preset: str = "base"
    backbone: str = setting(
        DEFAULT_BACKBONE,
        "The pretrained network whose features the new head learns from.",
        "Backbone",
        choices=tuple(BACKBONES),
    )
    weights: str = setting(
        "imagenet",
        "imagenet (transfer learning from a frozen backbone), none (the whole network "
        "trains from random weights: the no-transfer baseline) or the path of a weights file.",
        "Weights",
    )
    image_size: int = setting(
        224,
        "Photos are resized to this square size, in pixels. Smaller trains much faster.",
        "Image size",
        minimum=32,
        maximum=1024,
        unit="px",
        options=(32, 64, 96, 128, 160, 192, 224, 256, 299, 320, 384, 448, 512),
    )
    preprocessing: str = setting(
        "rescale",
        "rescale: pixels / 255; imagenet: the backbone's own ImageNet preprocessing "
        "(mean-centering for VGG16).",
        "Preprocessing",
        choices=PREPROCESSING_CHOICES,
    )
    pooling: str = setting(
        "max", "Global pooling of the backbone's feature maps.", "Pooling", choices=POOLING_CHOICES
    )
    dense_units: list[int] = setting(
        [512, 128], "The head's dense layers, comma-separated sizes, e.g. 512,128.", "Dense units"
    )
    dropout: float = setting(
        0.0,
        "Share of the head's units dropped at random while training (0 = off).",
        "Dropout",
        minimum=0,
        below=1,
        options=tuple(round(0.05 * i, 2) for i in range(17)),
    )
    batchnorm: bool = setting(
        False, "Batch normalisation after each dense layer of the head.", "Batch-norm in the head"
    )
    augment: bool = setting(
        False, "Random shear, zoom, 10° rotation and horizontal flips of the training photos.", "Augmentation"
    )
    epochs: int = setting(
        30,
        "The most passes over the training photos; early stopping may end sooner.",
        "Epochs",
        minimum=1,
        maximum=MAX_EPOCHS,
    )
    batch_size: int = setting(
        32, "Photos per gradient step.", "Batch size", minimum=1, options=(8, 16, 32, 64, 128)
    )
    learning_rate: float = setting(
        1e-3,
        "Adam's step size for the head (1e-3 in the study).",
        "Learning rate",
        above=0,
        options=(1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
    )
    patience: int = setting(
        5,
        "Early stopping: epochs without a lower validation loss before training stops.",
        "Early-stopping patience",
        minimum=0,
        maximum=MAX_EPOCHS,
    )
    reduce_lr: bool = setting(
        False,
        f"ReduceLROnPlateau: multiply the learning rate by {REDUCE_LR_FACTOR:g} when the "
        "validation loss stops improving.",
        "ReduceLROnPlateau",
    )
    class_weights: bool = setting(False, "Weigh rare classes up in the loss.", "Class weights")
    label_smoothing: float = setting(
        0.0, "Soften the one-hot targets by this much (0 = off).", "Label smoothing", minimum=0, below=1
    )
    seed: int = setting(
        DEFAULT_SPLIT["seed"],
        "Fixes the split, the initial weights and the augmentation.",
        "Seed",
        minimum=0,
        maximum=MAX_SEED,
    )
    val_fraction: float = setting(
        DEFAULT_SPLIT["val_fraction"],
        "Share of each class held out for validation.",
        "Validation fraction",
        minimum=0,
        below=1,
    )
    test_fraction: float = setting(
        DEFAULT_SPLIT["test_fraction"],
        "Share of each class held out for the final test.",
        "Test fraction",
        minimum=0,
        below=1,
    )
    fine_tune_blocks: int = setting(
        0,
        "Unfreeze the backbone's last N blocks after the head converges (0 = keep it frozen).",
        "Fine-tune blocks",
        minimum=0,
        maximum=20,
    )
    fine_tune_epochs: int = setting(
        10,
        "Epochs of fine-tuning, when fine-tune blocks > 0.",
        "Fine-tune epochs",
        minimum=1,
        maximum=MAX_EPOCHS,
    )
    fine_tune_learning_rate: float = setting(
        1e-5, "Adam's step size while fine-tuning.", "Fine-tune learning rate", above=0
    )
    cache_features: bool = setting(
        True,
        "Compute a frozen backbone's features once and train the head on them; off: "
        "train end to end on the photos every epoch.",
        "Cache features",
        cli_aliases=("--no-cache",),
    )
    augment_views: int = setting(
        5,
        "With augment cache 'views': how many augmented views of each photo are computed and cached.",
        "Augmented views (K)",
        minimum=1,
        maximum=50,
    )
    # Augmented feature maps: one backbone pass per photo, as accurate as K = 5 views or more
    # (docs/RESULTS.md); "views" caches K augmented photos' features instead.
    augment_cache: str = setting(
        "maps",
        "With augmentation and a frozen backbone: cache each photo's feature maps once and "
        "rotate, zoom and shear them anew each epoch (maps: one backbone pass, much faster to "
        "start; no flip, which pooling cancels), or cache K augmented views of each photo (views: "
        f"K passes). Maps smaller than {math.isqrt(MIN_MAP_POSITIONS)} x "
        f"{math.isqrt(MIN_MAP_POSITIONS)} (below 128 px for most backbones) are too coarse to "
        "augment: such runs cache views instead.",
        "Augment cache",
        choices=AUGMENT_CACHE_CHOICES,
    )
    strategy: str = setting(
        "default",
        "mirrored: data-parallel over all GPUs (or logical CPUs).",
        "Strategy",
        choices=STRATEGY_CHOICES,
    )

    def validate(self) -> TrainConfig:
        """Check every value up front, with the received value and the fix in the message."""
        for name, spec in SETTINGS.items():
            value = getattr(self, name)
            expected = _TYPES[_FIELDS[name].type]
            if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
                message = f"{spec.noun} must be of type {_FIELDS[name].type}"
            else:
                message = spec.problem(value)
            if message:
                raise FlowerError(f"{message}. Received: {name}={value!r}")
        backbone = BACKBONES[self.backbone]
        extra = [
            (
                all(isinstance(u, int) and u >= 1 for u in self.dense_units),
                "dense units must be positive",
                "dense_units",
            ),
            (
                self.val_fraction + self.test_fraction < 1,
                "validation and test fractions must add up to less than 1",
                "test_fraction",
            ),
            (
                self.image_size % backbone.stride == 0 or not backbone.members,
                f"backbone {self.backbone} joins the feature maps of its backbones, whose grids match "
                f"only when the {SETTINGS['image_size'].noun} is a multiple of {backbone.stride} px",
                "image_size",
            ),
        ]
        for ok, message, name in extra:
            if not ok:
                raise FlowerError(f"{message}. Received: {name}={getattr(self, name)!r}")
        return self

    @property
    def trains_from_scratch(self) -> bool:
        """Random-init weights: the no-transfer baseline trains the whole network."""
        return self.weights == "none"

    @property
    def head_on_cache(self) -> bool:
        """Whether the head trains on cached backbone features (a frozen pretrained backbone),
        rather than the whole model on the photos every epoch."""
        return self.cache_features and not self.trains_from_scratch

    @property
    def augments_maps(self) -> bool:
        """Whether the head trains on augmented cached feature maps (`augment_cache="maps"`)."""
        return self.head_on_cache and self.augment and self.augment_cache == "maps"

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
# Every training setting, in the order of `TrainConfig`'s fields: the single source of their
# help, labels, limits and choices.
SETTINGS: dict[str, Setting] = {
    name: f.metadata["setting"] for name, f in _FIELDS.items() if "setting" in f.metadata
}
DEFAULTS = TrainConfig()


def parse_setting(name: str, text: str):
    """`text` (as typed on a command line or in a sweep grid) as the value of setting `name`.

    Example: `parse_setting("dense_units", "512,128")` is `[512, 128]`; `parse_setting("augment",
    "yes")` is True. A value of the wrong kind is a `FlowerError` naming the setting.
    """
    if name not in SETTINGS:
        raise FlowerError(f"unknown setting {name!r}. Choose one of: {', '.join(SETTINGS)}")
    kind, text = _FIELDS[name].type, text.strip()
    try:
        if kind == "bool":
            words = {
                "true": True,
                "yes": True,
                "on": True,
                "1": True,
                "false": False,
                "no": False,
                "off": False,
                "0": False,
            }
            return words[text.lower()]
        if kind == "list[int]":
            return [int(part) for part in text.split(",")]
        return {"int": int, "float": float, "str": str}[kind](text)
    except (KeyError, ValueError):
        example = {"bool": "true or false", "list[int]": "comma-separated integers, e.g. 512,128"}
        raise FlowerError(
            f"{SETTINGS[name].noun} takes {example.get(kind, 'a value of type ' + kind)}. "
            f"Received: {name}={text!r}"
        ) from None


_AUGMENTED = {"dropout": 0.5, "augment": True}

# The study's tuning steps, each as changes to the one before (README.md, "Presets").
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
    # 224 px, and MobileNet's features of the larger input scored 1.2 points higher. It names its
    # backbone, EfficientNet-Lite0 and MobileNet v1 side by side: either alone scores about 93%
    # on the split, the two concatenated 2 points more, and 4.5 points more than Lite0 alone on
    # photos from another collection; both weights install with the requirements (no download;
    # docs/RESULTS.md, "Photos from another collection"). `BEST_RESULT` is this recipe's.
    "best": {
        "backbone": "lite0_mobilenet",
        "image_size": 384,
        "dropout": 0.2,
        "reduce_lr": True,
        "preprocessing": "imagenet",
        "batchnorm": True,
        "pooling": "avg",
        "label_smoothing": 0.1,
    },
}

# The app suggests our best recipe; the command line starts from the study's first step, so
# that a script names each change from the study it makes.
SUGGESTED_PRESET = "best"
DEFAULT_PRESET = "base"

PRESET_DESCRIPTIONS = {
    "base": "frozen backbone, GlobalMaxPooling, Dense 512 + 128, Adam 1e-3, batch 32, pixels / 255",
    "dropout50": "+ Dropout 0.5 after each dense layer, + augmentation (shear, zoom, rotation, flip)",
    "dropout20": "as dropout50 with Dropout 0.2",
    "batch64": "dropout20 with batch size 64",
    "plateau": "dropout20 + ReduceLROnPlateau on val_loss",
    "center": "plateau + the backbone's ImageNet preprocessing (mean-centering for VGG16)",
    "batchnorm": "center + BatchNormalization in the head",
    "best": "batchnorm on EfficientNet-Lite0 and MobileNet v1 side by side (lite0_mobilenet) with average "
    "pooling, label smoothing 0.1, no augmentation, 384 px (our best)",
}

# `best`'s test accuracy on the real photos, mean and standard deviation over 3 seeds (its
# backbone, ImageNet weights, 384 px; docs/RESULTS.md, "Photos from another collection").
BEST_RESULT = (0.9548, 0.0036)

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
