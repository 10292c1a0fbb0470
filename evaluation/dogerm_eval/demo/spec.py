"""The miniature world's sizes: model shape, data sizes and training recipe (``demo``: the shipped world; ``test``:
the tiny one the tests build in seconds)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal


class WorldBuildError(RuntimeError):
    """The miniature world could not be built or its cache entry is unusable."""


Size = Literal["demo", "test"]

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
    threads: int = 1  # torch threads of each process training side by side (the RM, the domain LMs, the policy)
    solo_threads: int = 2  # torch threads of a stage that runs alone (the base's pretraining, the demo's scoring)
    workers: int = 2  # processes training the RM, the domain LMs and the policy side by side (after the base)


DEMO = WorldSpec(
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
)

SPECS: dict[str, WorldSpec] = {
    "demo": DEMO,
    # The same recipe at a size the tests build in seconds.
    "test": replace(
        DEMO,
        hidden=16,
        layers=2,
        heads=2,
        intermediate=32,
        batch_size=8,
        pretrain_steps=4,
        sft_steps=4,
        strings_sft_steps=4,
        rm_steps=4,
        rm_head_steps=2,
        policy_steps=2,
        arithmetic_eval_pairs=8,
        strings_eval_pairs=8,
        gsm8k_problems=4,
        max_new_tokens=12,
        workers=1,  # spawning workers costs more than these trainings (the tests check 2 gives the same weights)
    ),
}
