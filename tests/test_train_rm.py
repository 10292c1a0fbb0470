"""dogerm-train-rm: a tiny base LM trained into a reward model (full and LoRA) on UltraFeedback-schema pairs,
checked against an independent Bradley-Terry computation, merged with a domain LM by the real mergekit-yaml, and its
refusals."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed

from dogerm_mergekit.errors import DogeRMConfigError
from dogerm_mergekit import testing as tiny
from dogerm_mergekit.preferences import load_preferences
from dogerm_mergekit.train_rm import main

SYSTEM = "Be brief."
TRAIN = ["--max-steps", "20", "--eval-fraction", "0", "--learning_rate", "1e-3", "--bf16", "false",
         "--system-prompt", SYSTEM, "--logging_steps", "1"]
QUESTIONS = ["Please explain why the sky is blue.", "Solve 12 + 30.", "Write a function to add two numbers.",
             "What does a reward model do?", "Name a quick brown animal.", "Why is honesty good?"]


def _row(i: int, question: str) -> dict:
    """One row in argilla/ultrafeedback-binarized-preferences-cleaned's schema."""
    user = {"role": "user", "content": question}
    return {"source": "evol_instruct", "prompt": question,
            "chosen": [user, {"role": "assistant", "content": f"A helpful, honest answer number {i}."}],
            "chosen-rating": 5.0, "chosen-model": "gpt-4",
            "rejected": [user, {"role": "assistant", "content": "lazy dog lazy dog"}],
            "rejected-rating": 1.0, "rejected-model": "llama-2-7b-chat"}


ROWS = [_row(i, q) for i, q in enumerate(QUESTIONS * 3)]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train-rm")
    data = root / "prefs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return {"root": root, "base": tiny.build_tiny_lm(root / "base"), "data": data}


def _train(inputs: dict[str, Path], name: str, *extra: str) -> Path:
    out = inputs["root"] / name
    if not out.exists():
        result = CliRunner().invoke(main, [str(inputs["base"]), "--data", str(inputs["data"]), "--output-dir",
                                           str(out), *TRAIN, *extra])
        assert result.exit_code == 0, result.output
    return out


def _fresh_model(base: Path) -> torch.nn.Module:
    """The model training starts from: the base with the score head the trainer's seed (42) initialises."""
    set_seed(42)
    return AutoModelForSequenceClassification.from_pretrained(base, num_labels=1).eval()


def _bt_loss(model: torch.nn.Module, tokenizer_dir: Path) -> tuple[float, float]:
    """Mean -log sigmoid(r_chosen - r_rejected) and pair accuracy, rendered and scored here, one text at a time."""
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)

    def reward(messages: list[dict]) -> float:
        text = tok.apply_chat_template([{"role": "system", "content": SYSTEM}, *messages], tokenize=False)
        ids = torch.tensor([tok(text)["input_ids"]])
        with torch.inference_mode():
            return float(model(input_ids=ids).logits[0, 0])

    margins = torch.tensor([reward(r["chosen"]) - reward(r["rejected"]) for r in ROWS], dtype=torch.float64)
    return float(-torch.nn.functional.logsigmoid(margins).mean()), float((margins > 0).double().mean())


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_training_lowers_the_loss_and_saves_a_plain_reward_model(inputs: dict[str, Path], mode: str) -> None:
    out = _train(inputs, mode, *(["--lora", "--lora-target-modules", "all-linear"] if mode == "lora" else []))
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert type(model).__name__ == "LlamaForSequenceClassification" and model.config.num_labels == 1
    fresh = _fresh_model(inputs["base"])
    before, _ = _bt_loss(fresh, inputs["base"])
    after, accuracy = _bt_loss(model, out)
    assert after < 0.5 * before and accuracy == 1.0
    log = [entry["loss"] for entry in json.loads((out / "trainer_log.json").read_text()) if "loss" in entry]
    assert log[-1] < log[0]

    weights = load_file(out / "model.safetensors")
    assert not any("lora" in key or "modules_to_save" in key or "base_layer" in key for key in weights)
    base = load_file(inputs["base"] / "model.safetensors")
    assert set(weights) == (set(base) - {"lm_head.weight"}) | {"score.weight"}
    assert not torch.allclose(weights["score.weight"], fresh.score.weight)  # the trained head, not a fresh one
    assert not torch.equal(weights["model.layers.0.self_attn.q_proj.weight"],
                           base["model.layers.0.self_attn.q_proj.weight"])  # the backbone learned (LoRA: merged)

    record = model.config.dogerm_train_rm
    assert record["base_model"] == str(inputs["base"].resolve())
    assert record["data_revision"] == "sha256:" + hashlib.sha256(inputs["data"].read_bytes()).hexdigest()
    assert record["pairs"] == len(ROWS) and record["system_prompt"] == SYSTEM
    assert record["settings"]["max_steps"] == 20 and record["settings"]["optim"] == "adamw_torch"
    assert (record["lora"] is None) == (mode == "full")
    base_template = AutoTokenizer.from_pretrained(inputs["base"]).chat_template
    assert AutoTokenizer.from_pretrained(out).chat_template == base_template


def test_the_trained_rm_merges_with_a_domain_model_through_mergekit_yaml(inputs: dict[str, Path]) -> None:
    rm = _train(inputs, "full")
    domain = tiny.build_tiny_lm(inputs["root"] / "domain", noise_from=inputs["base"])
    config = inputs["root"] / "dogerm.yml"
    config.write_text(yaml.safe_dump({"merge_method": "dogerm", "base_model": str(rm), "models": [
        {"model": str(rm)}, {"model": str(domain), "parameters": {"lambda": 0.3}}]}))
    merged = inputs["root"] / "merged"
    done = subprocess.run([str(Path(sys.executable).parent / "mergekit-yaml"), str(config), str(merged)],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out, r, d = (load_file(p / "model.safetensors") for p in (merged, rm, domain))
    assert torch.equal(out["score.weight"], r["score.weight"])
    key = "model.layers.1.mlp.up_proj.weight"
    expected = 0.7 * r[key].double() + 0.3 * d[key].double()
    assert torch.allclose(out[key].double(), expected, atol=1e-6)
    assert AutoModelForSequenceClassification.from_pretrained(merged).config.num_labels == 1


def test_json_array_parquet_and_jsonl_give_the_same_pairs(inputs: dict[str, Path]) -> None:
    array = inputs["root"] / "prefs.json"
    array.write_text(json.dumps(ROWS))
    parquet = inputs["root"] / "prefs.parquet"
    pd.DataFrame(ROWS).to_parquet(parquet)
    loaded = [load_preferences(str(p)).rows for p in (inputs["data"], array, parquet)]
    for rows in loaded:
        assert [r["chosen"] for r in rows] == [r["chosen"] for r in ROWS]
        assert [r["rejected"][-1]["content"] for r in rows] == ["lazy dog lazy dog"] * len(ROWS)


def _refused(inputs: dict[str, Path], base: Path, data: Path, *extra: str) -> str:
    out = inputs["root"] / "refused"
    result = CliRunner().invoke(main, [str(base), "--data", str(data), "--output-dir", str(out), *extra])
    assert result.exit_code != 0 and not out.exists()
    lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(lines) == 1, result.output
    return lines[0]


def test_refusals_come_before_training_in_one_line(inputs: dict[str, Path]) -> None:
    root = inputs["root"]
    rm = tiny.build_tiny_rm(root / "an-rm")
    assert "already a reward model (LlamaForSequenceClassification)" in _refused(inputs, rm, inputs["data"])

    no_rejected = root / "no-rejected.jsonl"
    no_rejected.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "rejected"}) + "\n" for r in ROWS))
    assert "no column rejected" in _refused(inputs, inputs["base"], no_rejected)

    bad_row = root / "bad-row.jsonl"
    bad_row.write_text("".join(json.dumps({**r, "chosen": "plain text"} if i == 1 else r) + "\n"
                               for i, r in enumerate(ROWS)))
    assert "row 1, column 'chosen'" in _refused(inputs, inputs["base"], bad_row)

    corrupt = root / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 not really parquet")
    assert f"cannot read {corrupt} as a parquet file (truncated or corrupt?)" in _refused(inputs, inputs["base"],
                                                                                          corrupt)

    raising = root / "raising.jinja"
    raising.write_text("{{ raise_exception('system messages are not supported') }}")
    message = _refused(inputs, inputs["base"], inputs["data"], "--chat-template", str(raising))
    assert "does not render row 0" in message and "system messages are not supported" in message

    silent = root / "silent.jinja"
    silent.write_text("{% for m in messages %}{{ m['role'] }}{% endfor %}")
    assert "drops the assistant answer" in _refused(inputs, inputs["base"], inputs["data"], "--chat-template",
                                                    str(silent))


def test_a_hub_dataset_is_read_at_the_revision_asked_and_its_commit_recorded(hub_client, hub_env,
                                                                            tmp_path: Path) -> None:
    repo = "argilla/ultrafeedback-binarized-preferences-cleaned"
    hub_client.create_repo(repo, repo_type="dataset")
    commits = []
    for version, rows in enumerate((ROWS[:4], ROWS[:6])):
        local = tmp_path / f"v{version}.parquet"
        pd.DataFrame(rows).to_parquet(local)
        hub_client.upload_file(path_or_fileobj=local, path_in_repo="data/train-00000-of-00001.parquet", repo_id=repo,
                               repo_type="dataset")
        commits.append(hub_env.refs(repo, repo_type="dataset")["main"])
    old = load_preferences(f"{repo}@{commits[0]}")
    assert (old.source, old.revision, len(old.rows)) == (repo, commits[0], 4)
    new = load_preferences(repo)
    assert (new.revision, len(new.rows)) == (commits[1], 6)


def test_a_hub_base_is_recorded_with_its_commit(inputs: dict[str, Path], hub_client, hub_env) -> None:
    from dogerm_mergekit.train_rm import resolve_base

    repo = "meta-llama/Tiny-Base"
    hub_client.create_repo(repo)
    hub_client.upload_folder(folder_path=inputs["base"], repo_id=repo)
    commit = hub_env.refs(repo)["main"]
    folder, record = resolve_base(f"{repo}@main")
    assert record == f"{repo}@{commit}" and (folder / "config.json").is_file()


def test_the_console_script_prints_its_result_and_no_warning_a_user_cannot_act_on(inputs):
    """transformers' load report of the swapped head, its gradient_checkpointing deprecation (TRL's default) and
    torch's pin-memory warning on a machine without an accelerator are gone; the one result line is there."""
    out = inputs["root"] / "quiet"
    script = Path(sys.executable).parent / "dogerm-train-rm"
    done = subprocess.run([str(script), str(inputs["base"]), "--data", str(inputs["data"]), "--output-dir", str(out),
                           "--max-steps", "2", "--eval-fraction", "0", "--bf16", "false"],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1] == f"{out}: reward model trained from {inputs['base']}"
    for noise in ("LOAD REPORT", "deprecated", "pin_memory", "Warning"):
        assert noise not in done.stderr, done.stderr[-3000:]


def test_the_recipe_reaches_the_trainer_under_the_names_it_reads(tmp_path):
    from dogerm_mergekit.train_rm import reward_config

    config = reward_config(tmp_path / "out", [], None, evaluate=False)
    kwargs = getattr(config, "activation_checkpointing_kwargs", config.gradient_checkpointing_kwargs)
    assert kwargs == {"use_reentrant": False}
    assert config.dataloader_pin_memory == torch.cuda.is_available()


def test_a_hub_base_is_read_offline_from_the_cache(inputs: dict[str, Path], hub_client, hub_env, monkeypatch) -> None:
    from huggingface_hub import constants

    from dogerm_mergekit.train_rm import resolve_base

    repo = "meta-llama/Tiny-Base"
    hub_client.create_repo(repo)
    hub_client.upload_folder(folder_path=inputs["base"], repo_id=repo)
    commit = hub_env.refs(repo)["main"]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DogeRMConfigError, match=rf"{repo} is not in the Hugging Face cache .*`hf download {repo}`"):
        resolve_base(repo)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    resolve_base(repo)  # the download, where the Hub is reachable
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    folder, record = resolve_base(repo)
    assert record == f"{repo}@{commit}" and (folder / "config.json").is_file()
