"""The one way dogerm drives mergekit: a planned dogerm graph run into one or more output folders.

``mergekit-yaml`` (through the import hook), ``dogerm-mergekit-yaml``, ``dogerm-sweep`` and the in-memory merger
all plan here: mergekit's ``MergePlanner`` over the plan's architecture (no architecture guess, nothing of
mergekit patched), with each merged tensor rewritten into one :class:`~dogerm_mergekit.tasks.SweepTensor` for
every output (safetensors, by the streaming writer) or :class:`~dogerm_mergekit.tasks.Difference` ->
:class:`~dogerm_mergekit.tasks.Interpolate` per output (mergekit's writer, the in-memory merger). Every output is
built in a hidden sibling folder and renamed into place when complete; what was there stays until then.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
import transformers
from mergekit.config import MergeConfiguration
from mergekit.graph import Executor, Task
from mergekit.io.tasks import FinalizeModel, LoaderCache, ReturnTensor, SaveTensor
from mergekit.merge_methods.task_adapter import ExecuteMergeMethodTask
from mergekit.options import MergeOptions
from mergekit.plan import MergePlanner
from mergekit.tokenizer import BuildTokenizer, TokenizerInfo

from dogerm_mergekit.plan import DogeRMPlan
from dogerm_mergekit.card import merge_card
from dogerm_mergekit.checkpoint import model_folder
from dogerm_mergekit.errors import DogeRMConfigError, OutputError
from dogerm_mergekit import dtypes, mergekit_private
from dogerm_mergekit.files import StagedDirectory, fast_digest_file
from dogerm_mergekit.hubcache import cached_commit
from dogerm_mergekit.method import check_lambdas
from dogerm_mergekit.tasks import (
    CloseCheckpoint,
    Difference,
    Interpolate,
    KeepTensor,
    StreamingWriterTask,
    SweepTensor,
    MergedInputs,
)
from dogerm_mergekit.validation import domain_lambda_settings
from dogerm_mergekit.writer import WriteQueue

LOG = logging.getLogger(__name__)
CONFIG_FILE = "mergekit_config.yml"


@dataclass(frozen=True)
class Output:
    """One checkpoint to write: its configuration (with its lambda), that configuration's YAML, its folder."""

    config: MergeConfiguration
    source: str
    folder: Path


def check_options(options: MergeOptions) -> None:
    """Refuse, by name, the mergekit options a dogerm merge cannot honour (before anything is read)."""
    if options.multi_gpu:
        raise DogeRMConfigError(
            "--multi-gpu (or --gpu-rich) is not supported for merge_method: dogerm (a DogeRM merge is bound by disk, "
            "not by arithmetic): drop it and keep --cuda if you want the arithmetic on a GPU"
        )
    if options.safe_serialization and options.write_threads != 1:
        raise DogeRMConfigError(
            "--write-threads applies to mergekit's shard-buffering writer; dogerm's streaming safetensors writer "
            "always writes in one background thread: drop --write-threads"
        )


def prepared_config(config: MergeConfiguration, plan: DogeRMPlan) -> MergeConfiguration:
    """The configuration mergekit runs: the planned tokenizer block, out_dtype defaulting to the RM's dtype, and
    for ``dogerm_<kernel>`` methods mergekit's own method name."""
    return config.model_copy(
        update={
            "tokenizer": plan.vocabulary.tokenizer,
            "tokenizer_source": None,
            "out_dtype": config.out_dtype or plan.rm_dtype,
            **({"merge_method": plan.kernel} if plan.kernel else {}),
        }
    )


def output_view(config: MergeConfiguration, plan: DogeRMPlan) -> MergeConfiguration:
    """The configuration as mergekit's output helpers read it: the reward model as ``base_model`` (its config.json,
    its tokenizer), whatever base the kernel merged against."""
    return prepared_config(config, plan).model_copy(update={"base_model": plan.reward_model})


def lambda_summary(config: MergeConfiguration, plan: DogeRMPlan) -> float | str:
    """The lambda(s) to show in cards: a number (one per domain model), or a pointer to the configuration."""
    if plan.kernel:
        against = f" against {plan.pretrained}" if plan.pretrained else ""
        return f"mergekit {plan.kernel}{against} (see configuration)"
    values = []
    for domain in plan.domain_models:
        settings = domain_lambda_settings(config, domain)
        if not settings or not isinstance(settings[0], (int, float)):
            return "per tensor (see configuration)"
        values.append(float(settings[0]))
    return values[0] if len(values) == 1 else ", ".join(f"{d}: {v:g}" for d, v in zip(plan.domain_models, values))


def _rewrite_merge(task: Task, plan: DogeRMPlan, shared: dict[str, Difference], out_dtype: str | None) -> Task:
    """A merged tensor's mergekit task as the shared difference and this output's combination.

    mergekit's gather tasks compare by identity, so equal ones planned for two outputs are distinct objects:
    the difference is shared by tensor name instead (every output of one run differs only in its lambdas).
    The lambdas of each tensor (after mergekit's filters) are checked here, before anything runs. ``out_dtype`` is
    the save's: the kernel rounds to it once, whatever the inputs' dtypes.
    """
    if not isinstance(task, ExecuteMergeMethodTask):
        return task
    name = task.output_weight.name
    allow_nonfinite = bool(task.parameters.get("allow_nonfinite", False))
    if name in plan.reward_only:  # the reward model's head, kept as it is
        return KeepTensor(tensors=task.gather_tensors, model=plan.reward_model, name=name, out_dtype=out_dtype,
                          allow_nonfinite=allow_nonfinite)
    if plan.kernel is not None or name not in plan.merged:  # mergekit's kernel as planned
        return task
    pair = shared.setdefault(name, Difference(
        tensors=task.gather_tensors, reward_model=plan.reward_model, domain_models=plan.domain_models,
        name=name, vocabulary_axis=task.output_weight.vocabulary_axis,
        allow_nonfinite=allow_nonfinite,
    ))
    lams = tuple(float(task.input_parameters[d]["lambda"]) for d in plan.domain_models)
    check_lambdas(lams, bool(task.parameters.get("allow_extrapolation", False)), f" for {name}")
    return Interpolate(difference=pair, lams=lams, out_dtype=out_dtype)


def plan_outputs(plan: DogeRMPlan, outputs: Sequence[tuple[MergeConfiguration, Path]], options: MergeOptions,
                 queue: WriteQueue | None) -> list[list[Task]]:
    """mergekit's plan of each (configuration, folder), rewritten for dogerm, sharing each tensor's inputs.

    With a ``queue``, safetensors are written by the streaming writer and each merged tensor is one
    :class:`SweepTensor` for all outputs; without one, mergekit's own writer saves each output's
    :class:`Interpolate` of the shared :class:`Difference`. The configurations must differ in lambda only.
    """
    shared: dict[str, Difference] = {}
    planned = [_plan_output(plan, config, folder, options, queue, shared) for config, folder in outputs]
    return _fuse(planned, queue) if queue is not None and shared else planned


def plan_in_memory(plan: DogeRMPlan, config: MergeConfiguration, options: MergeOptions,
                   shared: dict[str, Difference]) -> list[ReturnTensor]:
    """mergekit's in-memory plan of ``config`` (one ``ReturnTensor`` per output tensor), rewritten for dogerm as a
    disk plan is: each merged tensor an :class:`Interpolate` (its lambdas after mergekit's filters and gradients) of
    the :class:`Difference` shared by name through ``shared``."""
    prepared = prepared_config(config, plan)
    out_config = mergekit_private.model_out_config(output_view(config, plan), plan.architecture,
                                                   options.trust_remote_code)
    planner = MergePlanner(prepared, plan.architecture, options=options, out_model_config=out_config)
    returns = []
    for weight, task in mergekit_private.planned_tensors(planner):
        dtype = weight.force_dtype or prepared.out_dtype
        # constructed as mergekit's plan_in_memory builds them (see mergekit_private.planned_tensors)
        returns.append(ReturnTensor.model_construct(weight_info=weight, dtype=dtype,
                                                    tensor_task=_rewrite_merge(task, plan, shared, dtype)))
    return returns


def _fuse(planned: list[list[Task]], queue: WriteQueue) -> list[list[Task]]:
    """Each output's saves of interpolations replaced by one :class:`SweepTensor` per tensor, for every output."""
    sweeps: dict[str, SweepTensor] = {}
    by_name = [{t.tensor_name: t for t in tasks if _interpolated(t)} for tasks in planned]
    for name in by_name[0]:
        saves = [output[name] for output in by_name]
        difference = saves[0].tensor_task.difference
        sweeps[name] = SweepTensor(
            **{field: getattr(difference, field) for field in MergedInputs.model_fields},
            lam_vectors=tuple(s.tensor_task.lams for s in saves), writers=tuple(s.writer_task for s in saves),
            queue=queue, out_dtype=saves[0].tensor_task.out_dtype,
        )
    fused = []
    for tasks in planned:
        kept = [t for t in tasks if not _interpolated(t)]
        close = next(t for t in kept if isinstance(t, CloseCheckpoint))
        others = tuple(t for t in close.tensor_save_tasks if not _interpolated(t))
        fused.append([close.model_copy(update={"tensor_save_tasks": (*others, *sweeps.values())}) if t is close else t
                      for t in kept])
    return fused


def _interpolated(task: Task) -> bool:
    return isinstance(task, SaveTensor) and isinstance(task.tensor_task, Interpolate)


def _plan_output(plan: DogeRMPlan, config: MergeConfiguration, folder: Path, options: MergeOptions,
                 queue: WriteQueue | None, shared: dict[str, Difference]) -> list[Task]:
    prepared = prepared_config(config, plan)
    out_config = mergekit_private.model_out_config(output_view(config, plan), plan.architecture,
                                                  options.trust_remote_code)
    planned = MergePlanner(prepared, plan.architecture, options=options, out_model_config=out_config).plan_to_disk(
        out_path=str(folder)
    )
    tokenizer = next((t for t in planned if isinstance(t, BuildTokenizer)), None)
    saves = [t for t in planned if isinstance(t, SaveTensor)]
    writer = saves[0].writer_task
    if queue is not None:
        code = dtypes.by_name(prepared.out_dtype).code
        layout = tuple(
            (name, code, plan.shapes[name], plan.vocabulary_axes.get(name))
            for name in sorted(t.tensor_name for t in saves)
        )
        writer = StreamingWriterTask(
            out_path=str(folder), max_shard_size=options.out_shard_size, layout=layout, queue=queue,
            tokenizer_task=tokenizer, index_metadata=(("mergekit_version", version("mergekit")),),
            pad_to_multiple_of=prepared.tokenizer.pad_to_multiple_of if prepared.tokenizer else None,
        )
    saves = tuple(s.model_copy(update={"tensor_task": _rewrite_merge(s.tensor_task, plan, shared, s.dtype),
                                  "writer_task": writer})
                  for s in saves)
    close = CloseCheckpoint if queue is not None else FinalizeModel
    return [*saves, close(tensor_save_tasks=saves, writer_task=writer), *([tokenizer] if tokenizer else [])]


def executor_for(targets: Sequence[Task], options: MergeOptions) -> Executor:
    """mergekit's executor with ``run_merge``'s device settings."""
    return Executor(targets=list(targets), math_device=options.device,
                    storage_device=options.device if options.low_cpu_memory else "cpu")


def prepare_loaders(plan: DogeRMPlan, options: MergeOptions) -> None:
    """What ``run_merge`` does before planning: the random seed and mergekit's loader settings."""
    check_options(options)
    if options.random_seed is not None:
        transformers.trainer_utils.set_seed(options.random_seed)
    LoaderCache().setup(options=options)
    for model in (plan.reward_model, *plan.domain_models, *([plan.pretrained] if plan.pretrained else [])):
        LoaderCache().get(model)


def run_outputs(
    plan: DogeRMPlan,
    outputs: Sequence[Output],
    options: MergeOptions,
    on_complete: Callable[[Output, dict[str, str]], None] | None = None,
    desc: str | None = None,
) -> None:
    """Merge every output in one pass over the inputs; each folder appears complete or not at all.

    ``on_complete(output, digests)`` runs after each folder is in place (digests: file name -> ``xxh3-128:<hex>``).
    """
    prepare_loaders(plan, options)
    staged = [StagedDirectory(output.folder) for output in outputs]
    try:
        _run(plan, outputs, staged, options, on_complete, desc)
    except OSError as error:  # a full disk, a quota, a vanished mount: nothing half-written is kept
        raise OutputError(
            f"writing {outputs[0].folder.parent} failed: {error.strerror or error} "
            f"({error.filename or 'a checkpoint file'}); free space (or fix the file system) and rerun the same "
            "command: finished checkpoints are kept"
        ) from error
    finally:
        for stage in staged:
            stage.discard()


def _run(plan: DogeRMPlan, outputs: Sequence[Output], staged: Sequence[StagedDirectory], options: MergeOptions,
         on_complete: Callable[[Output, dict[str, str]], None] | None, desc: str | None) -> None:
    with WriteQueue() as queue:
        streaming = queue if options.safe_serialization else None
        per_output = plan_outputs(plan, [(o.config, s.path) for o, s in zip(outputs, staged)], options, streaming)
        values: dict[Task, Any] = {}
        targets = [task for tasks in per_output for task in tasks]
        # SweepTensor nodes (streamed dogerm merges) run their own threads; mergekit's kernels keep torch's, as
        # their random draws depend on the thread count
        sweeping = streaming is not None and plan.kernel is None
        with _one_intra_op_thread() if sweeping else contextlib.nullcontext():
            for task, value in executor_for(targets, options).run(quiet=options.quiet, desc=desc):
                if isinstance(task, (CloseCheckpoint, BuildTokenizer)):
                    values[task] = value
    for output, stage, tasks in zip(outputs, staged, per_output):
        tokenizer = next((values[t] for t in tasks if isinstance(t, BuildTokenizer)), None)
        _finish(plan, output, stage.path, tokenizer, options)
        written = next((values[t] for t in tasks if isinstance(t, CloseCheckpoint)), {})
        digests = {p.name: written.get(p.name) or fast_digest_file(p) for p in sorted(stage.path.iterdir())
                   if p.is_file()}
        stage.commit()
        if on_complete is not None:
            on_complete(output, digests)


@contextlib.contextmanager
def _one_intra_op_thread() -> Iterator[None]:
    """torch's intra-op threads set to one for the run, then restored: :class:`SweepTensor` runs one thread per
    CPU itself, and torch's own threads would then only wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _finish(plan: DogeRMPlan, output: Output, folder: Path, tokenizer: TokenizerInfo | None,
            options: MergeOptions) -> None:
    """What ``run_merge`` writes after the tensors (config, tokenizer), and the dogerm card."""
    prepared = output_view(output.config, plan)
    out_config = mergekit_private.model_out_config(prepared, plan.architecture, options.trust_remote_code)
    vocabulary = plan.vocabulary.tokenizer
    if tokenizer is not None:
        mergekit_private.update_config_vocab(out_config, plan.architecture, tokenizer.tokenizer,
                                            vocabulary.pad_to_multiple_of if vocabulary else None)
    out_config.save_pretrained(str(folder))
    rm_only = prepared.model_copy(update={"tokenizer": None})
    if tokenizer is not None and vocabulary is not None and vocabulary.source in ("base", plan.reward_model):
        mergekit_private.copy_tokenizer(rm_only, str(folder), options)  # the reward model's own files, unchanged
    elif tokenizer is not None:
        mergekit_private.set_chat_template(tokenizer.tokenizer, prepared)
        tokenizer.tokenizer.save_pretrained(str(folder), safe_serialization=True)
    elif options.copy_tokenizer:
        try:
            mergekit_private.copy_tokenizer(rm_only, str(folder), options)
        except Exception as error:  # as mergekit-yaml does: the weights are still a valid checkpoint
            LOG.error("could not copy the tokenizer to %s: %s", folder, error)
    if options.write_model_card:
        (folder / CONFIG_FILE).write_text(output.source, encoding="utf-8")
        inputs = (plan.reward_model, *plan.domain_models, *([plan.pretrained] if plan.pretrained else []))
        commits = {str(m): commit for m in inputs if (commit := cached_commit(model_folder(m)))}
        card = merge_card(str(plan.reward_model), ", ".join(map(str, plan.domain_models)),
                          lambda_summary(output.config, plan), output.source, kernel=plan.kernel, commits=commits)
        card.save(folder / "README.md")

