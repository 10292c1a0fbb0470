"""The miniature world's tokenizer, chat format, training texts and evaluation pairs (one RNG per draw, so adding a
draw changes no other)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from dogerm_eval.demo import corpus
from dogerm_eval.demo.spec import WorldSpec


SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "[INST]", "[/INST]", "<<SYS>>", "<</SYS>>")
DOMAIN_PAD_TOKEN = "[PAD]"
GENERAL_DISTRACTORS = 3
"""Wrong answers per held-out fact in the ``general`` eval subset."""
RM_ONLY = "rm-only"
"""``rejected_model`` of the ``general`` eval pairs on facts only the RM is taught (what fades as lambda grows)."""
RM_ONLY_HELDOUT = 2
"""Wrong answers per RM-only fact kept out of RM training for those pairs; the RM trains on the others."""

# Llama-2 chat format (re-implemented from its published description): "<s>[INST] <<SYS>> system <</SYS>>
# user [/INST] assistant </s>"; the tokenizer adds no BOS itself, so templated text has exactly one.
CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set system = '<<SYS>> ' + messages[0]['content'] + ' <</SYS>> ' %}{% set messages = messages[1:] %}"
    "{% else %}{% set system = '' %}{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + (system if loop.first else '') + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)




def make_tokenizer() -> PreTrainedTokenizerFast:
    """The word-level tokenizer shared by the base, domain and RM (before the domain adds ``[PAD]``)."""
    words = [w for w in corpus.vocabulary() if w not in SPECIAL_TOKENS]
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="</s>",  # as Llama-2 RMs: pad = eos (id 2)
        extra_special_tokens=list(SPECIAL_TOKENS[3:]),
        chat_template=CHAT_TEMPLATE,
        model_max_length=128,
    )


def chat(tokenizer: PreTrainedTokenizerFast, prompt: str, response: str | None = None) -> str:
    """The chat-formatted text of one user turn (and the assistant's response, if given)."""
    messages = [{"role": "user", "content": prompt}]
    if response is not None:
        messages.append({"role": "assistant", "content": response})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=response is None)


def judged_text(tokenizer: PreTrainedTokenizerFast, question: str, answer: str, verdict: str) -> str:
    """A judged answer: the chat text without its closing ``</s>``, then the verdict word."""
    return chat(tokenizer, question, answer).removesuffix(" </s>") + " " + verdict


# -------------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Datasets:
    """All texts of one world, split so nothing evaluated is trained on."""

    pretrain: list[str]
    sft: dict[str, list[tuple[str, str]]]  # per domain (context, text): next-token loss on ``text`` after ``context``
    rm_pairs: list[tuple[str, str, str]]
    rewardbench: list[dict[str, Any]]
    gsm8k: list[corpus.Problem]


def make_datasets(seed: int, spec: WorldSpec, tokenizer: PreTrainedTokenizerFast) -> Datasets:
    """The pretraining corpus, SFT examples, RM pairs and held-out eval data for ``seed``."""
    rng = random.Random(seed)
    facts = corpus.all_facts()
    heldout: list[corpus.Fact] = []
    train_facts: list[corpus.Fact] = []
    for relation in corpus.RELATIONS:
        group = [f for f in facts if f.relation is relation]
        rng.shuffle(group)
        n_out = max(1, round(spec.heldout_fact_fraction * len(group)))
        heldout += group[:n_out]
        train_facts += group[n_out:]

    n_eval = spec.arithmetic_eval_pairs + spec.gsm8k_problems
    problems: dict[str, corpus.Problem] = {}
    while len(problems) < n_eval:
        p = corpus.random_problem(rng)
        problems.setdefault(p.question, p)
    eval_problems = list(problems.values())
    held_questions = set(problems)

    def fresh_problem() -> corpus.Problem:
        while True:
            p = corpus.random_problem(rng)
            if p.question not in held_questions:
                return p

    def judged(question: str, answer: str, verdict: str) -> str:
        return judged_text(tokenizer, question, answer, verdict)

    pretrain = []
    for fact in facts:  # every fact, held-out ones included: the base knows them all
        statement = fact.relation.statement.format(s=fact.subject, o=fact.obj)
        pretrain += [statement, chat(tokenizer, fact.question, fact.answer())]
    pretrain *= 4
    for fact in facts:
        for _ in range(spec.verdicts):
            wrong = rng.choice(corpus.wrong_objects(fact))
            pretrain.append(judged(fact.question, fact.answer(), corpus.TRUE))
            pretrain.append(judged(fact.question, fact.answer(wrong), corpus.FALSE))
    general_texts = list(pretrain)
    for _ in range(round(spec.arithmetic_ratio * len(general_texts))):
        p = fresh_problem()
        pretrain.append(chat(tokenizer, p.question, p.worked(corpus.noisy_results(p, rng, spec.arithmetic_p_correct))))
    rng.shuffle(pretrain)

    sft = _sft_mixture(
        spec.sft_steps * spec.batch_size // 4 + 1, spec, rng, general_texts, fresh_problem, tokenizer,
        lambda p: p.worked(p.results()), lambda p, r: p.worked(corpus.wrong_results(p, r)[0]),
    )

    rm_pairs = []
    for fact in train_facts:
        for wrong in corpus.wrong_objects(fact):
            rm_pairs.append((fact.question, fact.answer(), fact.answer(wrong)))
    rng.shuffle(rm_pairs)

    rows: list[dict[str, Any]] = []
    eval_rng = random.Random(f"eval-{seed}")  # the eval pairs do not depend on how much training data was drawn
    for fact in heldout:
        for wrong in eval_rng.sample(corpus.wrong_objects(fact), GENERAL_DISTRACTORS):
            rows.append(_pair_row(fact.question, fact.answer(), fact.answer(wrong), "distractor", "general"))
    for p in eval_problems[: spec.arithmetic_eval_pairs]:
        wrong, kind = corpus.wrong_results(p, eval_rng)
        rows.append(_pair_row(p.question, p.worked(p.results()), p.worked(wrong), kind, "arithmetic"))

    # What only the RM learns: facts no other text states, trained against all wrong objects but RM_ONLY_HELDOUT,
    # which are evaluated in `general`. Own RNGs, so nothing drawn above changes.
    only_rng, rm_only_pairs = random.Random(f"rmonly-data-{seed}"), []
    for fact in corpus.rm_only_facts(random.Random(f"rmonly-{seed}")):
        wrong = corpus.wrong_objects(fact)
        only_rng.shuffle(wrong)
        rows += [_pair_row(fact.question, fact.answer(), fact.answer(w), RM_ONLY, "general")
                 for w in wrong[:RM_ONLY_HELDOUT]]
        rm_only_pairs += [(fact.question, fact.answer(), fact.answer(w)) for w in wrong[RM_ONLY_HELDOUT:]]
    rm_pairs = rm_pairs + rm_only_pairs * spec.rm_only_repeats
    random.Random(seed).shuffle(rm_pairs)

    # The second domain, reversing word lists: held-out pairs in `strings`, SFT mixed as the arithmetic one's.
    # Own RNGs again; its words are already in the vocabulary, so the tokenizer and the base do not change.
    tasks: dict[str, corpus.StringTask] = {}
    string_eval_rng = random.Random(f"eval-strings-{seed}")
    while len(tasks) < spec.strings_eval_pairs:
        t = corpus.random_string_task(string_eval_rng)
        tasks.setdefault(t.question, t)
    for t in tasks.values():
        wrong, kind = corpus.wrong_reversal(t, string_eval_rng)
        rows.append(_pair_row(t.question, t.worked(t.results()), t.worked(wrong), kind, "strings"))
    string_rng = random.Random(f"strings-{seed}")

    def fresh_task() -> corpus.StringTask:
        while True:
            t = corpus.random_string_task(string_rng)
            if t.question not in tasks:
                return t

    sft_strings = _sft_mixture(
        spec.strings_sft_steps * spec.batch_size // 4 + 1, spec, string_rng, general_texts, fresh_task, tokenizer,
        lambda t: t.worked(t.results()), lambda t, r: t.worked(corpus.wrong_reversal(t, r)[0]),
    )
    for i, row in enumerate(rows):
        row["id"] = i

    # Graded arithmetic in pretraining, marked with words the SFT never uses (its own RNG, as above).
    graded_rng, graded = random.Random(f"latent-{seed}"), []
    while len(graded) < round(spec.graded_ratio * len(general_texts)):
        p = corpus.random_problem(graded_rng)
        if p.question in held_questions:
            continue
        good = graded_rng.random() < 0.5
        results = p.results() if good else corpus.wrong_results(p, graded_rng)[0]
        graded.append(judged(p.question, p.worked(results), corpus.GOOD if good else corpus.BAD))
    pretrain = pretrain + graded
    graded_rng.shuffle(pretrain)
    return Datasets(pretrain, {"arithmetic": sft, "strings": sft_strings}, rm_pairs, rows,
                    eval_problems[spec.arithmetic_eval_pairs :])


def _sft_mixture(
    n: int,
    spec: WorldSpec,
    rng: random.Random,
    general_texts: list[str],
    fresh: Callable[[], Any],
    tokenizer: PreTrainedTokenizerFast,
    correct: Callable[[Any], str],
    wrong: Callable[[Any, random.Random], str],
) -> list[tuple[str, str]]:
    """``n`` (context, text) SFT examples of one domain: replayed general texts, judged answers (half wrong; loss
    on the verdict only) and correct answers, in the spec's proportions. ``fresh()`` draws a task no eval row has."""
    out = []
    for _ in range(n):
        u = rng.random()
        if u < spec.sft_replay_fraction:
            out.append(("", rng.choice(general_texts)))
            continue
        task = fresh()
        if u < spec.sft_replay_fraction + spec.sft_judged_fraction:
            right = rng.random() < 0.5
            context = judged_text(tokenizer, task.question, correct(task) if right else wrong(task, rng), "").rstrip()
            out.append((context, f"{context} {corpus.TRUE if right else corpus.FALSE}"))
        else:
            out.append((chat(tokenizer, task.question), chat(tokenizer, task.question, correct(task))))
    return out


def _pair_row(prompt: str, chosen: str, rejected: str, rejected_model: str, subset: str) -> dict[str, Any]:
    return {
        "prompt": prompt,
        "chosen": chosen,
        "chosen_model": "reference",
        "rejected": rejected,
        "rejected_model": rejected_model,
        "subset": subset,
    }


# ----------------------------------------------------------------------------------------------- training


