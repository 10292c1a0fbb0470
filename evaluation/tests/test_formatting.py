"""format_conversation: tokenizer template, system prompts, named fallback templates, recorded settings."""

from __future__ import annotations

import pydantic
import pytest
from transformers import PreTrainedTokenizerFast

from dogerm_eval.errors import BenchmarkError, ModelError
from dogerm_eval.formatting import LLAMA2_DEFAULT_SYSTEM_PROMPT, FormatSettings, format_conversation
from dogerm_mergekit.testing import build_tiny_tokenizer


@pytest.fixture(scope="module")
def with_template() -> PreTrainedTokenizerFast:
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def without_template() -> PreTrainedTokenizerFast:
    return build_tiny_tokenizer(chat_template=False)


def test_tokenizer_template_without_system_prompt(with_template: PreTrainedTokenizerFast) -> None:
    text = format_conversation(with_template, "What is 2+2?", "4.", FormatSettings())
    assert text == "<s>[INST] What is 2+2? [/INST] 4. </s>"


def test_custom_system_prompt(with_template: PreTrainedTokenizerFast) -> None:
    text = format_conversation(with_template, "Q?", "A.", FormatSettings(system_prompt="Be brief."))
    assert text == "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nQ? [/INST] A. </s>"


def test_llama2_default_system_prompt(with_template: PreTrainedTokenizerFast) -> None:
    settings = FormatSettings(system_prompt="llama2-default")
    text = format_conversation(with_template, "Q?", "A.", settings)
    assert text == f"<s>[INST] <<SYS>>\n{LLAMA2_DEFAULT_SYSTEM_PROMPT}\n<</SYS>>\n\nQ? [/INST] A. </s>"
    assert LLAMA2_DEFAULT_SYSTEM_PROMPT.startswith("You are a helpful, respectful and honest assistant.")
    assert LLAMA2_DEFAULT_SYSTEM_PROMPT.endswith("please don't share false information.")


@pytest.mark.parametrize(
    ("name", "system", "expected"),
    [
        ("llama-2", None, "<s>[INST] Q? [/INST] A. </s>"),
        ("llama-2", "S.", "<s>[INST] <<SYS>>\nS.\n<</SYS>>\n\nQ? [/INST] A. </s>"),
        ("tulu", None, "<|user|>\nQ?\n<|assistant|>\nA.\n</s>"),   # fastchat's tulu + add_eos_token (rewardbench)
        ("tulu", "S.", "S.\n<|user|>\nQ?\n<|assistant|>\nA.\n</s>"),
        ("chatml", None, "<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\nA.<|im_end|>\n</s>"),
    ],
)
def test_fallback_templates(
    without_template: PreTrainedTokenizerFast, name: str, system: str | None, expected: str
) -> None:
    settings = FormatSettings(fallback_template=name, system_prompt=system)
    assert format_conversation(without_template, "Q?", "A.", settings) == expected


def fastchat_tulu(system: str, turns: list[tuple[str, str]], eos: str) -> str:
    """fastchat 0.2.36's "tulu" conversation (SeparatorStyle.ADD_NEW_LINE_SINGLE, sep "\\n"), re-implemented from its
    documented rule, then the EOS that rewardbench's add_eos_token=True appends."""
    text = "" if system == "" else system + "\n"
    for role, message in turns:
        text += role + "\n" + (message + "\n" if message else "")
    return text + eos


@pytest.mark.parametrize(("prompt", "response", "system"), [
    ("Q?", "A.", None), ("Two\nlines?", "  spaced\n\nanswer  ", None), ("Q?", "", None), ("Q?", "A.", "Be brief."),
])
def test_tulu_is_byte_identical_to_rewardbench(without_template: PreTrainedTokenizerFast, prompt: str, response: str,
                                               system: str | None) -> None:
    settings = FormatSettings(fallback_template="tulu", system_prompt=system)
    expected = fastchat_tulu(system or "", [("<|user|>", prompt), ("<|assistant|>", response)], "</s>")
    assert format_conversation(without_template, prompt, response, settings) == expected
    assert format_conversation(without_template, "p", "r", FormatSettings(fallback_template="tulu")) == \
        "<|user|>\np\n<|assistant|>\nr\n</s>"


def test_tokenizer_template_wins_over_fallback(with_template: PreTrainedTokenizerFast) -> None:
    text = format_conversation(with_template, "Q?", "A.", FormatSettings(fallback_template="tulu"))
    assert text == "<s>[INST] Q? [/INST] A. </s>"


def test_missing_template_without_fallback_is_an_error(without_template: PreTrainedTokenizerFast) -> None:
    with pytest.raises(ModelError, match="no chat template"):
        format_conversation(without_template, "Q?", "A.", FormatSettings())


def test_template_that_rejects_a_system_message() -> None:
    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}"
        "{% endif %}{{ m['content'] }}{% endfor %}"
    )
    assert format_conversation(tokenizer, "Q", "A", FormatSettings()) == "QA"
    with pytest.raises(BenchmarkError, match="no system role"):
        format_conversation(tokenizer, "Q", "A", FormatSettings(system_prompt="S"))


def test_record_is_json_ready_and_resolves_named_prompts() -> None:
    settings = FormatSettings(system_prompt="llama2-default", max_length=512, truncation_side="left")
    assert settings.record() == {
        "system_prompt": "llama2-default",
        "system_prompt_text": LLAMA2_DEFAULT_SYSTEM_PROMPT,
        "fallback_template": None,
        "max_length": 512,
        "truncation_side": "left",
        "double_bos": "keep",
    }


def test_settings_are_frozen_and_validated() -> None:
    settings = FormatSettings()
    with pytest.raises(pydantic.ValidationError):
        settings.max_length = 10  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        FormatSettings(fallback_template="no-such-template")  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError):
        FormatSettings(truncation_side="middle")  # type: ignore[arg-type]
