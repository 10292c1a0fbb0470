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

Every training runs in spawned processes on one pinned math path (``mathpath``), each stage on the thread count its
recipe names: the weights are a function of the seed and the recipe, whatever the CPU, its load or this process's
settings. After the base, the RM, the domain LMs and the policy train side by side in ``WorldSpec.workers`` processes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from dogerm_eval.demo import corpus
from dogerm_eval.demo.data import RM_ONLY, make_datasets, make_tokenizer
from dogerm_eval.demo import mathpath
from dogerm_eval.demo.spec import SPECS, Size, WorldBuildError, WorldSpec
from dogerm_eval.demo.training import (finetune_domain, pretrain_base, sample_candidates, torch_settings, train_rm,
                                       verdict_accuracy)
from dogerm_mergekit.files import sha256_file

LOG = logging.getLogger(__name__)


WORLD_VERSION = 5
"""Bump whenever the corpus, the recipe or the file layout changes: it is part of the cache key."""

DOMAINS = {"arithmetic": "domain", "strings": "domain-strings"}
"""Each domain: its eval subset -> the folder of its domain LM (``World.domains``)."""
DOMAIN_SEEDS = {"arithmetic": 0, "strings": 20}
"""Offset of each domain SFT's seed from the world's (the RM uses +2, the policy +10)."""


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


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _run_job(job: str, out: Path, seed: int, spec: WorldSpec, payload: Any) -> tuple[str, Any, float, dict]:
    """One of a build's trainings, in a worker process on the pinned math path (``mathpath``): the base (``job`` =
    "base", alone, on ``spec.solo_threads``), then side by side on ``spec.threads`` each the RM, a domain LM (``job``
    = its subset) and the Best-of-N policy with its candidates, then "checks" (each LM's verdict accuracy). Every job
    seeds its own generators. Returns (job, candidates / verdicts / None, seconds, the math settings it ran with)."""
    start = time.perf_counter()
    result = None
    with torch_settings(spec.solo_threads if job == "base" else spec.threads):
        tokenizer = make_tokenizer()
        if job == "base":
            base = pretrain_base(payload, tokenizer, spec, seed)
            base.save_pretrained(out / "base")
            tokenizer.save_pretrained(out / "base")
        elif job == "checks":
            result = {
                f"{name}_{subset}": verdict_accuracy(LlamaForCausalLM.from_pretrained(out / name).eval(), tokenizer, rows)
                for name in ("base", *DOMAINS.values())
                for subset, rows in payload.items()
            }
        elif job == "rm":
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
    return job, result, time.perf_counter() - start, mathpath.in_use()


def silence_transformers() -> None:
    """No loading/saving bars and no warnings from transformers in this process (the demo's output; a worker's, which
    would garble the builder's bar: the side-by-side trainings' own bars are off in workers already)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _run_stage(pool: ProcessPoolExecutor, jobs: list[tuple[str, Any]], out: Path, seed: int, spec: WorldSpec,
               desc: str | None) -> dict[str, tuple[Any, float, dict]]:
    """Run ``jobs`` (name, payload) on ``pool``; a bar named ``desc`` counts them (none if None)."""
    bar = tqdm(total=len(jobs), desc=desc, leave=False, disable=desc is None)
    done: dict[str, tuple[Any, float, dict]] = {}
    futures = [pool.submit(_run_job, name, out, seed, spec, payload) for name, payload in jobs]
    for future in as_completed(futures):
        name, result, seconds, settings = future.result()
        done[name] = (result, seconds, settings)
        bar.set_postfix_str(f"{name} {seconds:.0f} s")
        bar.update()
    bar.close()
    return done


def world_digest(sha256: dict[str, str]) -> str:
    """12 hex digits naming a world's weights: the sha256 of its models' sha256 (printed with the demo's table)."""
    return hashlib.sha256("".join(f"{k}:{v}\n" for k, v in sorted(sha256.items())).encode()).hexdigest()[:12]


def _build_into(out: Path, seed: int, size: str, spec: WorldSpec) -> None:
    """Build every model and data file of the world into the (empty) folder ``out``: the data here, every training
    in ``spec.workers`` spawned processes on the pinned math path (so the weights do not depend on this process's
    settings, the thread count or the CPU)."""
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    stages: dict[str, float] = {}

    def lap(stage: str) -> None:
        stages[stage] = time.perf_counter() - start_wall - sum(stages.values())

    tokenizer = make_tokenizer()
    data = make_datasets(seed, spec, tokenizer)
    questions = [p.question for p in data.gsm8k]
    solutions = [(c, t) for c, t in data.sft["arithmetic"] if c.endswith("[/INST]")]
    by_subset = {s: [r for r in data.rewardbench if r["subset"] == s and r["rejected_model"] != RM_ONLY]
                 for s in ("general", *DOMAINS)}
    lap("data")

    context = multiprocessing.get_context("spawn")
    with mathpath.pinned_environ(), ProcessPoolExecutor(max(1, spec.workers), mp_context=context,
                                                        initializer=silence_transformers) as pool:
        done = _run_stage(pool, [("base", data.pretrain)], out, seed, spec, None)
        lap("pretrain")
        # After the base, the RM, the domain LMs and the policy do not depend on each other: side by side. The two
        # domain SFTs first (the longest: 1500 steps), then the RM and the policy, so the two workers finish close
        # to each other.
        jobs = [(subset, data.sft[subset]) for subset in DOMAINS]
        jobs += [("rm", data.rm_pairs), ("policy", (solutions, questions))]
        done |= _run_stage(pool, jobs, out, seed, spec, f"train RM, domains, policy ({spec.workers} processes)")
        candidates = done["policy"][0]
        lap("parallel")
        # Build-time check of the mechanism's preconditions (the demo prints them): the base judges held-out
        # facts, each domain LM its own skill.
        done |= _run_stage(pool, [("checks", by_subset)], out, seed, spec, None)
        verdicts = done["checks"][0]
        lap("checks")
    domain_tok_size = len(PreTrainedTokenizerFast.from_pretrained(out / DOMAINS["arithmetic"]))
    math = [settings for _, _, settings in done.values()]
    if any(m != math[0] for m in math):
        raise WorldBuildError(f"the world's trainings ran with different math settings: {math}")
    if (why := mathpath.deviation(math[0])) is not None:
        LOG.warning("this world is not on the pinned math path (%s): its weights, and the demo's figures, can "
                    "differ from other machines'", why)

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
    sha256 = {name: sha256_file(out / name / "model.safetensors") for name in ("base", *DOMAINS.values(), "rm")}
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
        "sha256": sha256,
        "digest": world_digest(sha256),
        "math": math[0] | {"pinned": mathpath.deviation(math[0]) is None},
        "build_seconds": {"wall": time.perf_counter() - start_wall, "cpu": time.process_time() - start_cpu,
                          "stages": stages, "jobs": {name: seconds for name, (_, seconds, _) in done.items()}},
    }
    (out / "world.json").write_text(json.dumps(metadata, indent=2) + "\n")
