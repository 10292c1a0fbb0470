"""The miniature DogeRM world at size "test": determinism, loadability, vocabularies, schemas, caching."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from dogerm_eval.demo import corpus, mathpath
from dogerm_eval.demo import data as demo_data
from dogerm_eval.demo import spec as demo_spec
from dogerm_eval.demo import training as demo_training
from dogerm_eval.demo import world as world_module
from dogerm_eval.demo.world import World, WorldBuildError, build_world
from dogerm_eval.demo.world import world_key
from dogerm_mergekit.files import sha256_file

TEST_WORLD_DIGEST = "7bdf84eedeeb"
"""The seed-0 test world's weights on the pinned math path (``mathpath``): the same on every x86-64 CPU with AVX2.
A machine that builds other bytes fails here, and would print other demo figures than the README's."""

REWARDBENCH_COLUMNS = ["prompt", "chosen", "chosen_model", "rejected", "rejected_model", "subset", "id"]


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def world(cache_root: Path) -> World:
    return build_world(cache_root, seed=0, size="test")


def _hashes(w: World) -> dict[str, str]:
    folders = [w.base, *w.domains.values(), w.rm]
    return {folder.name: sha256_file(folder / "model.safetensors") for folder in folders}


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_world_layout_and_metadata(world: World, cache_root: Path) -> None:
    assert world.root == cache_root / f"world-v{world_module.WORLD_VERSION}-seed0-test"
    assert world.root.name == world_key(0, "test")
    assert (world.seed, world.size) == (0, "test")
    assert world.metadata["sha256"] == _hashes(world)
    assert set(_hashes(world)) == {"base", "domain", "domain-strings", "rm"}
    # One domain LM per domain subset, named as the eval subsets; `domain` stays the arithmetic one.
    assert world.domains == {"arithmetic": world.root / "domain", "strings": world.root / "domain-strings"}
    assert world.domain == world.domains["arithmetic"]
    verdicts = world.metadata["verdict_accuracy"]
    assert set(verdicts) == {f"{m}_{s}" for m in ("base", "domain", "domain-strings")
                             for s in ("general", "arithmetic", "strings")}
    assert all(0.0 <= v <= 1.0 for v in verdicts.values())
    seconds = world.metadata["build_seconds"]
    assert set(seconds["stages"]) == {"data", "pretrain", "parallel", "checks"}
    assert set(seconds["jobs"]) == {"base", "rm", "arithmetic", "strings", "policy", "checks"}
    assert world.metadata["digest"] == world_module.world_digest(_hashes(world)) == TEST_WORLD_DIGEST
    math = world.metadata["math"]
    assert math["env"] == mathpath.PINNED and math["cpu_capability"] == "AVX2" and math["pinned"] is True
    assert (world.metadata["spec"]["threads"], world.metadata["spec"]["solo_threads"]) == (1, 2)
    assert sum(seconds["stages"].values()) <= seconds["wall"] + 1e-6
    # Nothing but the finished world is left in the cache folder (the temp build folder was renamed).
    assert sorted(p.name for p in cache_root.iterdir()) == [world.root.name]


def test_same_seed_same_weights_other_seed_differs(world: World, tmp_path: Path) -> None:
    again = build_world(tmp_path / "a", seed=0, size="test")
    assert _hashes(again) == _hashes(world)
    assert again.rewardbench_data.read_bytes() == world.rewardbench_data.read_bytes()
    assert again.candidates.read_bytes() == world.candidates.read_bytes()
    other = build_world(tmp_path / "b", seed=1, size="test")
    assert all(_hashes(other)[k] != v for k, v in _hashes(world).items())


def test_side_by_side_training_gives_the_sequential_weights(world: World, tmp_path: Path) -> None:
    """The fixture world trains its RM, domain LMs and policy one after the other in one worker process
    (workers = 1); two worker processes must give byte-identical models and candidates (every job seeds itself)."""
    spec = dataclasses.replace(demo_spec.SPECS["test"], workers=2)
    parallel = build_world(tmp_path, seed=0, size="test", spec=spec)
    assert _hashes(parallel) == _hashes(world)
    assert parallel.candidates.read_bytes() == world.candidates.read_bytes()
    assert parallel.metadata["verdict_accuracy"] == world.metadata["verdict_accuracy"]


def _build_in_a_process(root: Path, env: dict[str, str]) -> dict:
    """The test world built by a fresh Python whose environment carries ``env`` (as a user's shell might)."""
    code = ("import json, sys; from dogerm_eval.demo.world import build_world; "
            "print(json.dumps(build_world(sys.argv[1], seed=0, size='test').metadata))")
    result = subprocess.run([sys.executable, "-c", code, str(root)], env=os.environ | env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("env", [
    {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "AVX2,STRICT"},
    # Another code path for every library the demo pins: AVX-512 (or the widest this CPU has) ATen kernels, MKL's
    # own choice of branch, OpenMP threads that spin, two threads.
    {"OMP_NUM_THREADS": "2", "ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AUTO", "ONEDNN_MAX_CPU_ISA": "ALL",
     "OMP_WAIT_POLICY": "ACTIVE", "MKL_DYNAMIC": "TRUE"},
], ids=["one-thread-default-kernels", "two-threads-avx512-auto"])
def test_the_weights_do_not_depend_on_the_callers_math_settings(world: World, tmp_path: Path,
                                                                env: dict[str, str]) -> None:
    """The trainings run in processes that pin their math path whatever the caller's environment says: the same
    bytes, and the pinned settings recorded."""
    metadata = _build_in_a_process(tmp_path, env)
    assert metadata["sha256"] == world.metadata["sha256"]
    assert metadata["digest"] == world.metadata["digest"] == TEST_WORLD_DIGEST
    assert metadata["math"]["env"] == mathpath.PINNED and metadata["math"]["pinned"] is True


def test_pinned_environ_is_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MKL_CBWR", "AUTO")
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    with mathpath.pinned_environ():
        assert {k: os.environ[k] for k in mathpath.PINNED} == mathpath.PINNED
    assert os.environ["MKL_CBWR"] == "AUTO" and "OMP_WAIT_POLICY" not in os.environ


def test_deviation_names_what_is_not_pinned() -> None:
    pinned = {"env": dict(mathpath.PINNED), "cpu_capability": "AVX2", "torch": "x"}
    assert mathpath.deviation(pinned) is None
    assert "MKL_CBWR" in mathpath.deviation(pinned | {"env": mathpath.PINNED | {"MKL_CBWR": None}})
    assert "AVX512 kernels" in mathpath.deviation(pinned | {"cpu_capability": "AVX512"})


def test_cache_hit_does_not_rebuild(world: World, cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mtimes = {p: p.stat().st_mtime_ns for p in world.root.rglob("*")}

    def fail(*args: object) -> None:
        raise AssertionError("cache hit must not rebuild")

    monkeypatch.setattr(world_module, "_build_into", fail)
    hit = build_world(cache_root, seed=0, size="test")
    assert hit == world
    assert {p: p.stat().st_mtime_ns for p in world.root.rglob("*")} == mtimes


def test_default_root_from_env(world: World, cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOGERM_CACHE", str(cache_root))
    monkeypatch.setattr(world_module, "_build_into", lambda *a: pytest.fail("must be a cache hit"))
    assert build_world(seed=0, size="test").root == world.root


def test_unknown_size_raises(tmp_path: Path) -> None:
    with pytest.raises(WorldBuildError, match="unknown world size"):
        build_world(tmp_path, size="huge")  # type: ignore[arg-type]
    assert not any(tmp_path.iterdir())


def test_models_load_with_auto_classes(world: World) -> None:
    base = AutoModelForCausalLM.from_pretrained(world.base)
    domain = AutoModelForCausalLM.from_pretrained(world.domain)
    rm = AutoModelForSequenceClassification.from_pretrained(world.rm)
    assert type(base).__name__ == type(domain).__name__ == "LlamaForCausalLM"
    assert type(rm).__name__ == "LlamaForSequenceClassification"
    assert rm.config.num_labels == 1
    rm_tok = AutoTokenizer.from_pretrained(world.rm)
    assert rm.config.pad_token_id == rm_tok.pad_token_id == rm_tok.eos_token_id
    # RM and domain are fine-tuned from the same base: same backbone tensor names and shapes.
    rm_sd, lm_sd = rm.state_dict(), domain.state_dict()
    assert set(rm_sd) - set(lm_sd) == {"score.weight"}
    assert set(lm_sd) - set(rm_sd) == {"lm_head.weight"}
    assert rm_sd["score.weight"].shape == (1, rm.config.hidden_size)
    for k in rm_sd.keys() & lm_sd.keys():
        if k != "model.embed_tokens.weight":
            assert rm_sd[k].shape == lm_sd[k].shape, k
    # A scored batch: finite, one score per row.
    ids = rm_tok([demo_data.chat(rm_tok, "what colour is a banana ?", "a banana is yellow .")], return_tensors="pt")
    with torch.no_grad():
        assert torch.isfinite(rm(**ids).logits).all()


def test_tokenizers_chat_template_and_domain_pad(world: World) -> None:
    rm_tok = AutoTokenizer.from_pretrained(world.rm)
    domain_tok = AutoTokenizer.from_pretrained(world.domain)
    base_tok = AutoTokenizer.from_pretrained(world.base)
    assert rm_tok.get_vocab() == base_tok.get_vocab()
    assert domain_tok.convert_tokens_to_ids("[PAD]") == len(rm_tok) == domain_tok.pad_token_id
    assert len(domain_tok) == len(rm_tok) + 1
    assert {t: i for t, i in domain_tok.get_vocab().items() if t != "[PAD]"} == rm_tok.get_vocab()
    domain = AutoModelForCausalLM.from_pretrained(world.domain)
    rm = AutoModelForSequenceClassification.from_pretrained(world.rm)
    assert domain.model.embed_tokens.weight.shape[0] == len(rm_tok) + 1
    assert rm.model.embed_tokens.weight.shape[0] == len(rm_tok)
    for tok in (rm_tok, domain_tok, base_tok):
        text = tok.apply_chat_template(
            [{"role": "user", "content": "what is 2 + 3 ?"}, {"role": "assistant", "content": "2 + 3 = 5 ."}],
            tokenize=False,
        )
        assert text == "<s>[INST] what is 2 + 3 ? [/INST] 2 + 3 = 5 . </s>"
        ids = tok(text)["input_ids"]
        assert tok.unk_token_id not in ids
        assert ids.count(tok.bos_token_id) == 1
        assert tok.decode(ids, skip_special_tokens=True) == "what is 2 + 3 ? 2 + 3 = 5 ."
    system = rm_tok.apply_chat_template(
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert system == "<s>[INST] <<SYS>> be brief <</SYS>> hi [/INST]"


def test_rewardbench_schema_and_content(world: World) -> None:
    rows = _rows(world.rewardbench_data)
    assert all(list(r) == REWARDBENCH_COLUMNS for r in rows)
    assert [r["id"] for r in rows] == list(range(len(rows)))
    subsets = {r["subset"] for r in rows}
    assert subsets == {"general", "arithmetic", "strings"}
    strings = [r for r in rows if r["subset"] == "strings"]
    assert len(strings) == world.metadata["spec"]["strings_eval_pairs"] == len({r["prompt"] for r in strings})
    for r in strings:  # independent check: the chosen answer is the list reversed, the rejected one is not
        items = re.fullmatch(r"what is the last first of (.*) \?", r["prompt"]).group(1).split()
        assert 3 <= len(items) == len(set(items)) <= 5
        assert _final_words(r["chosen"]) == items[::-1] != _final_words(r["rejected"])
        assert r["rejected_model"] in {"swap", "wrong-word", "copy"}
        if r["rejected_model"] == "copy":
            assert _final_words(r["rejected"]) == items
    arithmetic = [r for r in rows if r["subset"] == "arithmetic"]
    assert len(arithmetic) == world.metadata["spec"]["arithmetic_eval_pairs"]
    for r in arithmetic:
        assert r["chosen"] != r["rejected"]
        assert r["rejected_model"] in {"off-by-one", "wrong-operation"}
        # Independent check: evaluate the question with Python and compare with each final answer.
        truth = _evaluate(r["prompt"])
        assert _final(r["chosen"]) == truth != _final(r["rejected"])
    general = [r for r in rows if r["subset"] == "general" and r["rejected_model"] == "distractor"]
    known = {(f.question, f.answer()) for f in corpus.all_facts()}
    assert all((r["prompt"], r["chosen"]) in known and (r["prompt"], r["rejected"]) not in known for r in general)
    # The rest of `general`: RM_ONLY_HELDOUT pairs per RM-only fact, questions no pretraining fact asks.
    rm_only = [r for r in rows if r["subset"] == "general" and r["rejected_model"] != "distractor"]
    assert {r["rejected_model"] for r in rm_only} == {demo_data.RM_ONLY}
    assert len(rm_only) == 33 * demo_data.RM_ONLY_HELDOUT
    asked = {f.question for f in corpus.all_facts()}
    assert not any(r["prompt"] in asked for r in rm_only)
    for question in {r["prompt"] for r in rm_only}:  # one correct answer per fact, distinct wrong ones
        mine = [r for r in rm_only if r["prompt"] == question]
        assert len({r["chosen"] for r in mine}) == 1 and len({r["rejected"] for r in mine}) == len(mine)


def test_general_eval_facts_are_held_out_of_rm_training(world: World) -> None:
    data = demo_data.make_datasets(0, demo_spec.SPECS["test"], demo_data.make_tokenizer())
    rm_questions = {q for q, _, _ in data.rm_pairs}
    eval_rows = _rows(world.rewardbench_data)
    facts = [r for r in eval_rows if r["rejected_model"] != demo_data.RM_ONLY]
    assert not rm_questions & {r["prompt"] for r in facts}
    assert not any("+" in q or "-" in q for q in rm_questions)
    # RM-only facts: the RM trains on their questions but never on an evaluated pair; no other text states them.
    rm_only = [r for r in eval_rows if r["rejected_model"] == demo_data.RM_ONLY]
    assert {r["prompt"] for r in rm_only} <= rm_questions
    assert not {(r["prompt"], r["chosen"], r["rejected"]) for r in rm_only} & set(data.rm_pairs)
    sft_text = "\n".join(text for examples in data.sft.values() for _, text in examples)
    other_text = "\n".join(data.pretrain) + sft_text
    assert not any(r["chosen"] in other_text or f"[INST] {r['prompt']} [/INST]" in other_text for r in rm_only)
    held = {r["prompt"] for r in eval_rows if r["subset"] in ("arithmetic", "strings")}
    held |= {p.question for p in data.gsm8k}
    assert not any(f"[INST] {q} [/INST]" in sft_text for q in held)
    # The RM never sees a domain pair.
    assert not any("last first" in q for q, _, _ in data.rm_pairs)


def test_sft_mixture() -> None:
    spec = demo_spec.SPECS["demo"]
    tokenizer = demo_data.make_tokenizer()
    data = demo_data.make_datasets(0, spec, tokenizer)
    sft = data.sft["arithmetic"]
    assert all(text.startswith(context) for context, text in sft)
    replay = [t for c, t in sft if c == ""]
    judged = [t for c, t in sft if c and t.endswith((" true", " false"))]
    solutions = [t for c, t in sft if t.endswith(" </s>") and c]
    assert len(replay) + len(judged) + len(solutions) == len(sft)
    assert abs(len(replay) / len(sft) - spec.sft_replay_fraction) < 0.02
    assert abs(len(judged) / len(sft) - spec.sft_judged_fraction) < 0.02
    assert not any("+" in t or " - " in t for t in replay)  # replay is general text only
    assert all("[INST] what is" in t and ("+" in t or " - " in t) for t in judged + solutions)
    # Judged answers: verdict "true" exactly when every step and the final answer are correct.
    for text in judged[:200]:
        question = re.search(r"\[INST\] (.*?) \[/INST\]", text).group(1)
        final = _final(text)
        assert text.endswith(" true") == (final == _evaluate(question))
    # The strings domain: the same mixture of the same recipe, on reversing word lists.
    strings = data.sft["strings"]
    assert len(strings) == spec.strings_sft_steps * spec.batch_size // 4 + 1
    replay = [t for c, t in strings if c == ""]
    judged = [t for c, t in strings if c and t.endswith((" true", " false"))]
    assert abs(len(replay) / len(strings) - spec.sft_replay_fraction) < 0.02
    assert abs(len(judged) / len(strings) - spec.sft_judged_fraction) < 0.02
    assert not any("last first" in t for t in replay)
    for text in judged[:200]:
        items = re.search(r"\[INST\] what is the last first of (.*?) \? \[/INST\]", text).group(1).split()
        assert text.endswith(" true") == (_final_words(text) == items[::-1])


def test_gsm8k_and_candidates_schema(world: World) -> None:
    gsm8k = _rows(world.gsm8k_data)
    assert len(gsm8k) == world.metadata["spec"]["gsm8k_problems"]
    for r in gsm8k:
        assert list(r) == ["question", "answer"]
        assert r["answer"].rsplit("\n#### ", 1)[1] == str(_evaluate(r["question"]))
    candidates = _rows(world.candidates)
    assert [c["problem_id"] for c in candidates] == list(range(len(gsm8k)))
    for c, g in zip(candidates, gsm8k):
        assert list(c) == ["problem_id", "prompt", "candidates", "generation"]
        assert c["prompt"] == g["question"]
        assert len(c["candidates"]) == c["generation"]["num_candidates"] == 8
        assert all(isinstance(x, str) for x in c["candidates"])
        assert c["generation"]["temperature"] == 1.0
        assert c["generation"]["model"].startswith("policy")  # not the domain LM the RM is merged with
        assert c["generation"]["stop"] == ["</s>", corpus.TRUE, corpus.FALSE]
        assert not any(x.endswith((" true", " false")) for x in c["candidates"])


def _final_words(response: str) -> list[str]:
    return re.findall(r"the answer is ([a-z ]+?) \.", response)[-1].split()


def _final(response: str) -> int:
    return int(re.findall(r"the answer is (\d+)", response)[-1])


def _evaluate(question: str) -> int:
    """Left-to-right value of ``what is a (+|-) b ... ?`` (independent of the corpus module)."""
    words = re.fullmatch(r"what is (.*) \?", question).group(1).split()
    value = int(words[0])
    for op, n in zip(words[1::2], words[2::2]):
        value = value + int(n) if op == "+" else value - int(n)
    return value


def test_diagnostics_per_lambda(world: World) -> None:
    from dogerm_eval.demo import diagnostics

    rm = AutoModelForSequenceClassification.from_pretrained(world.rm).eval()
    domain = AutoModelForCausalLM.from_pretrained(world.domain).eval()
    tokenizer = AutoTokenizer.from_pretrained(world.rm)
    rows = _rows(world.rewardbench_data)
    from dogerm_mergekit.inmemory import InMemoryMerger

    merger = InMemoryMerger(str(world.rm), str(world.domain))
    table = diagnostics.diagnose(rm, domain, tokenizer, rows, [0.0, 0.5, 1.0], merger.state_dict)
    assert [r["lambda"] for r in table] == [0.0, 0.5, 1.0]
    for r in table:
        assert set(r) == {"lambda", "general", "arithmetic", "strings", "rm-only", "margin_corr", "probe"}
        assert all(0.0 <= r[k] <= 1.0 for k in ("general", "arithmetic", "strings", "rm-only", "probe"))
        assert -1.0 <= r["margin_corr"] <= 1.0
    # lambda = 0 is the RM itself: same pair accuracy as scoring the rows directly.
    for subset in ("general", "arithmetic", "strings", "rm-only"):
        sub = [r for r in rows if subset in (r["subset"], r["rejected_model"])]
        texts = [demo_data.chat(tokenizer, r["prompt"], r[side]) for side in ("chosen", "rejected") for r in sub]
        with torch.no_grad():
            scores = [rm(**tokenizer(t, return_tensors="pt")).logits.item() for t in texts]
        pairs = list(zip(scores[: len(sub)], scores[len(sub) :]))
        expected = sum(c > w for c, w in pairs) / len(sub)
        near_ties = sum(abs(c - w) < 1e-4 for c, w in pairs) / len(sub)  # batched vs one-by-one float noise
        assert abs(table[0][subset] - expected) <= near_ties + 1e-6
    summary = diagnostics.lm_diagnostics(domain, tokenizer, rows)
    assert set(summary) == {"verdict_arithmetic", "verdict_general", "verdict_strings", "logprob_arithmetic",
                           "probe_arithmetic"}
    assert all(0.0 <= v <= 1.0 for v in summary.values())


def test_weight_vs_output_path_and_lm_path_verdicts(world: World) -> None:
    from dogerm_eval.demo import diagnostics
    from dogerm_mergekit.inmemory import InMemoryMerger

    rm = AutoModelForSequenceClassification.from_pretrained(world.rm).eval()
    base = AutoModelForCausalLM.from_pretrained(world.base).eval()
    domain = AutoModelForCausalLM.from_pretrained(world.domain).eval()
    tokenizer = AutoTokenizer.from_pretrained(world.rm)
    rows = _rows(world.rewardbench_data)
    merger = InMemoryMerger(str(world.rm), str(world.domain))
    table = diagnostics.weight_vs_output_path(rm, tokenizer, rows, [0.0, 0.5, 1.0], merger.state_dict)
    assert [r["lambda"] for r in table] == [0.0, 0.5, 1.0]
    # Independent reference: each endpoint scored text by text, margins interpolated in float64.
    merged = AutoModelForSequenceClassification.from_pretrained(world.rm).eval()
    for subset in ("general", "arithmetic"):
        sub = [r for r in rows if r["subset"] == subset]
        texts = [demo_data.chat(tokenizer, r["prompt"], r[side]) for side in ("chosen", "rejected") for r in sub]
        margins = {}
        for lam in (0.0, 0.5, 1.0):
            merged.load_state_dict(merger.state_dict(lam))
            with torch.no_grad():
                scores = [merged(**tokenizer(t, return_tensors="pt")).logits.double().item() for t in texts]
            margins[lam] = [c - w for c, w in zip(scores[: len(sub)], scores[len(sub) :])]
        ensemble = [0.5 * a + 0.5 * b for a, b in zip(margins[0.0], margins[1.0])]
        checks = [(table[1], "outputs", ensemble)] + [(r, "weights", margins[r["lambda"]]) for r in table]
        for row, key, values in checks:
            expected = sum(m > 0 for m in values) / len(sub)
            near_ties = sum(abs(m) < 1e-4 for m in values) / len(sub)  # batched vs one-by-one float noise
            assert abs(row[f"{key}/{subset}"] - expected) <= near_ties + 1e-6, (key, row["lambda"], subset)
        # At the endpoints the ensemble is the model itself.
        assert table[0][f"outputs/{subset}"] == table[0][f"weights/{subset}"]
        assert table[2][f"outputs/{subset}"] == table[2][f"weights/{subset}"]

    path = diagnostics.lm_path_verdicts(base, domain, tokenizer, rows, [0.0, 1.0])
    assert [p["alpha"] for p in path] == [0.0, 1.0]
    for subset in ("general", "arithmetic"):
        sub = [r for r in rows if r["subset"] == subset]
        # alpha = 0 is the base; alpha = 1 the domain LM with its [PAD] row dropped (true/false logits unchanged).
        assert path[0][subset] == demo_training.verdict_accuracy(base, tokenizer, sub)
        assert abs(path[1][subset] - demo_training.verdict_accuracy(domain, tokenizer, sub)) <= 1 / len(sub)


def test_graded_arithmetic_in_pretraining_only() -> None:
    spec = demo_spec.SPECS["demo"]
    data = demo_data.make_datasets(0, spec, demo_data.make_tokenizer())
    graded = [t for t in data.pretrain if t.endswith((f" {corpus.GOOD}", f" {corpus.BAD}")) and "[INST] what is" in t
              and ("+" in t or " - " in t)]
    general = [t for t in data.pretrain if "+" not in t and " - " not in t]
    assert len(graded) == round(spec.graded_ratio * len(general))
    for text in graded[:300]:  # the mark is "good" exactly when the final answer is right
        assert text.endswith(f" {corpus.GOOD}") == (_final(text) == _evaluate(re.search(r"\[INST\] (.*?) \[/INST\]", text).group(1)))
    held = {r["prompt"] for r in data.rewardbench if r["subset"] == "arithmetic"} | {p.question for p in data.gsm8k}
    assert not any(re.search(r"\[INST\] (.*?) \[/INST\]", t).group(1) in held for t in graded)
    marks = (f". {corpus.GOOD}", f". {corpus.BAD}")
    assert not any(t.endswith(marks) for examples in data.sft.values() for _, t in examples)
    assert not any(c.endswith(marks) or r.endswith(marks) for _, c, r in data.rm_pairs)


@pytest.mark.parametrize("torch_first", [False, True])
def test_dogerm_demo_pins_its_process_only_before_torch_loads(torch_first: bool) -> None:
    """The command pins its own process's math path when torch is not loaded yet (as a console script); importing the
    module changes nothing, and a Python that already loaded torch keeps its environment (the demo warns instead)."""
    code = ("import os, sys\n" + ("import torch\n" if torch_first else "")
            + "from click.testing import CliRunner\nfrom dogerm_eval.demo.cli import main\n"
            "before, loaded = os.environ.get('MKL_CBWR'), 'torch' in sys.modules\n"
            "CliRunner().invoke(main, ['--seeds', 'x'])\nprint(before, os.environ.get('MKL_CBWR'), loaded)")
    env = {k: v for k, v in os.environ.items() if k not in mathpath.PINNED}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    expected = "None None True" if torch_first else "None COMPATIBLE False"
    assert done.stdout.split() == expected.split()
