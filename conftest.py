"""Repository-wide pytest fixtures: a local Hugging Face Hub (the package tests/hub_server/).

- ``hub_server``: a started :class:`tests.hub_server.LocalHub` (fresh, empty, per test; token ``hub.token``,
  user ``tests.hub_server.HUB_USER``, so repo ids are ``f"{HUB_USER}/name"``).
- ``hub_xet``: whether the client uploads/downloads through Xet (default False: LFS + plain HTTP, i.e.
  HF_HUB_DISABLE_XET=1). Override it in a test module, e.g. parametrized:
  ``@pytest.fixture(params=[False, True], ids=["lfs", "xet"])\\ndef hub_xet(request): return request.param``.
- ``hub_env``: the ``hub_server``, with ``huggingface_hub`` pointed at it for the test (patched constants, HF_TOKEN,
  a temporary HF_HOME/cache; see ``patch_hf_client``), so ``snapshot_download``, ``hf_hub_download``,
  ``from_pretrained(repo_id, revision=...)`` and ``HfApi()`` without arguments all talk to it.
- ``hub_client``: an ``HfApi(endpoint=hub.endpoint, token=hub.token)``, with ``hub_env`` applied.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from tests.hub_server import LocalHub, patch_hf_client


@pytest.fixture
def hub_server() -> Iterator[LocalHub]:
    """A started, empty LocalHub, stopped after the test (which fails if the server hit an internal error)."""
    with LocalHub() as hub:
        yield hub
    if hub.server_errors:
        pytest.fail("LocalHub internal errors:\n" + "\n".join(hub.server_errors))


@pytest.fixture
def hub_xet() -> bool:
    """Whether the Hub client uses Xet (hf_xet) for transfers; override to parametrize."""
    return False


@pytest.fixture
def hub_env(hub_server: LocalHub, hub_xet: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalHub:
    """The LocalHub, with huggingface_hub's module-level configuration pointed at it for this test."""
    patch_hf_client(monkeypatch, hub_server, tmp_path / "hf_home", xet=hub_xet)
    return hub_server


@pytest.fixture
def hub_client(hub_env: LocalHub) -> HfApi:
    """An HfApi bound to the LocalHub with its write token."""
    return HfApi(endpoint=hub_env.endpoint, token=hub_env.token)
