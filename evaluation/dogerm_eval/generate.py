"""Sample Best-of-N candidates from a policy LM, and the candidate-file schema (JSON lines, one problem a line).

Candidate file schema (bring your own with the same keys)::

    {"problem_id": 0,                      # GSM8K: row index in the test split; MBPP: task_id
     "prompt": "...",                      # the user turn the policy answered (question / MBPP docstring)
     "candidates": ["...", "..."],         # the sampled responses, in sampling order (first-N uses this order)
     "generation": {"policy": "...", "benchmark": "gsm8k", "samples": 16, "temperature": 1.0, "top_p": 1.0,
                    "max_new_tokens": 512, "seed": 0, "stop": [...], "system_prompt": "...",
                    "response_prefix": "...", "backend": "transformers"}}

Generation is seeded per problem (the seed mixes the run seed and the problem id), so a resumed run produces the
same candidates as an uninterrupted one. Records are appended one problem at a time; problems already in the file
are skipped; a final line cut off by an interruption is dropped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tqdm import tqdm

from dogerm_eval.errors import BenchmarkError, DataError, ModelError
from dogerm_eval.formatting import FormatSettings, chat_template_for
from dogerm_eval.roles import check_generator, split_ref
from dogerm_mergekit.files import sha256_file

Backend = Literal["auto", "transformers", "vllm"]
LOG = logging.getLogger(__name__)
VLLM_CHUNK = 64


class GenerationSettings(BaseModel):
    """How candidates were sampled; stored with every record."""

    model_config = ConfigDict(frozen=True, extra="allow")

    policy: str
    benchmark: Literal["gsm8k", "mbpp", "humaneval", "judge"]
    samples: int = Field(gt=0)
    temperature: float = Field(ge=0)
    top_p: float = Field(gt=0, le=1)
    max_new_tokens: int = Field(gt=0)
    seed: int
    stop: list[str] = Field(default_factory=list)
    system_prompt: str | None = None
    response_prefix: str = ""
    backend: str = "transformers"


class CandidateRecord(BaseModel):
    """One line of a candidate file."""

    model_config = ConfigDict(extra="forbid")

    problem_id: int | str
    prompt: str
    candidates: list[str] = Field(min_length=1)
    generation: dict[str, Any] = Field(default_factory=dict)


def _complete_lines(path: Path) -> list[str]:
    """The file's complete lines; a last line without newline (an interrupted append) is cut off the file."""
    raw = path.read_bytes()
    end = raw.rfind(b"\n") + 1
    if end < len(raw):
        with path.open("r+b") as handle:
            handle.truncate(end)
    return raw[:end].decode("utf-8").split("\n")  # not splitlines(): JSON strings may hold a raw U+2028


def read_candidates(path: str | Path) -> list[CandidateRecord]:
    """Parse and validate a candidate file; DataError names the first bad line or a repeated problem id."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"candidate file not found: {path}")
    records: list[CandidateRecord] = []
    seen: set[int | str] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = CandidateRecord.model_validate_json(line)
        except ValidationError as exc:
            raise DataError(f"{path}:{number}: not a candidate record: {exc}") from exc
        if record.problem_id in seen:
            raise DataError(f"{path}:{number}: problem_id {record.problem_id!r} appears twice")
        seen.add(record.problem_id)
        records.append(record)
    if not records:
        raise DataError(f"{path} holds no candidate records")
    return records


def problem_seed(seed: int, problem_id: int | str) -> int:
    """A 31-bit seed for one problem, stable across runs and resumption."""
    digest = hashlib.sha256(f"{seed}\0{problem_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """Text before the earliest stop string (vLLM's convention: the stop string itself is dropped)."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=len(text))
    return text[:cut]


def policy_prompt(tokenizer: Any, user: str, settings: GenerationSettings, fallback_template: str | None,
                  prefix: str | None = None) -> str:
    """System + user turns through the policy's chat template with a generation prompt, then the response prefix
    (``prefix``: this problem's own, e.g. HumanEval's code prompt; default ``settings.response_prefix``)."""
    _, template = chat_template_for(tokenizer, FormatSettings(fallback_template=fallback_template))
    messages = [{"role": "user", "content": user}]
    if settings.system_prompt:
        messages.insert(0, {"role": "system", "content": settings.system_prompt})
    text = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=True)
    return str(text) + (settings.response_prefix if prefix is None else prefix)


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a rendered prompt, adding the tokenizer's BOS only when the chat template did not already."""
    has_bos = tokenizer.bos_token is not None and text.startswith(tokenizer.bos_token)
    return list(tokenizer(text, add_special_tokens=not has_bos)["input_ids"])


def _load_policy(ref: str, dtype: str, device: str, trust_remote_code: bool = False) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dogerm_eval.models import needs_remote_code, remote_code_error

    name, revision = split_ref(ref)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, revision=revision, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(name, revision=revision, dtype=dtype,
                                                     trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        if needs_remote_code(exc) and not trust_remote_code:
            raise remote_code_error(repr(ref), "policy") from exc
        raise ModelError(f"cannot load the policy {ref!r}: {exc}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model.to(device).eval()


def _transformers_sampler(
    ref: str, settings: GenerationSettings, dtype: str, fallback_template: str | None, trust_remote_code: bool = False
) -> Callable[[int | str, str], list[str]]:
    import torch
    from transformers import set_seed

    from dogerm_eval.truncation import fit_generation, model_window

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer, model = _load_policy(ref, dtype, device, trust_remote_code)
    window, _ = model_window(model.config, tokenizer)
    fitted: list[int | str] = []  # problems whose prompt or budget was cut: the first one warns, for all

    def sample(problem_id: int | str, user: str, prefix: str | None) -> list[str]:
        text = policy_prompt(tokenizer, user, settings, fallback_template, prefix)
        ids = encode_prompt(tokenizer, text)
        prompt, max_new_tokens = fit_generation(ids, settings.max_new_tokens, window, f"problem {problem_id}",
                                                quiet=bool(fitted))
        if (len(prompt), max_new_tokens) != (len(ids), settings.max_new_tokens):
            fitted.append(problem_id)
        ids = torch.tensor([prompt])
        set_seed(problem_seed(settings.seed, problem_id))
        with torch.inference_mode():
            output = model.generate(
                input_ids=ids.to(device), attention_mask=torch.ones_like(ids).to(device),
                do_sample=settings.temperature > 0, temperature=settings.temperature or None, top_p=settings.top_p,
                max_new_tokens=max_new_tokens, num_return_sequences=settings.samples,
                pad_token_id=tokenizer.pad_token_id, stop_strings=settings.stop or None, tokenizer=tokenizer,
            )
        new_tokens = output[:, ids.shape[1] :]
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [cut_at_stop(t, settings.stop) for t in texts]

    return sample


def _vllm_generate(
    ref: str, settings: GenerationSettings, todo: Sequence[tuple[int | str, str, str | None]],
    fallback_template: str | None,
    write: Callable[[int | str, str, list[str]], None], trust_remote_code: bool = False,
) -> None:
    from vllm import LLM, SamplingParams  # optional extra

    name, revision = split_ref(ref)
    llm = LLM(name, revision=revision, seed=settings.seed, trust_remote_code=trust_remote_code)
    tokenizer = llm.get_tokenizer()
    for start in tqdm(range(0, len(todo), VLLM_CHUNK), desc="generating", unit="chunk"):
        chunk = todo[start : start + VLLM_CHUNK]
        prompts = [
            {"prompt_token_ids": encode_prompt(tokenizer, policy_prompt(tokenizer, user, settings, fallback_template,
                                                                        prefix))}
            for _, user, prefix in chunk
        ]
        params = [
            SamplingParams(
                n=settings.samples, temperature=settings.temperature, top_p=settings.top_p,
                max_tokens=settings.max_new_tokens, stop=settings.stop or None, seed=problem_seed(settings.seed, pid),
            )
            for pid, _, _ in chunk
        ]
        for (pid, user, _), output in zip(chunk, llm.generate(prompts, params)):
            write(pid, user, [o.text for o in output.outputs])


def _pick_backend(backend: Backend) -> str:
    if backend != "auto":
        return backend
    try:
        import torch
        import vllm  # noqa: F401
    except ImportError:
        return "transformers"
    return "vllm" if torch.cuda.is_available() else "transformers"


def generate_candidates(
    problems: Iterable[tuple[int | str, str] | tuple[int | str, str, str]],
    settings: GenerationSettings,
    out: Path,
    dtype: str = "auto",
    fallback_template: str | None = None,
    backend: Backend = "auto",
    trust_remote_code: bool = False,
) -> int:
    """Sample `settings.samples` candidates per problem into `out` (appending; done problems skipped).

    A problem is ``(id, user turn)``, or ``(id, user turn, response prefix)`` for a prefix of its own. Returns how
    many problems were generated in this call. A file written with other settings is refused.
    """
    chosen = _pick_backend(backend)
    settings = settings.model_copy(update={"backend": chosen})
    record_settings = settings.model_dump()
    done: set[int | str] = set()
    if out.is_file():
        lines = _complete_lines(out)
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = CandidateRecord.model_validate_json(line)
            except ValidationError as exc:
                raise DataError(f"{out}:{number}: not a candidate record; use another --out: {exc}") from exc
            if record.generation != record_settings:
                raise BenchmarkError(
                    f"{out} was generated with other settings ({record.generation}); use another --out"
                )
            done.add(record.problem_id)
    todo = [(p[0], p[1], p[2] if len(p) > 2 else None) for p in problems if p[0] not in done]
    if done:
        LOG.info("%s: %d problems already generated, %d to go", out, len(done), len(todo))
    if not todo:
        return 0
    check_generator(settings.policy, "judge" if settings.benchmark == "judge" else "policy", fallback_template,
                    trust_remote_code)  # before any weights load
    with ExitStack() as stack:
        opened: list[Any] = []

        def write(pid: int | str, user: str, candidates: list[str]) -> None:
            if not opened:  # the file appears with its first record: a failed start leaves none
                out.parent.mkdir(parents=True, exist_ok=True)
                opened.append(stack.enter_context(out.open("a", encoding="utf-8")))
            record = CandidateRecord(problem_id=pid, prompt=user, candidates=candidates, generation=record_settings)
            opened[0].write(record.model_dump_json() + "\n")
            opened[0].flush()
            os.fsync(opened[0].fileno())

        if chosen == "vllm":
            _vllm_generate(settings.policy, settings, todo, fallback_template, write, trust_remote_code)
        else:
            sample = _transformers_sampler(settings.policy, settings, dtype, fallback_template, trust_remote_code)
            for pid, user, prefix in tqdm(todo, desc="generating", unit="problem"):
                write(pid, user, sample(pid, user, prefix))
    return len(todo)


def record_fingerprint(path: Path) -> dict[str, Any]:
    """The candidate file's path, sha256 and generation settings (of its first record), for result files."""
    digest = sha256_file(path)
    first = json.loads(Path(path).read_text(encoding="utf-8").split("\n", 1)[0])
    return {"path": str(Path(path).resolve()), "sha256": digest, "generation": first.get("generation", {})}
