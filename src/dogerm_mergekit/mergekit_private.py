"""Every use of mergekit's private helpers, in one place: a mergekit upgrade that renames them touches this file.

They write what ``mergekit.merge.run_merge`` writes after the tensors (the output ``config.json``, the tokenizer),
which dogerm's driver writes too, so a dogerm checkpoint's files are the ones a mergekit merge has.
"""

from __future__ import annotations

from typing import Any

import mergekit.merge as _merge

from dogerm_mergekit.noise import TORCH_DTYPE, silenced


def model_out_config(config: Any, architecture: Any, trust_remote_code: bool) -> Any:
    """The output ``PretrainedConfig`` mergekit derives from the configuration's base model."""
    with silenced(TORCH_DTYPE):  # mergekit sets the renamed attribute, which then works
        return _merge._model_out_config(config, architecture, trust_remote_code)


def update_config_vocab(out_config: Any, architecture: Any, tokenizer: Any, pad_to_multiple_of: int | None) -> None:
    """Set the output config's vocabulary size from the built tokenizer, as mergekit does."""
    _merge._update_config_vocab(out_config, architecture, tokenizer, pad_to_multiple_of)


def copy_tokenizer(config: Any, folder: str, options: Any) -> None:
    """Copy the base model's tokenizer files into ``folder``, as mergekit does."""
    _merge._copy_tokenizer(config, folder, options)


def set_chat_template(tokenizer: Any, config: Any) -> None:
    """Apply the configuration's ``chat_template`` setting to a built tokenizer, as mergekit does."""
    _merge._set_chat_template(tokenizer, config)


def planned_tensors(planner: Any) -> list[tuple[Any, Any]]:
    """(WeightInfo, task) of every output tensor, as ``MergePlanner.plan_in_memory`` would wrap them.

    mergekit 0.1.5's ``plan_in_memory`` itself fails for merge tasks: its ``ReturnTensor`` field is typed
    ``Task[torch.Tensor]`` and pydantic refuses an ``ExecuteMergeMethodTask`` (a ``Task[Optional[Tensor]]``) there.
    """
    planner._plan()
    return list(planner._tensors)
