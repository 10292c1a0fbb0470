"""Pointing the real ``huggingface_hub`` client (and transformers) at a LocalHub for one test."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

    from tests.hub_server.server import LocalHub


def patch_hf_client(monkeypatch: pytest.MonkeyPatch, hub: LocalHub, hf_home: Path, *, xet: bool = False) -> None:
    """Point ``huggingface_hub`` (and through it ``transformers``) at ``hub`` for code that takes no endpoint.

    ``huggingface_hub.constants`` reads the environment once at import, so its module attributes are patched:
    ENDPOINT, HUGGINGFACE_CO_URL_TEMPLATE, HF_URL_HOSTS, HF_HUB_OFFLINE, HF_HUB_DISABLE_XET, HF_HOME and every
    cache/token path derived from it (HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_ASSETS_CACHE, HUGGINGFACE_ASSETS_CACHE,
    HF_XET_CACHE, HF_TOKEN_PATH, HF_STORED_TOKENS_PATH), HF_HUB_DISABLE_TELEMETRY. The environment variables
    HF_ENDPOINT, HF_TOKEN, HF_HOME, HF_HUB_CACHE, HF_XET_CACHE and HF_HUB_DISABLE_XET are set for subprocesses
    and for the token lookup (``get_token`` reads HF_TOKEN at call time); HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE
    and HF_OIDC_RESOURCE are removed. Two HfApi instances created at import are re-pointed too: the one behind
    the module-level functions (``huggingface_hub.create_repo``, ...) and transformers' shared ``hf_api()`` (reset
    to None, so it is rebuilt with the patched ENDPOINT; transformers uses it to resolve ``revision``).
    """
    from huggingface_hub import constants, hf_api

    hub_cache = hf_home / "hub"
    values = {
        "ENDPOINT": hub.endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_URL_HOSTS": frozenset(constants.HF_URL_HOSTS | {"127.0.0.1"}),
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_XET": not xet,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hub_cache),
        "HUGGINGFACE_HUB_CACHE": str(hub_cache),
        "HF_ASSETS_CACHE": str(hf_home / "assets"),
        "HUGGINGFACE_ASSETS_CACHE": str(hf_home / "assets"),
        "HF_XET_CACHE": str(hf_home / "xet"),
        "HF_TOKEN_PATH": str(hf_home / "token"),
        "HF_STORED_TOKENS_PATH": str(hf_home / "stored_tokens"),
    }
    for name, value in values.items():
        monkeypatch.setattr(constants, name, value)
    monkeypatch.setattr(hf_api.api, "endpoint", hub.endpoint)
    transformers_hub = sys.modules.get("transformers.utils.hub")
    if transformers_hub is not None:
        monkeypatch.setattr(transformers_hub, "_hf_api", None)
    env = {"HF_ENDPOINT": hub.endpoint, "HF_TOKEN": hub.token, "HF_HOME": str(hf_home), "HF_HUB_CACHE": str(hub_cache),
           "HF_XET_CACHE": str(hf_home / "xet"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if xet:
        monkeypatch.delenv("HF_HUB_DISABLE_XET", raising=False)
    else:
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_OIDC_RESOURCE", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
