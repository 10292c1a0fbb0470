"""Teach plain ``mergekit-yaml`` / ``mergekit-multi`` the ``dogerm`` method (mergekit has no plugin discovery).

A ``.pth`` file installed with the package imports this module at interpreter start. It only puts a
duck-typed finder on ``sys.meta_path`` (no heavy imports, a few microseconds); when mergekit's method
registry or its ``mergekit.merge`` module is imported later, the finder runs the real module, then
registers the method / routes ``run_merge`` for ``merge_method: dogerm`` (and ``dogerm_<kernel>``, see
:mod:`dogerm_mergekit.kernels`) through :mod:`dogerm_mergekit.merge`. With ``HF_HUB_OFFLINE=1`` set, mergekit's
models given by Hub id are read from the Hugging Face cache (:mod:`dogerm_mergekit.hubcache`) instead of failing on
the file listing mergekit asks the Hub for first, and online the tokenizer's every file is downloaded.
Nothing here may raise: a failure only logs a warning and leaves mergekit untouched.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from types import ModuleType
from typing import Any, Callable

REGISTRY = "mergekit.merge_methods.registry"
MERGE = "mergekit.merge"
RUN_YAML = "mergekit.scripts.run_yaml"
MULTI = "mergekit.scripts.multimerge"
COMMON = "mergekit.common"


def register_method(registry: ModuleType) -> None:
    """Import the method module, which registers itself (when its own import led here, it does so on finishing)."""
    importlib.import_module("dogerm_mergekit.method")


def route_run_merge(merge_module: ModuleType) -> None:
    """Send ``run_merge`` calls whose config says ``merge_method: dogerm`` to the DogeRM driver."""
    original = merge_module.run_merge
    if getattr(original, "_dogerm_routed", False):
        return

    def run_merge(merge_config: Any, out_path: str, options: Any, config_source: Any = None) -> None:
        from dogerm_mergekit.methods import is_dogerm

        if is_dogerm(merge_config.merge_method):
            from dogerm_mergekit.merge import run_dogerm_merge

            return run_dogerm_merge(merge_config, out_path, options, config_source)
        return original(merge_config, out_path, options=options, config_source=config_source)

    run_merge._dogerm_routed = True  # type: ignore[attr-defined]
    run_merge.__wrapped__ = original  # type: ignore[attr-defined]
    run_merge.__doc__ = original.__doc__
    merge_module.run_merge = run_merge


def _guard(script: ModuleType, command: str, check: str, done: Callable[[dict[str, Any]], str]) -> None:
    """Give ``command`` on a file asking for a dogerm method (or misspelling one: "did you mean") one-line errors:
    YAML syntax (file, line), schema, unknown keys (a warning), and any failure of the merge; other files run
    exactly as mergekit runs them.
    ``check`` names the :mod:`dogerm_mergekit.config_file` function that reads the file's text; ``done`` gives
    the line said on success from the command's arguments."""
    original = script.main.callback
    if getattr(original, "_dogerm_guarded", False):
        return

    def callback(*args: Any, **kwargs: Any) -> Any:
        try:
            with open(kwargs["config_file"], encoding="utf-8") as handle:
                source = handle.read()
        except (KeyError, OSError, UnicodeDecodeError):
            return original(*args, **kwargs)  # mergekit's own handling
        from dogerm_mergekit import config_file
        from dogerm_mergekit.console import one_line

        if not config_file.is_dogerm_source(source):
            return original(*args, **kwargs)
        with one_line(command):
            getattr(config_file, check)(source, kwargs["config_file"])
            result = original(*args, **kwargs)
        import click

        click.echo(done(kwargs))
        return result

    callback._dogerm_guarded = True  # type: ignore[attr-defined]
    callback.__wrapped__ = original  # type: ignore[attr-defined]
    script.main.callback = callback


def guard_run_yaml(run_yaml: ModuleType) -> None:
    """``mergekit-yaml`` on a dogerm configuration: one-line errors (:func:`_guard`)."""
    _guard(run_yaml, "mergekit-yaml", "read_config",
           lambda given: f"{given['out_path']}: wrote the merge of {given['config_file']}")


def guard_multimerge(multimerge: ModuleType) -> None:
    """``mergekit-multi`` on a file with a dogerm document: one-line errors (:func:`_guard`), each document checked."""
    _guard(multimerge, "mergekit-multi", "read_documents",
           lambda given: f"{given.get('out_path') or given.get('intermediate_dir')}: wrote the merges of "
                         f"{given['config_file']}")


def read_cache_offline(common: ModuleType) -> None:
    """``ModelReference.local_path`` of a Hub id: its snapshot with every tokenizer file (mergekit's own skips the
    chat template and merges.txt, so the merged model lost them), offline the cached one, as ``from_pretrained``
    reads it (mergekit's own asks the Hub first); local folders and adapters as mergekit resolves them."""
    reference = common.ModelReference
    original = reference.local_path
    if getattr(original, "_dogerm_offline", False):
        return

    def local_path(self: Any, cache_dir: str | None = None, ignore_lora: bool = False) -> str:
        from dogerm_mergekit import hubcache

        if os.path.exists(self.model.path) or (self.lora is not None and not ignore_lora):
            return original(self, cache_dir=cache_dir, ignore_lora=ignore_lora)
        return str(hubcache.model_snapshot(self.model.path, self.model.revision, cache_dir))

    local_path._dogerm_offline = True  # type: ignore[attr-defined]
    local_path.__wrapped__ = original  # type: ignore[attr-defined]
    local_path.__doc__ = original.__doc__
    reference.local_path = local_path


_PATCHES: dict[str, Callable[[ModuleType], None]] = {REGISTRY: register_method, MERGE: route_run_merge,
                                                      RUN_YAML: guard_run_yaml, MULTI: guard_multimerge,
                                                      COMMON: read_cache_offline}


def _apply(name: str, module: ModuleType) -> None:
    try:
        _PATCHES[name](module)
    except Exception as error:  # never break mergekit itself
        logging.getLogger(__name__).warning("dogerm-mergekit could not patch %s: %s", name, error)


class _PatchingLoader:
    def __init__(self, loader: Any, name: str):
        self._loader = loader
        self._name = name

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _apply(self._name, module)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._loader, attribute)


class _Finder:
    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in _PATCHES:
            return None
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(name, path, target)
                if spec is not None and spec.loader is not None:
                    spec.loader = _PatchingLoader(spec.loader, name)
                    return spec
        except Exception:
            return None
        return None


def install() -> None:
    """Put the finder on ``sys.meta_path`` and patch whichever target module is already imported."""
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
    for name in _PATCHES:
        if name in sys.modules:
            _apply(name, sys.modules[name])
