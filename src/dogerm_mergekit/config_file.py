"""A merge configuration as someone wrote it: YAML syntax errors, wrong values and unknown keys in one line each.

``read_config`` is what ``dogerm-sweep`` and (through the hook) ``mergekit-yaml`` run on a ``dogerm`` configuration
before anything is read: a syntax error names the file, line and column; a value mergekit's schema refuses names
its key; a key nobody reads (``lamda: 0.3``) is a warning naming the closest known key, since mergekit ignores it.
"""

from __future__ import annotations

import difflib
import logging
import re
from typing import Any

import yaml

from dogerm_mergekit import methods
from dogerm_mergekit.errors import DogeRMConfigError

LOG = logging.getLogger(__name__)
METHOD_LINE = re.compile(r"^\s*merge_method\s*:\s*['\"]?([\w-]+)", re.MULTILINE)


def is_dogerm_source(source: str) -> bool:
    """Whether a configuration text asks for a dogerm method or misspells one (decides, before parsing, whose errors
    these are)."""
    return any(_is_ours(name) for name in METHOD_LINE.findall(source))


def _is_ours(merge_method: object) -> bool:
    return methods.is_dogerm(merge_method) or methods.misspelling(merge_method) is not None


def check_method(raw: dict[str, Any], where: str) -> None:
    """Refuse a misspelt dogerm method name in one line naming the right one (mergekit would ask for
    ``--allow-crimes``, then fail on the unknown name)."""
    name = raw.get("merge_method")
    close = methods.misspelling(name)
    if close:
        raise DogeRMConfigError(f"{where}: merge_method `{name}` is not a merge method; did you mean `{close}`?")
    if methods.is_kernel_method(name) and name not in methods.KERNEL_METHODS:
        raise DogeRMConfigError(f"{where}: merge_method `{name}` is not a merge method; dogerm offers "
                                f"{', '.join(methods.ours())}")


def _syntax_error(error: yaml.YAMLError, where: str) -> DogeRMConfigError:
    mark = getattr(error, "problem_mark", None)
    at = f" line {mark.line + 1}, column {mark.column + 1}:" if mark is not None else ""
    problem = " ".join(str(p) for p in (getattr(error, "context", None), getattr(error, "problem", None)) if p)
    return DogeRMConfigError(f"{where}:{at} not valid YAML ({problem or error.__class__.__name__}); fix the file "
                             "(nothing was read or written)")


def parse_yaml(source: str, where: str) -> dict[str, Any]:
    """The configuration mapping of ``source``; a syntax error or a non-mapping is one line naming ``where``."""
    try:
        raw = yaml.safe_load(source)
    except yaml.YAMLError as error:
        raise _syntax_error(error, where) from None
    if not isinstance(raw, dict):
        raise DogeRMConfigError(f"{where} holds a {type(raw).__name__}, not a mergekit configuration (a mapping with "
                                "merge_method:, base_model:, models:)")
    return raw


def unknown_keys(raw: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(where.key, closest known key or None) of every key of ``raw`` that mergekit or the method never reads."""
    from mergekit.config import InputModelDefinition, MergeConfiguration

    found: list[tuple[str, str | None]] = []

    def check(mapping: Any, known: set[str], where: str, elsewhere: dict[str, str] | None = None) -> None:
        if not isinstance(mapping, dict) or not known:
            return
        candidates = {**{k: f"{where}{k}" for k in known}, **(elsewhere or {})}
        for key in mapping:
            if key not in known:
                close = difflib.get_close_matches(str(key), sorted(candidates), n=1, cutoff=0.6)
                found.append((f"{where}{key}", candidates[close[0]] if close else None))

    parameters = methods.parameters(str(raw.get("merge_method", "")))
    check(raw, set(MergeConfiguration.model_fields), "", {p: f"parameters.{p}" for p in parameters})
    check(raw.get("parameters"), parameters, "parameters.")
    for index, entry in enumerate(raw.get("models") or []):
        check(entry, set(InputModelDefinition.model_fields), f"models[{index}].")
        check(entry.get("parameters") if isinstance(entry, dict) else None, parameters, f"models[{index}].parameters.")
    return found


def validate(raw: dict[str, Any], where: str) -> Any:
    """mergekit's ``MergeConfiguration`` of ``raw``; a schema error is one line naming the key."""
    from mergekit.config import MergeConfiguration
    from pydantic import ValidationError

    try:
        return MergeConfiguration.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top level)"
        more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
        raise DogeRMConfigError(f"{where}: `{key}`: {first['msg']}{more}; fix the configuration") from None


def read_config(source: str, where: str) -> tuple[dict[str, Any], Any]:
    """(the raw mapping, mergekit's configuration) of a configuration text, unknown keys warned about by name."""
    raw = parse_yaml(source, where)
    check_method(raw, where)
    config = validate(raw, where)
    for key, close in unknown_keys(raw):
        LOG.warning("%s: `%s` is not a key mergekit or merge_method %s reads, so it is ignored%s", where, key,
                    raw.get("merge_method"), f" (did you mean `{close}`?)" if close else "")
    return raw, config


def read_documents(source: str, where: str) -> None:
    """Check each dogerm document of a ``mergekit-multi`` file (several configurations, each with a ``name``) as
    :func:`read_config` checks one: syntax, schema and unknown keys, each named by document."""
    try:
        documents = list(yaml.safe_load_all(source))
    except yaml.YAMLError as error:
        raise _syntax_error(error, where) from None
    for index, document in enumerate(documents):
        if isinstance(document, dict) and _is_ours(document.get("merge_method")):
            name = document.get("name", f"document {index + 1}")
            read_config(yaml.safe_dump({k: v for k, v in document.items() if k != "name"}), f"{where} ({name})")
