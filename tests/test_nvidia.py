"""NVIDIA .pkl snapshots load without running pickled code; malicious pickles are refused."""

from __future__ import annotations

import pickle

import pytest
import torch

from lightning_rewrite import LatentSampler, RewriteError
from lightning_rewrite.models import StyleGAN2Generator, load_generator
from nvidia_pickles import Persisted, nvidia_class_paths, write_nvidia_snapshot


def _random_stylegan2(seed: int = 0) -> StyleGAN2Generator:
    torch.manual_seed(seed)
    model = StyleGAN2Generator(16, style_dim=16, n_mlp=2, widths={4: 8, 8: 6, 16: 4})
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.5 + (1.0 if p.ndim == 1 and p.shape[0] > 1 else 0.0))
        model.latent_avg.normal_()
    return model.eval()


def test_an_nvidia_snapshot_loads_as_the_same_generator_and_its_source_never_runs(tmp_path):
    marker = tmp_path / "source-ran"
    source = f"import os\nos.system('touch {marker}')\nclass Generator: pass\n"
    model = _random_stylegan2()
    path = tmp_path / "network-snapshot-000000.pkl"
    write_nvidia_snapshot(model, path, source=source)
    assert b"torch_utils.persistence" in path.read_bytes() and b"_reconstruct_persistent_obj" in path.read_bytes()
    loaded = load_generator(path)
    assert not marker.exists()
    assert isinstance(loaded, StyleGAN2Generator) and (loaded.size, loaded.style_dim, loaded.n_mlp) == (16, 16, 2)
    assert torch.equal(loaded.latent_avg, model.latent_avg)
    own, theirs = loaded.state_dict(), model.state_dict()
    assert all(torch.equal(own[k], theirs[k]) for k in theirs), [k for k in theirs if not torch.equal(own[k], theirs[k])]
    z = LatentSampler(16).take([0, 1, 2])
    with torch.no_grad():
        assert torch.equal(loaded(z, truncation=0.5), model(z, truncation=0.5))


def test_a_pickle_that_would_call_os_system_is_refused_and_the_call_never_happens(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pkl"
    data = pickle.dumps({"G_ema": Payload()})
    path.write_bytes(data)
    with pytest.raises(RewriteError, match=r"evil.pkl: refusing to unpickle (posix|os|nt)\.system"):
        load_generator(path)
    assert not marker.exists()
    pickle.loads(data)  # the payload is live: an ordinary unpickler runs it
    assert marker.exists()


def test_an_unknown_persistent_class_is_refused_by_name(tmp_path):
    with nvidia_class_paths() as ns:
        data = pickle.dumps({"G_ema": Persisted(ns, "Backdoor", source="import os")})
    path = tmp_path / "odd.pkl"
    path.write_bytes(data)
    with pytest.raises(RewriteError, match="refusing persistent class 'Backdoor'") as err:
        load_generator(path)
    assert "\n" not in str(err.value)


def test_a_snapshot_without_a_generator_says_what_it_has(tmp_path):
    path = tmp_path / "d-only.pkl"
    with nvidia_class_paths() as ns:
        path.write_bytes(pickle.dumps({"D": Persisted(ns, "Discriminator")}))
    with pytest.raises(RewriteError, match=r"must hold 'G_ema' \(or 'G'\); it has \['D'\]"):
        load_generator(path)
