"""The image_folder loader on tiny PNG/JPEG files the tests write: classes from sub-folders,
grey or RGB, resizing, unlabelled folders for predict, and bad folders as exit-2 errors."""

from __future__ import annotations

import numpy as np
import pytest

from trainkit import api
from trainkit.config import load_config_text
from trainkit.errors import DataError

Image = pytest.importorskip("PIL.Image")


def write_folder(root, classes=("circle", "square"), n=6, size=(10, 12), fmt="png"):
    """Bright left half for the first class, bright right half for the second (RGB)."""
    rng = np.random.default_rng(0)
    for k, c in enumerate(classes):
        (root / c).mkdir(parents=True)
        for i in range(n):
            a = rng.integers(0, 60, (*size, 3)).astype(np.uint8)
            half = slice(0, size[1] // 2) if k == 0 else slice(size[1] // 2, None)
            a[:, half] += 150
            Image.fromarray(a).save(root / c / f"{i}.{fmt}")
    return root


def build(tmp_path, data, model="{name: cnn, channels: [4], hidden: []}", extra=""):
    text = f"seed: 0\ndata: {data}\nmodel: {model}\noptimizer: {{name: adam, lr: 0.05}}\n{extra}"
    return api.build(load_config_text(text, str(tmp_path / "c.yaml"), base_dir=tmp_path))


@pytest.mark.parametrize("mode,channels", [("rgb", 3), ("grey", 1)])
def test_classes_from_sub_folders_resized(tmp_path, mode, channels):
    write_folder(tmp_path / "imgs")
    exp = build(tmp_path, f"{{name: image_folder, path: imgs, size: [8, 6], mode: {mode}, val_fraction: 0}}")
    assert exp.state.classes == ["circle", "square"] and exp.state.shape == [channels, 8, 6]
    assert exp.net.in_shape == (channels, 8, 6)
    X = exp.arrays["X_train"]
    assert X.shape == (12, channels * 48) and 0 <= X.min() and X.max() <= 1


def test_pixels_are_read_exactly_without_resize(tmp_path):
    root = tmp_path / "imgs"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
    a = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    Image.fromarray(a).save(root / "a" / "x.png")
    Image.fromarray(a[::-1].copy()).save(root / "b" / "x.png")
    exp = build(tmp_path, "{name: image_folder, path: imgs, size: [2, 3], val_fraction: 0}", model="mlp")
    X = exp.arrays["X_train"].reshape(2, 3, 2, 3)
    np.testing.assert_allclose(X[0], a.transpose(2, 0, 1) / 255.0, rtol=1e-6)


@pytest.mark.parametrize("mode,size", [("grey", [2, 3]), ("rgb", [2, 3]), ("grey", [4, 6])])
def test_16_bit_grey_images_read_as_their_8_bit_twins(tmp_path, mode, size):
    """A 16-bit PNG holds v·257 where an 8-bit one holds v: both are the same image, and read the
    same, resized or not (to within the 8-bit one's rounding; Pillow's "L"/"RGB" conversion
    clipped 16-bit values at 255)."""
    root = tmp_path / "imgs"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
    a = np.array([[0, 40, 80], [120, 200, 255]], dtype=np.uint8)
    Image.fromarray(a).save(root / "a" / "x.png")
    Image.fromarray(a.astype(np.uint16) * 257).save(root / "b" / "x.png")
    assert Image.open(root / "b" / "x.png").mode.startswith("I")
    data = f"{{name: image_folder, path: imgs, size: {size}, mode: {mode}, val_fraction: 0}}"
    X = build(tmp_path, data, model="mlp").arrays["X_train"]
    resized = size != [2, 3]  # the 8-bit image is resized in whole levels, the 16-bit one in floats
    np.testing.assert_allclose(X[1], X[0], rtol=0, atol=0.51 / 255 if resized else 1e-6)
    if not resized:
        np.testing.assert_allclose(X[0].reshape(-1, 2, 3)[0], a / 255.0, rtol=1e-6)


def test_a_cnn_learns_the_folder_and_predicts_a_flat_folder(tmp_path, cli):
    write_folder(tmp_path / "imgs", n=10, fmt="jpg")
    write_folder(tmp_path / "new", n=1)
    (tmp_path / "flat").mkdir()
    for f in (tmp_path / "new").rglob("*.png"):
        f.rename(tmp_path / "flat" / f"{f.parent.name}.png")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "seed: 0\ndata: {name: image_folder, path: imgs, size: 8, val_fraction: 0.2}\n"
        "model: {name: cnn, channels: [4], hidden: []}\noptimizer: {name: adam, lr: 0.05}\ntrain: {epochs: 15}\n"
    )
    r = cli("train", cfg, "--output-dir", tmp_path / "run", "--json")
    assert r.code == 0 and r.json["metrics"]["val_accuracy"] == 1.0
    p = cli("predict", tmp_path / "run", "--data", tmp_path / "flat")
    assert p.code == 0
    rows = [line.split(",")[0] for line in p.stdout.strip().splitlines()[1:]]
    assert rows == ["circle", "square"]


@pytest.mark.parametrize(
    "setup,message",
    [
        (lambda root: root.mkdir(), "has no class sub-folders"),
        (lambda root: None, "folder not found"),
        (lambda root: (root / "a").mkdir(parents=True), "needs at least 2 images"),
        (lambda root: (write_folder(root), (root / "circle" / "bad.png").write_bytes(b"nope")), "cannot read image"),
        # as torchvision's ImageFolder: an empty sub-folder is a mistake, not a class no image has
        (lambda root: (write_folder(root), (root / "triangle").mkdir()), "class folder 'triangle' holds no images"),
    ],
)
def test_bad_folders_are_data_errors(tmp_path, setup, message):
    setup(tmp_path / "imgs")
    with pytest.raises(DataError, match=message):
        build(tmp_path, "{name: image_folder, path: imgs, size: 8}")


def write_npz(path, X):
    np.savez(path, X=X)
    return path


def test_predict_takes_one_image_file_and_image_arrays(tmp_path, cli):
    """An image_folder run predicts the forms its data can take: a folder, one image file (each
    row naming its file), and NPZ arrays of (n, C, H, W) or flat (n, C·H·W) rows; another shape
    is exit 2 naming both."""
    write_folder(tmp_path / "imgs", n=4)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "seed: 0\ndata: {name: image_folder, path: imgs, size: [6, 8], val_fraction: 0.25}\n"
        "model: {name: cnn, channels: [2], hidden: []}\noptimizer: {name: adam, lr: 0.05}\ntrain: {epochs: 1}\n"
    )
    assert cli("train", cfg, "--output-dir", tmp_path / "run", "--json").code == 0
    one = cli("predict", tmp_path / "run", "--data", tmp_path / "imgs" / "square" / "0.png")
    assert one.code == 0, one.stderr
    header, row = one.stdout.strip().splitlines()  # one image, named in the last column
    assert header.split(",")[-1] == "file" and row.split(",")[-1] == "0.png"
    lines = cli("predict", tmp_path / "run", "--data", tmp_path / "imgs").stdout.strip().splitlines()
    assert [line.split(",")[-1] for line in lines[1:]] == [
        f"{c}/{i}.png" for c in ("circle", "square") for i in range(4)
    ]
    X = np.random.default_rng(0).random((3, 3, 6, 8))
    one_sample = cli("predict", tmp_path / "run", "--data", write_npz(tmp_path / "one.npz", X[0]))
    assert (
        one_sample.code == 2
        and "help: a single sample needs the leading axis of samples: save X[None]" in one_sample.stderr
    )
    for name, arr in [("chw.npz", X), ("flat.npz", X.reshape(3, -1)), ("hwc.npz", X.transpose(0, 2, 3, 1))]:
        np.savez(tmp_path / name, X=arr)
        r = cli("predict", tmp_path / "run", "--data", tmp_path / name)
        if name == "hwc.npz":
            assert r.code == 2 and "samples have shape [6, 8, 3], the training data [3, 6, 8]" in r.stderr, r.stderr
            assert "help: channels come first: save X.transpose(0, 3, 1, 2)" in r.stderr
        else:
            assert r.code == 0 and len(r.stdout.strip().splitlines()) == 4, r.stderr
            assert "file" not in r.stdout.splitlines()[0]  # arrays have no file names


def test_images_in_nested_folders_belong_to_their_class(tmp_path):
    """As torchvision's ImageFolder walks each class folder: root/square/more/x.png is a square
    (it was left out); hidden folders such as .ipynb_checkpoints are not read."""
    root = write_folder(tmp_path / "imgs", n=2)
    (root / "square" / "more").mkdir()
    (root / "square" / "0.png").rename(root / "square" / "more" / "0.png")
    (root / "circle" / ".ipynb_checkpoints").mkdir()
    (root / "circle" / ".ipynb_checkpoints" / "bad.png").write_bytes(b"not an image")
    exp = build(tmp_path, "{name: image_folder, path: imgs, size: 4, val_fraction: 0}", model="mlp")
    assert exp.info["n_train"] == 4 and sorted(exp.data["train"].files) == [
        "circle/0.png",
        "circle/1.png",
        "square/1.png",
        "square/more/0.png",
    ]


@pytest.mark.parametrize("size", ["[8]", "[8, 8, 3]"])
def test_a_size_that_is_not_height_width_names_data_size(tmp_path, size):
    """A config error at data.size (file:line), before any image is read (it was a data error
    that named data.path)."""
    from trainkit.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        build(tmp_path, f"{{name: image_folder, path: imgs, size: {size}}}")
    (issue,) = e.value.issues
    assert issue.key == "data.size" and issue.line == 2
    assert issue.message == f"needs [height, width] (or one number: a square), got {size}"


def test_predict_on_a_folder_without_images_says_one_is_needed(tmp_path, cli):
    write_folder(tmp_path / "imgs", n=2)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {name: image_folder, path: imgs, size: 4, val_fraction: 0}\nmodel: mlp\noptimizer: sgd\n")
    assert cli("train", cfg, "--output-dir", tmp_path / "run", "--json").code == 0
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "notes.txt").write_text("not an image")
    r = cli("predict", tmp_path / "run", "--data", tmp_path / "new")
    assert r.code == 2 and "needs at least 1 image, found 0" in r.stderr, r.stderr  # it said "at least 2"
