"""EditRequest: official JSON files round-trip; masks turn into the right goals."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import box_mask
from lightning_rewrite import EditRequest, HookedLayer, LatentSampler, RewriteError
from lightning_rewrite.engine.goal import goal_of
from lightning_rewrite.engine.masks import load_mask, mask_to_data_url


def _official_url(mask: np.ndarray) -> str:
    """A mask as the official interface saves it: RGBA PNG, white where selected."""
    m = (mask * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.stack([m] * 4, axis=-1), mode="RGBA").save(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _box(size: int, t: int, l: int, b: int, r: int) -> np.ndarray:  # noqa: E741
    m = np.zeros((size, size), dtype=np.float32)
    m[t:b, l:r] = 1
    return m


def test_official_json_round_trips_byte_for_byte(tmp_path):
    record = {
        "query": [[819, _official_url(_box(64, 5, 5, 20, 20))]],
        "key": [[819, _official_url(_box(64, 10, 10, 30, 30))], [3, _official_url(_box(64, 0, 40, 20, 64))]],
        "object": [819, _official_url(_box(64, 30, 30, 50, 60))],
        "paste": [960, _official_url(_box(64, 2, 2, 12, 12))],
    }
    path = tmp_path / "dome2tree.json"
    path.write_text(json.dumps(record, indent=1))  # the official writer: json.dump(indent=1)
    request = EditRequest.from_json(path)
    assert request.kind == "copy"
    assert request.object.sample == 819 and request.paste.sample == 960
    assert [s.sample for s in request.context] == [819, 3]
    assert request.object.mask.shape == (64, 64)
    assert request.object.mask[40, 40] == 1 and request.object.mask[0, 0] == 0
    out = tmp_path / "out.json"
    request.save(out)
    assert out.read_bytes() == path.read_bytes()
    assert EditRequest.from_json(path.read_text()).to_json() == path.read_text()


def test_masks_from_tensor_png_file_and_data_url_agree(tmp_path):
    mask = box_mask(16, 2, 3, 9, 12)
    url = mask_to_data_url(mask)
    png = tmp_path / "mask.png"
    png.write_bytes(base64.b64decode(url.split(",", 1)[1]))
    for source in (mask, url, str(png), mask.numpy() * 255):
        assert torch.equal(load_mask(source), mask)
    with pytest.raises(RewriteError, match="does not exist"):
        load_mask(str(tmp_path / "missing.png"))
    with pytest.raises(RewriteError, match="2-D"):
        load_mask(torch.zeros(2, 3, 4, 5))


def test_new_requests_write_official_fields_and_read_back():
    request = EditRequest.copy(object=(4, box_mask(16, 0, 0, 4, 4)), paste=(5, box_mask(16, 8, 8, 12, 12)),
                               context=[(6, box_mask(16, 1, 1, 5, 5))])
    data = json.loads(request.to_json())
    assert list(data) == ["object", "paste", "key"]
    assert data["object"][0] == 4 and data["paste"][1].startswith("data:image/png;base64,")
    again = EditRequest.from_json(request.to_json())
    assert torch.equal(again.paste.mask, request.paste.mask)
    erase = EditRequest.erase(paste=(2, box_mask(16, 0, 0, 8, 8)), units=[1, 2])
    assert EditRequest.from_json(erase.to_json()).units == [1, 2]
    paired = EditRequest.paired([(0, torch.zeros(8), box_mask(16, 10, 0, 16, 16))])
    back = EditRequest.from_json(paired.to_json())
    assert back.kind == "paired" and torch.equal(back.pairs[0].b, torch.zeros(8))


def test_copy_goal_pastes_the_object_values_centred_on_the_paste_mask(tiny):
    latents = LatentSampler(16)
    h = HookedLayer(tiny, "layer3.0")
    request = EditRequest.copy(object=(0, box_mask(16, 2, 2, 6, 6)), paste=(1, box_mask(16, 9, 9, 13, 13)))
    goal = goal_of(request, h, latents)
    v_obj = h.values(latents.take([0]))
    v_paste = h.values(latents.take([1]))
    assert torch.allclose(goal.target[..., 9:13, 9:13], v_obj[..., 2:6, 2:6])
    outside = goal.region == 0
    assert torch.equal(goal.target.masked_select(outside.expand_as(goal.target)),
                       v_paste.masked_select(outside.expand_as(v_paste)))
    assert goal.region.sum() == 16 and goal.region[0, 0, 9:13, 9:13].all()
    assert goal.context_keys.shape == (16, 32)  # the paste region is the default context


def test_erase_goal_zeroes_the_chosen_units(tiny):
    latents = LatentSampler(16)
    h = HookedLayer(tiny, "layer3.0")
    request = EditRequest.erase(paste=(0, box_mask(16, 4, 4, 8, 8)), units=3)
    keys = torch.randn(5000, 32).abs()
    goal = goal_of(request, h, latents, second_moment=keys.T @ keys / 5000)
    assert len(goal.units) == 3
    inputs = h.inputs(latents.take([0]))
    inputs.args[0][:, goal.units] = 0
    assert torch.allclose(goal.target, h.layer_forward(inputs))
    with pytest.raises(RewriteError, match="out of range"):
        goal_of(EditRequest.erase(paste=(0, box_mask(16, 4, 4, 8, 8)), units=[40]), h, latents)


def test_paired_goal_swaps_values_inside_the_mask(tiny):
    latents = LatentSampler(16)
    h = HookedLayer(tiny, "layer3.0")
    mask = box_mask(16, 10, 0, 16, 16)
    goal = goal_of(EditRequest.paired([(0, 1, mask), (2, 3, mask)]), h, latents)
    values = h.values(latents.take([0, 2, 1, 3]))
    assert torch.allclose(goal.target, values[[2, 3, 0, 1]])
    assert goal.region.shape == (4, 1, 16, 16) and goal.region[:, :, 10:].all() and not goal.region[:, :, :10].any()


def test_empty_masks_are_refused_with_the_resolution(tiny):
    h = HookedLayer(tiny, "layer3.0")
    request = EditRequest.copy(object=(0, torch.zeros(16, 16)), paste=(1, box_mask(16, 0, 0, 4, 4)))
    with pytest.raises(RewriteError, match="object mask is empty at the 16×16"):
        goal_of(request, h, LatentSampler(16))
    with pytest.raises(RewriteError, match="needs an object"):
        EditRequest("copy", paste=request.paste)
