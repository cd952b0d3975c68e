"""Selection masks: read from tensors, PNG files or PNG data URLs; written as the official
interface's data URLs; resized to a layer's resolution."""

from __future__ import annotations

import base64
import binascii
import io
import os
import re

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..errors import RewriteError
from ..paths import existing_file

_DATA_URL = re.compile(r"^data:image/[a-z]+;base64,")


def load_mask(source: Tensor | np.ndarray | str | os.PathLike, what: str = "mask") -> Tensor:
    """A soft mask (H, W) in [0, 1] from a tensor/array, a PNG file or a PNG data URL.

    For images, the first channel of the RGB conversion is the mask, as the official code
    reads it (its masks are white where selected).
    """
    if isinstance(source, (Tensor, np.ndarray)):
        m = torch.as_tensor(source).detach().float().cpu()
        while m.ndim > 2 and m.shape[0] == 1:
            m = m[0]
        if m.ndim == 3:
            m = m[0]
        if m.ndim != 2:
            raise RewriteError(f"{what} must be a 2-D (H, W) array, got shape {tuple(m.shape)}")
        if m.max() > 1.0:
            m = m / 255.0
        if m.min() < 0.0:
            raise RewriteError(f"{what} values must lie in [0, 1] (or 0..255), got minimum {m.min().item():.3g}")
        return m
    text = os.fspath(source)
    if _DATA_URL.match(text):
        try:
            image = Image.open(io.BytesIO(base64.b64decode(_DATA_URL.sub("", text), validate=True)))
            image.load()
        except (binascii.Error, ValueError):
            raise RewriteError(f"{what}: the data URL's payload is not valid base64; give a PNG data URL "
                               "(data:image/png;base64,...) as the official interface saves it") from None
        except Exception:  # noqa: BLE001 - PIL raises several types
            raise RewriteError(f"{what}: the data URL does not hold a readable PNG image") from None
    else:
        path = existing_file(text, f"{what} file", "a PNG path, a PNG data URL or a tensor")
        try:
            image = Image.open(path)
            image.load()
        except Exception:  # noqa: BLE001 - PIL raises several types
            raise RewriteError(f"{what} file {text!r} is not a readable image (empty, truncated or not a PNG)") from None
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(rgb[..., 0].copy())


def decode_data_url(url: str, size: tuple[int, int]) -> Tensor:
    """A data-URL mask at ``size`` (H, W) exactly as the official code decodes it: the PNG
    converted to RGB, resized bilinearly as 8-bit (PIL), ÷255, first channel. Values below
    about 0.002 round to 0, so selections that test ``> 0`` match the official ones."""
    try:
        image = Image.open(io.BytesIO(base64.b64decode(_DATA_URL.sub("", url), validate=True))).convert("RGB")
    except Exception:  # noqa: BLE001 - load_mask has already explained a bad URL; this is its twin
        raise RewriteError("a selection's data URL does not hold a readable PNG image") from None
    h, w = int(size[0]), int(size[1])
    if image.size != (w, h):
        image = image.resize((w, h), resample=Image.BILINEAR)
    return torch.from_numpy(np.asarray(image, dtype=np.float32)[..., 0] / 255.0)


def mask_to_data_url(mask: Tensor) -> str:
    """The official interface's encoding: an RGBA PNG, all four channels equal to the mask."""
    m = (load_mask(mask).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    rgba = np.repeat(m[..., None], 4, axis=2)
    buf = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def resize_mask(mask: Tensor, size: tuple[int, ...]) -> Tensor:
    """Bilinear (antialiased, like PIL's) resize of an (H, W) mask to ``size``."""
    if len(size) == 0:
        return mask.max().reshape(())
    if len(size) != 2:
        raise RewriteError(f"masks apply to 2-D feature maps, this layer's maps have shape {tuple(size)}")
    if tuple(mask.shape) == tuple(size):
        return mask.clone()
    out = F.interpolate(mask[None, None].float(), size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    return out[0, 0].clamp(0, 1)


def bounding_box(mask: Tensor) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right) of the positive part of a 2-D mask, or None if empty."""
    rows = torch.nonzero(mask.sum(1) > 0)
    cols = torch.nonzero(mask.sum(0) > 0)
    if len(rows) == 0:
        return None
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1
