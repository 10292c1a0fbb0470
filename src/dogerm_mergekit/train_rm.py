"""``dogerm-train-rm``: train the general reward model DogeRM merges, with TRL's RewardTrainer (Bradley-Terry loss).

The recipe defaults are the authors' (MiuLab/DogeRM README "Train base RM" and src/train_rm.py): one epoch of
argilla/ultrafeedback-binarized-preferences-cleaned, learning rate 1e-5, linear schedule with 5 % warmup, AdamW
(torch), batch 4 per device, no accumulation, pairs longer than 2048 tokens dropped, gradient checkpointing
(non-reentrant), 10 % of the pairs held out (shuffle seed 42), seed 42, the Llama-2 chat template and its default
system prompt. Every ``RewardConfig`` option given after the others overrides them.

Full fine-tuning, or LoRA (PEFT ``task_type SEQ_CLS``, so the ``score`` head is trained in full) merged into the
weights before saving: the output is always a plain ``*ForSequenceClassification`` checkpoint with its trained head,
the tokenizer and the chat template used in training, and ``dogerm_train_rm`` in config.json recording the base,
the data and the settings. Several GPUs: ``accelerate launch -m dogerm_mergekit.train_rm BASE ...`` as for any TRL
script.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from dogerm_mergekit.chat_templates import LLAMA2_CHAT_TEMPLATE, NAMED_SYSTEM_PROMPTS
from dogerm_mergekit.errors import DogeRMConfigError, OutputError
from dogerm_mergekit.noise import GRADIENT_CHECKPOINTING, LOAD_REPORT, head_swap_report, silenced, silenced_log
from dogerm_mergekit.tables import looks_like_path, parse_hub_ref

LOG = logging.getLogger(__name__)
#: The authors' settings (MiuLab/DogeRM README, "Train base RM"), as RewardConfig command-line arguments.
RECIPE: dict[str, str] = {
    "learning_rate": "1e-5", "num_train_epochs": "1", "per_device_train_batch_size": "4",
    "gradient_accumulation_steps": "1", "warmup_steps": "0.05", "optim": "adamw_torch", "max_length": "2048",
    "logging_steps": "10", "logging_first_step": "true", "save_strategy": "no",
    "seed": "42", "report_to": "none",
}
#: Also the authors': gradient checkpointing, which is RewardConfig's default; their fp16 mixed precision becomes bf16
#: where the GPU has it (RewardConfig's default; fp32 elsewhere, e.g. on CPU).
#: With a held-out split: evaluate every 10 % of the steps (the authors' ``--eval_steps 0.1``).
EVAL_RECIPE: dict[str, str] = {"eval_strategy": "steps", "eval_steps": "0.1"}
SHUFFLE_SEED = 42  # the authors' --dataset_shuffle_seed
CONFIG_KEY = "dogerm_train_rm"


def reward_config(output_dir: Path, extra_args: list[str], max_steps: int | None, evaluate: bool) -> Any:
    """TRL's RewardConfig from the recipe, then ``--max-steps``, then the user's own RewardConfig arguments."""
    from transformers import HfArgumentParser
    from trl import RewardConfig

    import torch

    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    recipe = {**RECIPE, "bf16": str(bf16).lower(), **(EVAL_RECIPE if evaluate else {}),
              "dataloader_pin_memory": str(torch.cuda.is_available()).lower()}  # pinning needs an accelerator
    args = [f"--{key}={value}" for key, value in recipe.items()] + [f"--output_dir={output_dir}"]
    if max_steps is not None:
        args.append(f"--max_steps={max_steps}")
    parser = HfArgumentParser(RewardConfig)
    try:  # argparse keeps the last occurrence, so the user's options override the recipe
        with silenced(warned=(GRADIENT_CHECKPOINTING,)):  # TRL's default, under transformers' old name
            (config,) = parser.parse_args_into_dataclasses(args=args + extra_args)
    except SystemExit:
        raise click.UsageError(f"invalid RewardConfig arguments {' '.join(extra_args)!r} (see the message above)")
    except ValueError as exc:  # RewardConfig's own checks (e.g. bf16 on a machine without it)
        raise click.UsageError(f"RewardConfig: {exc}") from None
    if str(config.output_dir) != str(output_dir):
        raise click.UsageError("give the output folder with --output-dir only")
    # the authors' setting, under the name the Trainer reads (transformers 5 renamed it; the old one is only a copy)
    renamed = "activation_checkpointing_kwargs"
    setattr(config, renamed if hasattr(config, renamed) else "gradient_checkpointing_kwargs", {"use_reentrant": False})
    return config


def resolve_base(base: str) -> tuple[Path, str]:
    """A local folder, or a Hub model ``org/name[@revision]`` downloaded; returns (folder, 'id@commit' or path)."""
    path = Path(base).expanduser()
    if path.is_dir():
        return path, str(path.resolve())
    if looks_like_path(base):
        raise DogeRMConfigError(f"BASE {base}: no such folder")
    from huggingface_hub import snapshot_download

    from dogerm_mergekit import hubcache

    repo_id, revision = parse_hub_ref(base, DogeRMConfigError)
    if hubcache.offline():
        local = hubcache.cached_snapshot(repo_id, revision, tokenizer=True, error=DogeRMConfigError)
        return local, f"{repo_id}@{local.name}"
    try:
        local = Path(snapshot_download(repo_id, revision=revision))
    except Exception as exc:
        raise DogeRMConfigError(f"BASE {base}: neither a local folder nor a reachable Hub model ({exc})") from None
    return local, f"{repo_id}@{local.name}"


def check_base(path: Path, base: str) -> Any:
    """The base's config; refuse a model that is already a reward model, or has no sequence-classification class."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise DogeRMConfigError(f"BASE {base}: no readable config.json ({exc})") from None
    heads = [a for a in (config.architectures or []) if a.endswith(("ForSequenceClassification", "ForRewardModel"))]
    if heads:
        raise DogeRMConfigError(f"BASE {base} is already a reward model ({heads[0]}); give the causal LM it was "
                                "trained from (the base of your domain models)")
    if config.model_type not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        raise DogeRMConfigError(f"BASE {base}: transformers has no *ForSequenceClassification for model type "
                                f"{config.model_type!r}")
    return config


def chat_template(tokenizer: Any, choice: str) -> tuple[str, str]:
    """(name, jinja) of ``--chat-template``: auto = the base's own, else Llama-2; llama2; or a .jinja file."""
    if choice == "llama2" or (choice == "auto" and not isinstance(tokenizer.chat_template, str)):
        return "llama2", LLAMA2_CHAT_TEMPLATE
    if choice == "auto":
        return "base", tokenizer.chat_template
    path = Path(choice)
    if not path.is_file():
        raise DogeRMConfigError(f"--chat-template {choice}: not auto, llama2 or an existing .jinja file")
    return str(path), path.read_text(encoding="utf-8")


def check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not overwrite)):
        raise OutputError(f"--output-dir {out} is a file or a non-empty folder; choose another, or --overwrite")


def lora_config(r: int, alpha: int, dropout: float, targets: str | None) -> Any:
    """PEFT LoRA for sequence classification (SEQ_CLS: the new score head is trained in full, modules_to_save)."""
    from peft import LoraConfig, TaskType

    modules = [t.strip() for t in targets.split(",")] if targets else None
    if modules == ["all-linear"]:
        modules = "all-linear"
    return LoraConfig(task_type=TaskType.SEQ_CLS, r=r, lora_alpha=alpha, lora_dropout=dropout,
                      target_modules=modules)


def train_reward_model(base: str, data: str, output_dir: Path, *, split: str = "train", lora: Any = None,
                       chat_template_choice: str = "auto", system_prompt: str | None = "llama2-default",
                       eval_fraction: float = 0.1, max_steps: int | None = None, extra_args: Sequence[str] = (),
                       overwrite: bool = False) -> dict[str, Any]:
    """Check everything, train, save the reward model to ``output_dir``; return what config.json records."""
    from transformers import AutoTokenizer

    from dogerm_mergekit.preferences import check_template, load_preferences, tokenize_pairs

    output_dir = Path(output_dir)
    check_output(output_dir, overwrite)
    if not 0 <= eval_fraction < 1:
        raise click.BadParameter("must be in [0, 1)", param_hint="--eval-fraction")
    config = reward_config(output_dir, list(extra_args), max_steps, eval_fraction > 0)
    prefs = load_preferences(data, split)  # the data read and checked before the base is downloaded
    folder, base_record = resolve_base(base)
    base_config = check_base(folder, base)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    template_name, template = chat_template(tokenizer, chat_template_choice)
    LOG.info("chat template: %s; system prompt: %s", template_name, "none" if not system_prompt else system_prompt)
    system = NAMED_SYSTEM_PROMPTS.get(system_prompt, system_prompt) if system_prompt else None
    check_template(tokenizer, template, prefs.rows[0], system, template_name)
    tokenizer.chat_template = template  # saved with the model: the merge and the evaluation use it
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    pairs = tokenize_pairs(prefs.rows, tokenizer, template, system)
    splits = pairs.train_test_split(test_size=eval_fraction, seed=SHUFFLE_SEED) if eval_fraction else None
    record = {
        "base_model": base_record, "base_model_type": base_config.model_type, "data": prefs.source,
        "data_revision": prefs.revision, "split": split, "pairs": len(pairs), "chat_template": template_name,
        "system_prompt": system, "lora": None if lora is None else {
            "r": lora.r, "alpha": lora.lora_alpha, "dropout": lora.lora_dropout,
            "target_modules": sorted(lora.target_modules) if isinstance(lora.target_modules, set)
            else lora.target_modules},
        "trainer": "trl.RewardTrainer", "eval_fraction": eval_fraction,
    }
    trainer = _trainer(folder, tokenizer, config, splits["train"] if splits else pairs,
                       splits["test"] if splits else None, lora)
    trainer.train()
    _save(trainer, tokenizer, output_dir, {**record, "settings": _settings(config)})
    return record


def _trainer(folder: Path, tokenizer: Any, config: Any, train: Any, evaluation: Any, lora: Any) -> Any:
    import torch
    from transformers import AutoModelForSequenceClassification, set_seed
    from trl import RewardTrainer

    set_seed(config.seed)  # the new score head's initialisation is reproducible (the authors seed before loading)
    # float32 weights: --bf16/--fp16 train in mixed precision over them (bf16 weights would lose 1e-5 updates)
    with silenced_log(LOAD_REPORT, head_swap_report):  # the LM's head dropped, the score head new: as intended
        model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1, dtype=torch.float32,
                                                                   use_cache=False)
    model.config.pad_token_id = tokenizer.pad_token_id
    return RewardTrainer(model=model, args=config, processing_class=tokenizer, train_dataset=train,
                         eval_dataset=evaluation, peft_config=lora)


def _settings(config: Any) -> dict[str, Any]:
    keys = ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
            "gradient_accumulation_steps", "warmup_steps", "lr_scheduler_type", "optim", "max_length", "seed",
            "bf16", "fp16", "center_rewards_coefficient", "world_size")
    return {key: getattr(config, key) for key in keys}


def _save(trainer: Any, tokenizer: Any, output_dir: Path, record: dict[str, Any]) -> None:
    """A plain *ForSequenceClassification checkpoint (LoRA merged), tokenizer, chat template and the training log."""
    from peft import PeftModel

    model = trainer.accelerator.unwrap_model(trainer.model)
    setattr(model.config, CONFIG_KEY, record)
    model.config.use_cache = True
    if isinstance(model, PeftModel):  # the trained copy of the score head replaces PEFT's wrapper
        if trainer.is_world_process_zero():
            model.merge_and_unload().save_pretrained(output_dir)
            tokenizer.save_pretrained(output_dir)
    else:
        trainer.save_model(str(output_dir))  # gathers sharded (DeepSpeed, FSDP) weights; saves the tokenizer too
    if trainer.is_world_process_zero():
        (output_dir / "trainer_log.json").write_text(json.dumps(trainer.state.log_history, indent=1) + "\n")
    trainer.accelerator.wait_for_everyone()


PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True}


@click.command("dogerm-train-rm", context_settings=PASS_THROUGH,
               epilog="Any other option is TRL's RewardConfig (e.g. --learning_rate 2e-5 --bf16 true "
                      "--per_device_train_batch_size 8), overriding the recipe.")
@click.argument("base")
@click.option("--data", required=True, help="Preference data: a parquet, JSON-array or JSON-lines file (maybe gzipped; "
              "told by content), a dataset folder, or a Hub dataset org/name[@revision], in the "
              "UltraFeedback-binarized schema.")
@click.option("--output-dir", required=True, type=click.Path(path_type=Path), help="Folder for the reward model.")
@click.option("--split", default="train", show_default=True, help="Split of a Hub dataset or dataset folder.")
@click.option("--max-steps", type=click.IntRange(min=1), help="Stop after N optimizer steps (default: one epoch).")
@click.option("--lora", is_flag=True, help="Train LoRA adapters (and the head in full), merged before saving.")
@click.option("--lora-r", type=int, default=16, show_default=True)
@click.option("--lora-alpha", type=int, default=32, show_default=True)
@click.option("--lora-dropout", type=float, default=0.05, show_default=True)
@click.option("--lora-target-modules", help="Comma list, or all-linear (default: PEFT's for the architecture).")
@click.option("--chat-template", "template", default="auto", show_default=True,
              help="auto (the base's own, else Llama-2), llama2 (the authors'), or a .jinja file.")
@click.option("--system-prompt", default="llama2-default", show_default=True,
              help="System message of every pair: llama2-default (the authors'), any text, or '' for none.")
@click.option("--eval-fraction", type=float, default=0.1, show_default=True,
              help="Pairs held out for evaluation (the authors' 0.1, shuffle seed 42); 0 for none.")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty --output-dir.")
@click.pass_context
def main(ctx: click.Context, base: str, data: str, output_dir: Path, split: str, max_steps: int | None, lora: bool,
         lora_r: int, lora_alpha: int, lora_dropout: float, lora_target_modules: str | None, template: str,
         system_prompt: str, eval_fraction: float, overwrite: bool) -> None:
    """Train a general reward model from BASE (a causal LM: local folder or org/name[@revision]) on preference pairs
    with TRL's RewardTrainer and the DogeRM authors' recipe; the result merges with `mergekit-yaml` (dogerm)."""
    from dogerm_mergekit.console import one_line

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with one_line("dogerm-train-rm"):
        peft_config = lora_config(lora_r, lora_alpha, lora_dropout, lora_target_modules) if lora else None
        train_reward_model(base, data, output_dir, split=split, lora=peft_config, chat_template_choice=template,
                           system_prompt=system_prompt or None, eval_fraction=eval_fraction, max_steps=max_steps,
                           extra_args=ctx.args, overwrite=overwrite)
    click.echo(f"{output_dir}: reward model trained from {base}")


if __name__ == "__main__":
    main()
