"""The shared Llama-2 chat templates: exact rendered bytes, and importable without torch or transformers."""

from __future__ import annotations

import subprocess
import sys

import jinja2
import pytest

from dogerm_mergekit.chat_templates import LLAMA2_CHAT_TEMPLATE, LLAMA2_WORDS_CHAT_TEMPLATE

TWO_TURNS = [
    {"role": "system", "content": "S"},
    {"role": "user", "content": "a"},
    {"role": "assistant", "content": "b"},
    {"role": "user", "content": "c"},
    {"role": "assistant", "content": "d"},
]


def render(template: str, messages: list[dict[str, str]]) -> str:
    return jinja2.Environment().from_string(template).render(messages=messages, bos_token="<s>", eos_token="</s>")


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (LLAMA2_CHAT_TEMPLATE, "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\na [/INST] b </s><s>[INST] c [/INST] d </s>"),
        (LLAMA2_WORDS_CHAT_TEMPLATE, "<s>[INST] <<SYS>> S <</SYS>> a [/INST] b </s><s>[INST] c [/INST] d </s>"),
    ],
    ids=["llama-2", "words"],
)
def test_rendered_bytes(template: str, expected: str) -> None:
    assert render(template, TWO_TURNS) == expected
    assert render(template, TWO_TURNS[1:3]) == "<s>[INST] a [/INST] b </s>"
    assert render(template, TWO_TURNS[:2]) == expected[: expected.index(" [/INST]") + len(" [/INST]")]


def test_import_is_light() -> None:
    code = "import sys, dogerm_mergekit.chat_templates; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
