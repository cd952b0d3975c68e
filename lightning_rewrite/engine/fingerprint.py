"""Content fingerprints of tensors, used to key caches and to tie edits to a base model."""

from __future__ import annotations

import hashlib
from typing import Iterable

import torch
from torch import Tensor


def tensor_fingerprint(named: Iterable[tuple[str, Tensor]]) -> str:
    """SHA-256 (hex, 16 chars) over names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name, t in sorted(named, key=lambda item: item[0]):
        t = t.detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def module_fingerprint(module: torch.nn.Module) -> str:
    """Fingerprint of every parameter and buffer of ``module``."""
    return tensor_fingerprint(list(module.state_dict().items()))
