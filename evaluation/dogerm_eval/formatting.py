"""How a (prompt, response) pair becomes the text a reward model scores (the prompt: a user turn, or a history).

The tokenizer's own chat template always wins (user = prompt, assistant = response, no generation prompt), as in
RewardBench. A named fallback template is used only for tokenizers without one; every fallback template ends with the
EOS token, which is what RewardBench gets from ``add_eos_token=True`` for its fastchat templates. The same settings
apply to every model of a sweep and are recorded with every result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import jinja2
from pydantic import BaseModel, ConfigDict, Field

from dogerm_eval.errors import BenchmarkError, ModelError
from dogerm_mergekit.chat_templates import (  # noqa: F401 (LLAMA2_DEFAULT_SYSTEM_PROMPT: re-exported)
    LLAMA2_CHAT_TEMPLATE,
    LLAMA2_DEFAULT_SYSTEM_PROMPT,
    NAMED_SYSTEM_PROMPTS,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

#: Fallback chat templates (Jinja, the format of ``tokenizer.chat_template``) for tokenizers without one.
FALLBACK_TEMPLATES: dict[str, str] = {
    "llama-2": LLAMA2_CHAT_TEMPLATE,
    # Tulu, byte-identical to what rewardbench's run_rm.py scores for a tokenizer without a template: fastchat's
    # "tulu" conversation (fschat 0.2.36: roles "<|user|>"/"<|assistant|>", SeparatorStyle.ADD_NEW_LINE_SINGLE,
    # sep "\n": a non-empty system message "{system}\n", then "{role}\n{content}\n" per message, "{role}\n" for an
    # empty one), after which the tokenizer's add_eos_token=True appends EOS:
    # "<|user|>\n{user}\n<|assistant|>\n{assistant}\n</s>".
    "tulu": (
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'system' -%}{%- if message['content'] -%}{{ message['content'] + '\\n' }}{%- endif -%}"
        "{%- else -%}{{ '<|' + message['role'] + '|>\\n' }}"
        "{%- if message['content'] -%}{{ message['content'] + '\\n' }}{%- endif -%}{%- endif -%}"
        "{%- endfor -%}{{ eos_token }}"
    ),
    # ChatML: "<|im_start|>{role}\n{content}<|im_end|>\n" per message, then EOS.
    "chatml": (
        "{%- for message in messages -%}"
        "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
        "{%- endfor -%}{{ eos_token }}"
    ),
}


class FormatSettings(BaseModel):
    """Formatting and truncation applied identically to every model of an evaluation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    system_prompt: str | None = Field(
        default=None, description="System message text, or a name from NAMED_SYSTEM_PROMPTS ('llama2-default')."
    )
    fallback_template: Literal["llama-2", "tulu", "chatml"] | None = Field(
        default=None, description="Template used only when the tokenizer has no chat template."
    )
    max_length: int = Field(default=2048, gt=1, description="Maximum tokens per scored text.")
    truncation_side: Literal["left", "right", "tokenizer"] = Field(
        default="right", description="Which end of a too-long text is cut; 'tokenizer': the side the tokenizer was "
        "saved with (what rewardbench's run_v2.py does).",
    )
    double_bos: Literal["keep", "mask"] = Field(
        default="keep",
        description="When a text starts with two BOS tokens (template BOS + tokenizer BOS): 'keep' scores both, as "
        "DogeRM trained and evaluated; 'mask' zeroes the first in the attention mask, as RewardBench's pipeline does.",
    )

    @property
    def system_prompt_text(self) -> str | None:
        """The system message actually used (named prompts resolved)."""
        if self.system_prompt is None:
            return None
        return NAMED_SYSTEM_PROMPTS.get(self.system_prompt, self.system_prompt)

    def record(self) -> dict[str, Any]:
        """JSON-ready description of these settings, for result files."""
        return {**self.model_dump(), "system_prompt_text": self.system_prompt_text}


def chat_template_for(tokenizer: PreTrainedTokenizerBase, settings: FormatSettings) -> tuple[str, str]:
    """Return ``(template_name, jinja_template)``: ``"tokenizer"`` or ``"fallback:<name>"``.

    Raises ModelError when the tokenizer has no chat template and no fallback was chosen.
    """
    if tokenizer.chat_template:
        if not isinstance(tokenizer.chat_template, str):
            raise ModelError("the tokenizer defines several named chat templates; only a single template is supported")
        return "tokenizer", tokenizer.chat_template
    if settings.fallback_template is None:
        raise ModelError(
            f"the tokenizer of {tokenizer.name_or_path!r} has no chat template; choose one with --fallback-template "
            f"({', '.join(sorted(FALLBACK_TEMPLATES))})"
        )
    return f"fallback:{settings.fallback_template}", FALLBACK_TEMPLATES[settings.fallback_template]


def format_conversation(
    tokenizer: PreTrainedTokenizerBase, prompt: str | Sequence[tuple[str, str]], response: str,
    settings: FormatSettings,
) -> str:
    """Render one (prompt, response) pair as the text the reward model scores. ``prompt`` is the user turn, or a
    multi-turn history as (role, content) pairs ending with a user turn (RMB's conversations)."""
    _, template = chat_template_for(tokenizer, settings)
    history = [("user", prompt)] if isinstance(prompt, str) else prompt
    messages = [*({"role": role, "content": content} for role, content in history),
                {"role": "assistant", "content": response}]
    if settings.system_prompt_text is not None:
        messages.insert(0, {"role": "system", "content": settings.system_prompt_text})
    try:
        text = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False)
    except jinja2.TemplateError as exc:
        raise BenchmarkError(f"the chat template rejected the conversation: {exc}") from exc
    return str(text)
