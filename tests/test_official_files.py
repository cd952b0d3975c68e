"""Every shape of edit file the official interface saved loads with the official meaning, turns
into a goal on a small StyleGAN2, and round-trips byte for byte; masks read from official data
URLs decode exactly as the official code decodes them (an 8-bit bilinear resize)."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter

from lightning_rewrite import EditRequest, HookedLayer, LatentSampler, RewriteError
from lightning_rewrite.engine.goal import goal_of
from lightning_rewrite.engine.stats import collect_second_moment
from lightning_rewrite.models import StyleGAN2Generator

SIZE = 64  # image size of the test generator: layer6 is 16×16, layer8 32×32


def brush_url(seed: int, strokes: int = 2) -> str:
    """A mask as the official paint widget saves it: soft-edged brush strokes, white where
    painted, RGBA with all four channels equal."""
    rng = np.random.RandomState(seed)
    img = Image.new("L", (SIZE, SIZE), 0)
    draw = ImageDraw.Draw(img)
    for _ in range(strokes):
        x, y = rng.randint(8, SIZE - 8, size=2)
        draw.ellipse([x - 6, y - 5, x + 6, y + 5], fill=255)
    m = np.asarray(img.filter(ImageFilter.GaussianBlur(2.5)))
    buf = io.BytesIO()
    Image.fromarray(np.stack([m] * 4, axis=-1), mode="RGBA").save(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def pil_decode(url: str, size: int) -> torch.Tensor:
    """An independent decode, written from the official recipe: RGB, PIL bilinear on uint8, ÷255, channel 0."""
    im = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB").resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.array(im)[..., 0].astype(np.float32) / 255)


SHAPES = {
    "copy": {"object": [3, brush_url(1)], "paste": [5, brush_url(2)], "key": [[5, brush_url(2)], [7, brush_url(3)]]},
    "multikey": {"query": [[2, brush_url(4)]], "key": [[i, brush_url(10 + i)] for i in range(6)],
                 "object": [3, brush_url(1)], "paste": [9, brush_url(5)]},
    "key_only": {"key": [[1, brush_url(20)], [4, brush_url(21)], [6, brush_url(22)]]},
    "object_and_key": {"object": [3, brush_url(1)], "key": [[5, brush_url(2)]]},
    "erase_with_paste": {"paste": [2, brush_url(30)], "key": [[2, brush_url(30)], [8, brush_url(31)]]},
    "posneg": {str(i): {"value": "-5.0", "intervention": brush_url(40 + i), "revert": brush_url(50 + i)}
               for i in (14, 21, 38)},
}


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return StyleGAN2Generator(SIZE, style_dim=16, n_mlp=2, widths={4: 32, 8: 32, 16: 40, 32: 16, 64: 8}).eval()


@pytest.mark.parametrize("newline", [False, True])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_each_official_shape_round_trips_byte_for_byte(tmp_path, shape, newline):
    text = json.dumps(SHAPES[shape], indent=1) + ("\n" if newline else "")
    path = tmp_path / f"{shape}.json"
    path.write_text(text)
    request = EditRequest.from_json(path)
    out = tmp_path / "again.json"
    request.save(out)
    assert out.read_bytes() == path.read_bytes()


def test_each_shape_has_the_official_meaning():
    load = lambda shape: EditRequest.from_json(json.dumps(SHAPES[shape], indent=1))  # noqa: E731
    assert load("copy").kind == "copy" and load("multikey").kind == "copy" and load("multikey").extra["query"]
    key_only = load("key_only")  # GAN Dissection's erase over the selections, 30 units (official drank)
    assert key_only.kind == "erase" and key_only.paste is None and key_only.units == 30
    assert [s.sample for s in key_only.context] == [1, 4, 6]
    assert EditRequest.from_json(json.dumps(SHAPES["key_only"]), units=60).units == 60
    assert load("erase_with_paste").units == 30
    pending = load("object_and_key")  # saved before Paste was pressed: loads, cannot execute
    assert pending.kind == "copy" and pending.paste is None
    assert "no paste" in pending.missing()
    posneg = load("posneg")
    assert posneg.kind == "paired" and [p.a for p in posneg.pairs] == [14, 21, 38]
    assert all(p.a == p.b and p.intervention.on == 10.0 and p.intervention.off == -5.0 for p in posneg.pairs)
    assert "edit.units" in posneg.missing()


def test_each_executable_shape_becomes_a_goal_on_a_stylegan2(generator):
    latents = LatentSampler.for_model(generator)
    hooked = HookedLayer(generator, "layer6")
    moment = collect_second_moment(hooked, latents, samples=20, batch_size=10).moment()
    for shape in ("copy", "multikey", "key_only", "erase_with_paste"):
        request = EditRequest.from_json(json.dumps(SHAPES[shape]))
        goal = goal_of(request, hooked, latents, moment)
        assert goal.target.shape[-2:] == (16, 16) and goal.region.sum() > 0, shape
        assert torch.isfinite(goal.context_keys).all() and len(goal.context_keys) > 0
        if shape == "key_only":  # every key selection is a goal sample, erased on its own box
            assert goal.latents.shape[0] == 3 and len(goal.units) == 30
            assert (goal.region.flatten(1).sum(1) > 0).all()
    posneg = EditRequest.from_json(json.dumps(SHAPES["posneg"]), units=[0, 3, 5, 7])
    goal = goal_of(posneg, hooked, latents)
    a, b = goal.inputs.args[0][:3], goal.inputs.args[0][3:]
    assert goal.latents.shape[0] == 6 and not torch.equal(a, b)  # one scene, the window units high vs low
    assert torch.equal(goal.target[:3], hooked.layer_forward(goal.inputs)[3:])  # a's keys get b's values
    with pytest.raises(RewriteError, match="no paste"):
        goal_of(EditRequest.from_json(json.dumps(SHAPES["object_and_key"])), hooked, latents)
    with pytest.raises(RewriteError, match="edit.units"):
        goal_of(EditRequest.from_json(json.dumps(SHAPES["posneg"])), hooked, latents)


@pytest.mark.parametrize("size", [16, 32])
def test_masks_decode_as_the_official_code_decodes_them(size):
    request = EditRequest.from_json(json.dumps(SHAPES["multikey"]))
    for sel in [request.object, request.paste, *request.context]:
        ours = sel.resized((size, size))
        official = pil_decode(sel.url, size)
        assert torch.allclose(ours, official, atol=1e-7, rtol=0)
        assert torch.equal(ours > 0, official > 0)  # selections, boxes and key counts follow from it
    # a mask given as a tensor keeps full precision (no 8-bit rounding)
    soft = torch.linspace(0, 1, SIZE * SIZE).reshape(SIZE, SIZE) * 0.003
    sel = EditRequest.copy(object=(0, soft + (soft > 0.002)), paste=(1, soft + (soft > 0.002))).object
    assert sel.url is None and (sel.resized((size, size)) % (1 / 255)).abs().max() > 1e-4


def test_context_keys_count_the_officially_selected_locations(generator):
    latents = LatentSampler.for_model(generator)
    hooked = HookedLayer(generator, "layer8")
    request = EditRequest.from_json(json.dumps(SHAPES["multikey"]))
    goal = goal_of(request, hooked, latents)
    expected = sum(int((pil_decode(s.url, 32) > 0).sum()) for s in request.context)
    assert len(goal.context_keys) == expected
