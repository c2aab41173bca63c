"""Train tests run torch on one thread: on a shared 2-core box, two threads wait on each other
(measured 4x slower under load)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)
