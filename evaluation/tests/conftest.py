"""Shared fixtures: tiny seeded reward models built offline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dogerm_mergekit.testing import build_tiny_rm


@pytest.fixture(scope="session")
def tiny_rm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved LlamaForSequenceClassification (1 label, 2 layers, hidden 64) with a Llama-2-style chat template.

    Shared by the whole session: do not modify the folder.
    """
    return build_tiny_rm(tmp_path_factory.mktemp("tiny_rm"), seed=0)


@pytest.fixture(scope="session")
def make_tiny_rm(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Factory for variants: ``make_tiny_rm(num_labels=2, pad_token=False, chat_template=False, seed=1, ...)``."""

    def make(**kwargs: Any) -> Path:
        return build_tiny_rm(tmp_path_factory.mktemp("tiny_rm_variant"), **kwargs)

    return make
