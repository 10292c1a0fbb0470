"""Build and cache the miniature DogeRM world: base LM, two domain LMs (arithmetic, strings), general RM, eval data.

All models are tiny Llama-architecture transformers models fine-tuned from the SAME pretrained base, so
``RM + lambda * (LM - RM)`` is meaningful, as in DogeRM (arXiv 2407.01470):

- base: ``LlamaForCausalLM`` pretrained on every general fact (stated, asked and answered, and as judged
  answers "... . true" / "... . false") and, at a quarter of that volume each, on worked arithmetic whose step
  results are mostly random and on graded arithmetic ("... . good" / "... . bad"); it never sees a word list task;
- domain LMs (``World.domains``: subset -> folder): base + SFT (next-token loss) on a mixture of correct answers
  in the chat format, judged answers ("... the answer is 9 . false", loss on the verdict only) and replayed general
  pretraining texts; ``arithmetic`` (folder ``domain``) on worked arithmetic, ``strings`` (``domain-strings``) on
  giving a list of words back last word first. Their tokenizers add ``[PAD]`` at id = base vocabulary size, as
  MetaMath-7B's does;
- rm: base + ``score`` head (``LlamaForSequenceClassification``, 1 label) trained with the Bradley-Terry loss
  on general fact pairs only (30% of facts held out for evaluation) and on pairs about facts no other text states
  (RM-only knowledge, which a merge dilutes): a head-only warm-up, then full fine-tuning. It never sees a domain;
- Best-of-N candidates come from a weaker policy (base + a short SFT on correct worked answers), not the domain.

After the base, the RM, the domain LMs and the policy are trained side by side in ``WorldSpec.workers`` processes.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import random
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from tqdm.auto import tqdm
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
    get_linear_schedule_with_warmup,
)

from dogerm_eval.demo import corpus
from dogerm_mergekit.files import sha256_file

WORLD_VERSION = 4
"""Bump whenever the corpus, the recipe or the file layout changes: it is part of the cache key."""

Size = Literal["demo", "test"]

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "[INST]", "[/INST]", "<<SYS>>", "<</SYS>>")
DOMAIN_PAD_TOKEN = "[PAD]"
GENERAL_DISTRACTORS = 3
"""Wrong answers per held-out fact in the ``general`` eval subset."""
DOMAINS = {"arithmetic": "domain", "strings": "domain-strings"}
"""Each domain: its eval subset -> the folder of its domain LM (``World.domains``)."""
DOMAIN_SEEDS = {"arithmetic": 0, "strings": 20}
"""Offset of each domain SFT's seed from the world's (the RM uses +2, the policy +10)."""
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


class WorldBuildError(RuntimeError):
    """The miniature world could not be built or its cache entry is unusable."""


@dataclass(frozen=True)
class WorldSpec:
    """Model shape, data sizes and training recipe of one world size."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    batch_size: int
    pretrain_steps: int
    pretrain_lr: float
    arithmetic_p_correct: float  # chance that a pretraining arithmetic step result is right
    arithmetic_ratio: float  # pretraining arithmetic texts per general text
    graded_ratio: float  # pretraining graded arithmetic texts ("... . good" / "... . bad") per general text
    verdicts: int  # judged answers per general fact in pretraining ("... . true" / "... . false")
    tie_embeddings: bool
    sft_steps: int
    sft_lr: float
    sft_judged_fraction: float  # SFT examples that are judged worked answers (loss on the verdict only)
    sft_replay_fraction: float  # SFT examples that replay general pretraining texts
    strings_sft_steps: int  # SFT steps of the second domain (reversing word lists), same recipe otherwise
    rm_steps: int
    rm_lr: float
    rm_head_steps: int  # head-only warm-up before full fine-tuning (linear probe, then fine-tune)
    rm_head_lr: float
    rm_only_repeats: int  # how often the RM-only fact pairs are repeated in the RM's training pairs
    heldout_fact_fraction: float  # general facts kept out of RM training (the `general` eval subset)
    policy_steps: int  # SFT steps of the Best-of-N policy (base + correct worked answers only; weaker than the domain)
    arithmetic_eval_pairs: int
    strings_eval_pairs: int
    gsm8k_problems: int
    candidates_per_problem: int
    max_new_tokens: int = 40
    temperature: float = 1.0
    threads: int = 1  # 2 threads stall at OpenMP barriers as soon as anything else runs (2-3 s per step)
    workers: int = 2  # processes training the RM, the domain LMs and the policy side by side (after the base)


SPECS: dict[str, WorldSpec] = {
    "demo": WorldSpec(
        hidden=64,
        layers=4,
        heads=4,
        intermediate=256,
        batch_size=64,
        pretrain_steps=2000,
        pretrain_lr=3e-3,
        arithmetic_p_correct=0.2,
        arithmetic_ratio=0.25,
        graded_ratio=0.25,
        verdicts=2,
        tie_embeddings=True,
        sft_steps=1500,
        sft_lr=3e-3,
        sft_judged_fraction=0.4,
        sft_replay_fraction=0.3,
        strings_sft_steps=1500,
        rm_steps=400,
        rm_lr=3e-4,
        rm_head_steps=150,
        rm_head_lr=1e-2,
        rm_only_repeats=2,
        heldout_fact_fraction=0.3,
        policy_steps=200,
        arithmetic_eval_pairs=200,
        strings_eval_pairs=200,
        gsm8k_problems=100,
        candidates_per_problem=8,
    ),
    "test": WorldSpec(
        hidden=16,
        layers=2,
        heads=2,
        intermediate=32,
        batch_size=8,
        pretrain_steps=4,
        pretrain_lr=3e-3,
        arithmetic_p_correct=0.2,
        arithmetic_ratio=0.25,
        graded_ratio=0.25,
        verdicts=2,
        tie_embeddings=True,
        sft_steps=4,
        sft_lr=3e-3,
        sft_judged_fraction=0.4,
        sft_replay_fraction=0.3,
        strings_sft_steps=4,
        rm_steps=4,
        rm_lr=3e-4,
        rm_head_steps=2,
        rm_head_lr=1e-2,
        rm_only_repeats=2,
        heldout_fact_fraction=0.3,
        policy_steps=2,
        arithmetic_eval_pairs=8,
        strings_eval_pairs=8,
        gsm8k_problems=4,
        candidates_per_problem=8,
        max_new_tokens=12,
        threads=1,
        workers=1,  # spawning workers costs more than these trainings (the tests check 2 gives the same weights)
    ),
}


@dataclass(frozen=True)
class World:
    """Paths of a built world (model folders and data files) and its metadata."""

    root: Path
    base: Path
    domain: Path  # the arithmetic domain LM (``domains["arithmetic"]``)
    rm: Path
    rewardbench_data: Path
    gsm8k_data: Path
    candidates: Path
    seed: int
    size: str
    domains: dict[str, Path] = field(default_factory=dict)  # eval subset -> its domain LM's folder
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def at(cls, root: Path) -> World:
        """The world stored in ``root`` (read from its ``world.json``)."""
        try:
            metadata = json.loads((root / "world.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise WorldBuildError(f"{root} holds no readable world.json") from exc
        return cls(
            root=root,
            base=root / "base",
            domain=root / "domain",
            rm=root / "rm",
            rewardbench_data=root / "rewardbench.jsonl",
            gsm8k_data=root / "gsm8k.jsonl",
            candidates=root / "candidates.jsonl",
            seed=metadata["seed"],
            size=metadata["size"],
            domains={subset: root / folder for subset, folder in DOMAINS.items()},
            metadata=metadata,
        )


def default_cache_root() -> Path:
    """``$DOGERM_CACHE`` if set, else ``~/.cache/dogerm``."""
    return Path(os.environ.get("DOGERM_CACHE", Path.home() / ".cache" / "dogerm")).expanduser()


def world_key(seed: int, size: str) -> str:
    """Cache folder name of a world: version, seed and size."""
    return f"world-v{WORLD_VERSION}-seed{seed}-{size}"


def build_world(
    root: Path | None = None, seed: int = 0, size: Size = "demo", *, spec: WorldSpec | None = None
) -> World:
    """Return the cached world for ``(seed, size)``, building it first if it is missing.

    ``root`` is the cache folder (default :func:`default_cache_root`); the world lives in
    ``root / world_key(seed, size)``, written to a temporary sibling folder and renamed into place.
    ``spec`` overrides the recipe of ``size`` (for experiments; such worlds are not cached).
    """
    if size not in SPECS:
        raise WorldBuildError(f"unknown world size {size!r}; choose one of {sorted(SPECS)}")
    root = default_cache_root() if root is None else Path(root)
    target = root / world_key(seed, size)
    if spec is None and (target / "world.json").is_file():
        return World.at(target)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    try:
        _build_into(tmp, seed, size, spec or SPECS[size])
        if spec is not None:
            return World.at(tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "world.json").is_file():
                raise
            # Another process finished the same world first: keep theirs.
    finally:
        if spec is None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return World.at(target)


# ----------------------------------------------------------------------------------------------- tokenizer


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


@contextlib.contextmanager
def _torch_settings(threads: int) -> Iterator[None]:
    """Deterministic algorithms and a fixed thread count, restored afterwards."""
    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def _batch(ids: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask``."""
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
    return input_ids, mask


def _train(
    model: torch.nn.Module,
    n_items: int,
    loss_of: Callable[[list[int]], torch.Tensor],
    steps: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    desc: str,
) -> list[float]:
    """AdamW with linear warm-up and decay over random mini-batches of item indices; returns the losses."""
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    schedule = get_linear_schedule_with_warmup(optimizer, max(1, steps // 20), steps)
    losses = []
    # Bars only in the builder's own process (workers training side by side would garble them).
    for _ in tqdm(range(steps), desc=desc, leave=False, disable=multiprocessing.parent_process() is not None):
        idx = torch.randint(n_items, (batch_size,), generator=generator).tolist()
        loss = loss_of(idx)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    model.eval()
    return losses


def _lm_loss(model: LlamaForCausalLM, seqs: list[list[int]], starts: list[int], pad_id: int) -> torch.Tensor:
    """Next-token loss on every token from ``starts[i]`` on (earlier tokens are context only)."""
    input_ids, mask = _batch(seqs, pad_id)
    labels = input_ids.clone()
    labels[mask == 0] = -100
    for i, s in enumerate(starts):
        labels[i, :s] = -100
    return model(input_ids=input_ids, attention_mask=mask, labels=labels).loss


def pretrain_base(texts: list[str], tokenizer: PreTrainedTokenizerFast, spec: WorldSpec, seed: int) -> LlamaForCausalLM:
    """A fresh tiny Llama pretrained on ``texts``."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden,
        intermediate_size=spec.intermediate,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.heads,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=spec.tie_embeddings,
    )
    model = LlamaForCausalLM(config)
    ids = [tokenizer(t)["input_ids"] for t in texts]
    gen = torch.Generator().manual_seed(seed)
    _train(
        model,
        len(ids),
        lambda idx: _lm_loss(model, [ids[i] for i in idx], [0] * len(idx), tokenizer.pad_token_id),
        spec.pretrain_steps,
        spec.batch_size,
        spec.pretrain_lr,
        gen,
        "pretrain base",
    )
    return model


def finetune_domain(
    base_dir: Path, examples: list[tuple[str, str]], tokenizer: PreTrainedTokenizerFast, spec: WorldSpec, seed: int
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """Base + ``[PAD]`` token + SFT on the response tokens of chat-formatted arithmetic examples."""
    torch.manual_seed(seed + 1)
    tok = PreTrainedTokenizerFast.from_pretrained(base_dir)
    tok.add_special_tokens({"pad_token": DOMAIN_PAD_TOKEN})
    if tok.pad_token_id != len(tokenizer):
        raise WorldBuildError(f"[PAD] got id {tok.pad_token_id}, expected {len(tokenizer)}")
    model = LlamaForCausalLM.from_pretrained(base_dir)
    model.resize_token_embeddings(len(tok))
    model.config.pad_token_id = tok.pad_token_id
    seqs, starts = [], []
    for context, text in examples:
        starts.append(len(tok(context)["input_ids"]))
        seqs.append(tok(text)["input_ids"])
    gen = torch.Generator().manual_seed(seed + 1)
    _train(
        model,
        len(seqs),
        lambda idx: _lm_loss(model, [seqs[i] for i in idx], [starts[i] for i in idx], tok.pad_token_id),
        spec.sft_steps,
        spec.batch_size,
        spec.sft_lr,
        gen,
        "SFT domain",
    )
    return model, tok


def train_rm(
    base_dir: Path, pairs: list[tuple[str, str, str]], tokenizer: PreTrainedTokenizerFast, spec: WorldSpec, seed: int
) -> LlamaForSequenceClassification:
    """Base + ``score`` head, fully fine-tuned with the Bradley-Terry loss ``-logsigmoid(r_chosen - r_rejected)``."""
    torch.manual_seed(seed + 2)
    base = LlamaForCausalLM.from_pretrained(base_dir)
    config = LlamaConfig.from_pretrained(base_dir, num_labels=1, pad_token_id=tokenizer.pad_token_id)
    model = LlamaForSequenceClassification(config)  # fresh `score` head; backbone copied from the base
    model.model.load_state_dict(base.model.state_dict())
    chosen = [tokenizer(chat(tokenizer, p, c))["input_ids"] for p, c, _ in pairs]
    rejected = [tokenizer(chat(tokenizer, p, r))["input_ids"] for p, _, r in pairs]

    def loss_of(idx: list[int]) -> torch.Tensor:
        input_ids, mask = _batch([chosen[i] for i in idx] + [rejected[i] for i in idx], tokenizer.pad_token_id)
        scores = model(input_ids=input_ids, attention_mask=mask).logits.squeeze(-1)
        return -F.logsigmoid(scores[: len(idx)] - scores[len(idx) :]).mean()

    gen = torch.Generator().manual_seed(seed + 2)
    if spec.rm_head_steps:
        model.model.requires_grad_(False)
        _train(model, len(pairs), loss_of, spec.rm_head_steps, spec.batch_size, spec.rm_head_lr, gen, "train RM head")
        model.model.requires_grad_(True)
    _train(model, len(pairs), loss_of, spec.rm_steps, spec.batch_size, spec.rm_lr, gen, "train RM")
    return model


@torch.no_grad()
def sample_candidates(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, prompts: list[str], spec: WorldSpec, seed: int
) -> list[list[str]]:
    """``spec.candidates_per_problem`` sampled responses per prompt (temperature ``spec.temperature``).

    A response ends at ``</s>`` or at a verdict word: the domain SFT also judges answers ("... . true"), and a
    verdict after the answer is the model switching to judging, so it is cut off like a stop word.
    """
    torch.manual_seed(seed + 3)
    stop = [tokenizer.eos_token_id, *tokenizer.convert_tokens_to_ids([corpus.TRUE, corpus.FALSE])]
    verdict = re.compile(rf" ?\b({corpus.TRUE}|{corpus.FALSE})$")
    out = []
    in_worker = multiprocessing.parent_process() is not None
    for prompt in tqdm(prompts, desc="sample candidates", leave=False, disable=in_worker):
        input_ids = tokenizer(chat(tokenizer, prompt), return_tensors="pt")["input_ids"]
        generated = model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            do_sample=True,
            temperature=spec.temperature,
            top_k=0,
            top_p=1.0,
            max_new_tokens=spec.max_new_tokens,
            num_return_sequences=spec.candidates_per_problem,
            eos_token_id=stop,
            pad_token_id=tokenizer.pad_token_id,
        )
        texts = tokenizer.batch_decode(generated[:, input_ids.shape[1] :], skip_special_tokens=True)
        out.append([verdict.sub("", t.strip()) for t in texts])
    return out


@torch.no_grad()
def verdict_accuracy(lm: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, rows: Sequence[dict[str, Any]]) -> float:
    """Share of pair ``rows`` where ``lm`` judges the chosen answer more ``true`` (vs ``false``) than the rejected.

    The judged text is the chat text without its closing ``</s>``, as in the judged answers of the corpus; the
    verdict is read at its final ``.``, the position the RM's ``score`` head reads.
    """
    sides = ("chosen", "rejected")
    texts = [chat(tokenizer, r["prompt"], r[side]).removesuffix(" </s>") for side in sides for r in rows]
    ids, mask = _batch([tokenizer(t)["input_ids"] for t in texts], tokenizer.pad_token_id)
    logits = lm(input_ids=ids, attention_mask=mask).logits[torch.arange(len(texts)), mask.sum(1) - 1].float()
    true, false = tokenizer.convert_tokens_to_ids([corpus.TRUE, corpus.FALSE])
    margin = logits[:, true] - logits[:, false]
    return float((margin[: len(rows)] > margin[len(rows) :]).float().mean())


# ------------------------------------------------------------------------------------------------- build


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _run_job(job: str, out: Path, seed: int, spec: WorldSpec, payload: Any) -> tuple[str, Any, float]:
    """One of a build's independent trainings (after the base; run in its own process): the RM, a domain LM (``job``
    = its subset) or the Best-of-N policy and its candidates. Every job seeds its own generators, so it gives the
    same weights in a worker process as in the builder's. Returns (job, candidates or None, seconds)."""
    start = time.perf_counter()
    result = None
    with _torch_settings(spec.threads):
        tokenizer = make_tokenizer()
        if job == "rm":
            rm = train_rm(out / "base", payload, tokenizer, spec, seed)
            rm.save_pretrained(out / "rm")
            tokenizer.save_pretrained(out / "rm")
        elif job == "policy":
            # The Best-of-N policy is not the domain LM (a verifier merged from it would share its confident
            # errors) but a weaker math model, as DogeRM's policy Llama-2-chat was next to MetaMath: the base after
            # a short SFT on the domain's correct worked answers.
            solutions, questions = payload
            policy_spec = dataclasses.replace(spec, sft_steps=spec.policy_steps)
            policy, policy_tok = finetune_domain(out / "base", solutions, tokenizer, policy_spec, seed + 10)
            result = sample_candidates(policy, policy_tok, questions, spec, seed)
        else:
            steps = {"arithmetic": spec.sft_steps, "strings": spec.strings_sft_steps}[job]
            domain_spec = dataclasses.replace(spec, sft_steps=steps)
            domain, domain_tok = finetune_domain(
                out / "base", payload, tokenizer, domain_spec, seed + DOMAIN_SEEDS[job]
            )
            domain.save_pretrained(out / DOMAINS[job])
            domain_tok.save_pretrained(out / DOMAINS[job])
    return job, result, time.perf_counter() - start


def _run_jobs(jobs: list[tuple[str, Any]], out: Path, seed: int, spec: WorldSpec) -> dict[str, tuple[Any, float]]:
    """Run ``jobs`` (name, payload) in ``spec.workers`` spawned processes (in this one if 1), one bar for all."""
    bar = tqdm(total=len(jobs), desc=f"train RM, domains, policy ({spec.workers} processes)", leave=False)
    done: dict[str, tuple[Any, float]] = {}
    if spec.workers <= 1:
        for name, payload in jobs:
            _, result, seconds = _run_job(name, out, seed, spec, payload)
            done[name] = (result, seconds)
            bar.update()
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(spec.workers, mp_context=context) as pool:
            futures = [pool.submit(_run_job, name, out, seed, spec, payload) for name, payload in jobs]
            for future in as_completed(futures):
                name, result, seconds = future.result()
                done[name] = (result, seconds)
                bar.set_postfix_str(f"{name} {seconds:.0f} s")
                bar.update()
    bar.close()
    return done


def _build_into(out: Path, seed: int, size: str, spec: WorldSpec) -> None:
    """Build every model and data file of the world into the (empty) folder ``out``."""
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    stages: dict[str, float] = {}

    def lap(stage: str) -> None:
        stages[stage] = time.perf_counter() - start_wall - sum(stages.values())

    with _torch_settings(spec.threads):
        tokenizer = make_tokenizer()
        data = make_datasets(seed, spec, tokenizer)
        lap("data")

        base = pretrain_base(data.pretrain, tokenizer, spec, seed)
        base.save_pretrained(out / "base")
        tokenizer.save_pretrained(out / "base")
        lap("pretrain")

        # After the base, the RM, the domain LMs and the policy do not depend on each other: side by side.
        questions = [p.question for p in data.gsm8k]
        solutions = [(c, t) for c, t in data.sft["arithmetic"] if c.endswith("[/INST]")]
        # The two domain SFTs first (the longest: 1500 steps), then the RM and the policy: on the demo world the two
        # workers then finish within ~30 s of each other (seed 0, measured: SFTs 131 / 150 s, RM 68 s, policy 16 s).
        jobs = [(subset, data.sft[subset]) for subset in DOMAINS]
        jobs += [("rm", data.rm_pairs), ("policy", (solutions, questions))]
        done = _run_jobs(jobs, out, seed, spec)
        candidates = done["policy"][0]
        lap("parallel")

        # Build-time check of the mechanism's preconditions (the demo prints them): the base judges held-out
        # facts, each domain LM its own skill.
        by_subset = {s: [r for r in data.rewardbench if r["subset"] == s and r["rejected_model"] != RM_ONLY]
                     for s in ("general", *DOMAINS)}
        models = {"base": base} | {f: LlamaForCausalLM.from_pretrained(out / f) for f in DOMAINS.values()}
        verdicts = {
            f"{name}_{subset}": verdict_accuracy(model.eval(), tokenizer, rows)
            for name, model in models.items()
            for subset, rows in by_subset.items()
        }
        lap("checks")
        domain_tok_size = len(PreTrainedTokenizerFast.from_pretrained(out / DOMAINS["arithmetic"]))

    generation = {
        "model": f"policy: base + {spec.policy_steps} SFT steps on correct worked answers",
        "do_sample": True,
        "temperature": spec.temperature,
        "top_k": 0,
        "top_p": 1.0,
        "max_new_tokens": spec.max_new_tokens,
        "stop": ["</s>", corpus.TRUE, corpus.FALSE],
        "num_candidates": spec.candidates_per_problem,
        "seed": seed + 3,
    }
    _write_jsonl(out / "rewardbench.jsonl", data.rewardbench)
    _write_jsonl(out / "gsm8k.jsonl", [{"question": p.question, "answer": p.gsm8k_answer()} for p in data.gsm8k])
    _write_jsonl(
        out / "candidates.jsonl",
        [
            {"problem_id": i, "prompt": q, "candidates": c, "generation": generation}
            for i, (q, c) in enumerate(zip(questions, candidates))
        ],
    )
    metadata = {
        "version": WORLD_VERSION,
        "seed": seed,
        "size": size,
        "spec": asdict(spec),
        "vocab_size": len(tokenizer),
        "domain_vocab_size": domain_tok_size,
        "counts": {
            "pretrain_texts": len(data.pretrain),
            "sft_examples": {subset: len(examples) for subset, examples in data.sft.items()},
            "rm_pairs": len(data.rm_pairs),
            "rewardbench_rows": len(data.rewardbench),
            "gsm8k_problems": len(data.gsm8k),
        },
        "verdict_accuracy": verdicts,
        "sha256": {name: sha256_file(out / name / "model.safetensors") for name in ("base", *DOMAINS.values(), "rm")},
        "build_seconds": {"wall": time.perf_counter() - start_wall, "cpu": time.process_time() - start_cpu,
                          "stages": stages, "jobs": {name: seconds for name, (_, seconds) in done.items()}},
        "torch": torch.__version__,
    }
    (out / "world.json").write_text(json.dumps(metadata, indent=2) + "\n")
