"""Image folders (as torchvision's ImageFolder): one sub-folder per class, PNG or JPEG files.

    root/cat/001.png, root/cat/002.jpg, root/dog/001.png, root/dog/more/002.png, ...

Classes are the sub-folder names in sorted order; every image is converted to grey (1
channel) or RGB (3), resized to `size` (bilinear) and scaled to [0, 1] (pixel / 255), and kept
as one flat row with the shape (C, H, W) beside it. A folder without sub-folders holds
unlabelled images (for `trainkit predict`). Needs Pillow: `pip install trainkit[images]`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import Field, field_validator

from trainkit.data.dataset import Dataset
from trainkit.data.loaders import FileDatasetConfig
from trainkit.errors import DataError
from trainkit.registry import register

EXTENSIONS = (".png", ".jpg", ".jpeg")


class ImageFolderConfig(FileDatasetConfig):
    """Images in one sub-folder per class (PNG/JPEG), resized; `path` is the root folder."""

    name: Literal["image_folder"] = "image_folder"
    size: Union[Annotated[int, Field(ge=1)], list[Annotated[int, Field(ge=1)]]] = Field(
        description="[height, width] every image is resized to (one number: a square)"
    )
    mode: Literal["grey", "rgb"] = Field("rgb", description="grey: 1 channel, rgb: 3")

    @field_validator("size")
    @classmethod
    def _height_width(cls, v):
        if isinstance(v, list) and len(v) != 2:
            raise ValueError(f"needs [height, width] (or one number: a square), got {v}")
        return v


def _pillow(shown: str):
    try:
        from PIL import Image
    except ImportError:
        raise DataError(
            "reading images needs Pillow, which is not installed", shown, "pip install 'trainkit[images]'"
        ) from None
    return Image


def _files(folder: Path) -> list[Path]:
    """The images in `folder` and its sub-folders (as torchvision walks a class folder), sorted
    by path; hidden files and folders (.ipynb_checkpoints, ...) left out."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


@register("datasets", ImageFolderConfig)
def image_folder(
    cfg: ImageFolderConfig, rng=None, resolve=Path, path: str | None = None, need_target: bool = True, **_
) -> Dataset:
    shown = str(path or cfg.path)
    root = resolve(shown)
    if not need_target and root.is_file() and root.suffix.lower() in EXTENSIONS:  # predict on one image
        return _read([(root, None)], root.parent, cfg, shown, None)
    if not root.is_dir():
        raise DataError(
            "not a folder" if root.exists() else "folder not found",
            shown,
            f"looked for {root}; image_folder's path is a folder with one sub-folder per class",
        )
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes:
        items = [(f, c) for c in classes for f in _files(root / c)]
    elif not need_target:
        items = [(f, None) for f in _files(root)]
    else:
        raise DataError(
            "has no class sub-folders", shown, "put the images of each class in a sub-folder named after it"
        )
    least = 2 if need_target else 1  # training needs two classes; predict, one image
    if len(items) < least:
        raise DataError(
            f"needs at least {least} image{'s' * (least > 1)}, found {len(items)} ({', '.join(EXTENSIONS)})", shown
        )
    empty = sorted(set(classes) - {c for _, c in items})
    if need_target and empty:  # as torchvision's ImageFolder: an empty sub-folder is a mistake, not a class
        raise DataError(
            f"class folder{'s' * (len(empty) > 1)} {', '.join(map(repr, empty))} "
            f"{'hold' if len(empty) > 1 else 'holds'} no images ({', '.join(EXTENSIONS)})",
            shown,
            "every sub-folder is a class: add its images, or remove the folder",
        )
    return _read(items, root, cfg, shown, classes)


def _read(items: list, root: Path, cfg: ImageFolderConfig, shown: str, classes: list | None) -> Dataset:
    """The images `items` ((file, class or None), ...) as a Dataset of flat rows of shape (C, H, W)."""
    Image = _pillow(shown)
    size = cfg.size if isinstance(cfg.size, list) else [cfg.size, cfg.size]
    rows = []
    for f, _c in items:
        try:
            with Image.open(f) as im:
                if im.mode.startswith("I"):  # 16-bit grey PNG: converting to "L" or "RGB" clips it at 255
                    im, top = im.convert("F"), 65535.0
                else:
                    im, top = im.convert("L" if cfg.mode == "grey" else "RGB"), 255.0
                if [im.height, im.width] != list(size):
                    im = im.resize((size[1], size[0]), Image.BILINEAR)
                a = np.asarray(im, dtype=np.float32) / top
                if a.ndim == 2 and cfg.mode == "rgb":  # grey read as RGB: three equal channels, as Pillow's convert
                    a = np.repeat(a[:, :, None], 3, axis=2)
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read image {f.relative_to(root)}: {e}", shown) from None
        rows.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))  # (C, H, W)
    X = np.stack(rows).reshape(len(rows), -1)
    shape = rows[0].shape
    y = np.array([c for _, c in items]) if classes else None
    task = None if not classes else ("binary" if len(classes) == 2 else "multiclass")
    names = [f"c{c}_{i}_{j}" for c in range(shape[0]) for i in range(shape[1]) for j in range(shape[2])]
    files = np.array([str(f.relative_to(root)) for f, _ in items])
    return Dataset(X, y, task, names, classes or None, source=shown, shape=shape, files=files)
