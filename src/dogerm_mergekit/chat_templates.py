"""The Llama-2 chat templates (Jinja, the format of ``tokenizer.chat_template``) used across the project.

Plain strings, importable without torch or transformers, so that both the merge package and dogerm-eval (which
depends on it) take them from here.
"""

from __future__ import annotations


def _llama2(system_open: str, system_close: str) -> str:
    """Llama-2 chat: ``<s>[INST] {system_open}{system}{system_close}{user} [/INST] {assistant} </s>``.

    The system message, if any, goes into the first user turn; every user turn starts with the BOS token and
    every assistant turn ends with `` </s>``.
    """
    return (
        "{%- if messages[0]['role'] == 'system' -%}"
        f"{{%- set system = '{system_open}' + messages[0]['content'] + '{system_close}' -%}}"
        "{%- set messages = messages[1:] -%}"
        "{%- else -%}{%- set system = '' -%}{%- endif -%}"
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'user' -%}"
        "{{ bos_token + '[INST] ' + (system if loop.first else '') + message['content'] + ' [/INST]' }}"
        "{%- else -%}{{ ' ' + message['content'] + ' ' + eos_token }}{%- endif -%}"
        "{%- endfor -%}"
    )


#: The default Llama-2 chat system prompt (Touvron et al. 2023, Meta's reference chat code), which DogeRM adds for
#: its Llama-2 reward models, in training (MiuLab/DogeRM src/utils.py) and in evaluation.
LLAMA2_DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while being safe. "
    "Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or illegal content. "
    "Please ensure that your responses are socially unbiased and positive in nature.\n\n"
    "If a question does not make any sense, or is not factually coherent, explain why instead of answering something "
    "not correct. If you don't know the answer to a question, please don't share false information."
)

#: Named system prompts (``--system-prompt llama2-default``).
NAMED_SYSTEM_PROMPTS: dict[str, str] = {"llama2-default": LLAMA2_DEFAULT_SYSTEM_PROMPT}

#: Meta's Llama-2 chat format: ``<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s>``.
LLAMA2_CHAT_TEMPLATE = _llama2("<<SYS>>\\n", "\\n<</SYS>>\\n\\n")

#: The same format with single spaces instead of the newlines around the system message, for word-level
#: tokenizers that split on whitespace: ``<s>[INST] <<SYS>> {system} <</SYS>> {user} [/INST] {assistant} </s>``.
LLAMA2_WORDS_CHAT_TEMPLATE = _llama2("<<SYS>> ", " <</SYS>> ")
