"""Official edit files made on 1024-px generators carry masks at the interface's 256×256 (one
CelebA-HQ file mixes 256 and 1024): they load, become a goal at layer 10 (64×64), round-trip byte
for byte, and each mask reaches the layer exactly as the official code resizes it (8-bit PIL
bilinear from its own size); ``fit recipe=smile_paper`` runs on such a file."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter

from lightning_rewrite import EditRequest, HookedLayer, LatentSampler, RewriteError
from lightning_rewrite.app.assemble import check_request
from lightning_rewrite.app.cli import main
from lightning_rewrite.engine.goal import goal_of
from lightning_rewrite.models import StyleGAN2Generator

SIZE = 1024
#: rosinality's layout with few channels: a 1024-px generator that draws a sample in about a second
WIDTHS = {4: 32, 8: 32, 16: 32, 32: 32, 64: 16, 128: 8, 256: 4, 512: 4, 1024: 4}
LAYER10 = (64, 64)


def mouth_url(size: int, seed: int) -> str:
    """A soft-edged ellipse where a face's mouth is, as the official paint widget saves it at
    ``size``: RGBA, all four channels equal, white where painted."""
    rng = np.random.RandomState(seed)
    img = Image.new("L", (size, size), 0)
    cx, cy = (size * (0.5 + 0.05 * rng.uniform(-1, 1)), size * (0.72 + 0.03 * rng.uniform(-1, 1)))
    ImageDraw.Draw(img).ellipse([cx - size * 0.12, cy - size * 0.05, cx + size * 0.12, cy + size * 0.05], fill=255)
    m = np.asarray(img.filter(ImageFilter.GaussianBlur(size / 100)))
    buf = io.BytesIO()
    Image.fromarray(np.stack([m] * 4, axis=-1), mode="RGBA").save(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def pil_resize(url: str, size: tuple[int, int]) -> torch.Tensor:
    """Written from the official recipe, apart from the engine: RGB, 8-bit PIL bilinear, ÷255, first channel."""
    im = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
    return torch.from_numpy(np.array(im.resize(size[::-1], Image.BILINEAR))[..., 0].astype(np.float32) / 255)


def smile_file(sizes: list[int]) -> dict:
    """An official-format smile request: a smiling mouth copied onto a closed one, the others as
    context; mask k drawn at ``sizes[k]`` (object, paste, then the keys)."""
    urls = [mouth_url(s, k) for k, s in enumerate(sizes)]
    return {"object": [3, urls[0]], "paste": [7, urls[1]], "key": [[7 + 2 * k, u] for k, u in enumerate(urls[2:])]}


FILES = {"interface_256": [256] * 6, "mixed_256_and_1024": [256, 1024, 256, 1024, 1024, 256]}


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return StyleGAN2Generator(SIZE, style_dim=32, n_mlp=2, widths=WIDTHS).eval()


@pytest.mark.parametrize("name", sorted(FILES))
def test_official_masks_of_any_size_load_reach_the_layer_as_the_official_code_resizes_them(name, generator, tmp_path):
    data = smile_file(FILES[name])
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data, indent=1))
    request = EditRequest.from_json(path)
    check_request(request, (SIZE, SIZE))  # no refusal: the masks have the image's aspect ratio
    selections = [request.object, request.paste, *request.context]
    assert [tuple(s.mask.shape) for s in selections] == [(s, s) for s in FILES[name]]
    urls = [data["object"][1], data["paste"][1], *(k[1] for k in data["key"])]
    for sel, url in zip(selections, urls):
        assert torch.equal(sel.resized(LAYER10), pil_resize(url, LAYER10))
    hooked = HookedLayer(generator, "layer10")
    goal = goal_of(request, hooked, LatentSampler.for_model(generator))
    assert tuple(goal.region.shape[-2:]) <= LAYER10 and float(goal.region.sum()) > 0
    at_layer = torch.cat([pil_resize(u, LAYER10).flatten() for u in urls[2:]])
    assert torch.equal(goal.context_weights, at_layer[at_layer > 0])  # the keys under each mask, weighted by it
    again = tmp_path / "again.json"
    request.save(again)
    assert again.read_bytes() == path.read_bytes()


def test_a_mask_of_another_aspect_ratio_is_one_line_naming_both_shapes():
    data = smile_file([256] * 4)
    data["key"][1][1] = _wide_url()
    request = EditRequest.from_json(json.dumps(data, indent=1))
    with pytest.raises(RewriteError, match=r"^key\[1\] mask is 256×512, but the generator's images are 1024×1024"):
        check_request(request, (SIZE, SIZE))


def _wide_url() -> str:
    buf = io.BytesIO()
    m = np.zeros((256, 512), np.uint8)
    m[100:150, 200:300] = 255
    Image.fromarray(np.stack([m] * 4, axis=-1), mode="RGBA").save(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.mark.slow
def test_fit_smile_paper_runs_on_a_1024px_checkpoint_with_the_interfaces_256px_masks(generator, tmp_path):
    checkpoint = tmp_path / "stylegan2-ffhq-small.pt"
    torch.save({"g_ema": generator.state_dict(), "latent_avg": torch.zeros(32)}, checkpoint)
    request = tmp_path / "smile.json"
    request.write_text(json.dumps(smile_file([256] * 6), indent=1))
    out = tmp_path / "run"
    assert main(["fit", "recipe=smile_paper", f"model.checkpoint={checkpoint}", f"edit.request={request}",
                 "stats.samples=20", "logger=none", "progress=false", f"out={out}"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["changed_weights"] == ["convs.7.conv.weight"]  # layer10, at 64×64
    assert Image.open(out / "before_after.png").size[0] > 0
    assert json.loads((out / "request.json").read_text()) == json.loads(request.read_text())
