"""Third-party messages a user cannot act on, silenced where they arise; any other message still shows.

Each silenced message is named here by the text it starts with, with the logger or warning category that emits it,
so a library upgrade that changes the text shows the message again rather than hiding something new.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

# mergekit 0.1.5 sets `config.torch_dtype` on the merged model's config; transformers 5 renamed the attribute.
TORCH_DTYPE = ("transformers.configuration_utils", "`torch_dtype` is deprecated")
# optuna's GP sampler falls back to a sequential optimiser without the optional greenlet package: same results.
GREENLET = ("optuna._gp.batched_lbfgsb", "The 'greenlet' package is unavailable")
# TRL's RewardConfig defaults `gradient_checkpointing` to true, the name transformers 5 deprecated.
GRADIENT_CHECKPOINTING = (FutureWarning, "`gradient_checkpointing` is deprecated")
LOAD_REPORT = "transformers.modeling_utils"
_REPORT_ROW = re.compile(r"^([\w.]+)\s*\|\s*([A-Z]+)\s*\|", re.MULTILINE)


def head_swap_report(message: str) -> bool:
    """Whether ``message`` is transformers' load report of a causal LM loaded as a reward model and nothing else:
    its ``lm_head`` unused, the new ``score`` head missing (what training a reward model starts from)."""
    rows = _REPORT_ROW.findall(message) if "LOAD REPORT" in message else []
    return bool(rows) and all((status, key.split(".")[0]) in (("UNEXPECTED", "lm_head"), ("MISSING", "score"))
                              for key, status in rows)


class _Drop(logging.Filter):
    def __init__(self, dropped: Callable[[str], bool]):
        super().__init__()
        self.dropped = dropped

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.dropped(record.getMessage())


@contextmanager
def silenced_log(logger: str, dropped: Callable[[str], bool]) -> Iterator[None]:
    """Drop the records of ``logger`` whose message ``dropped`` accepts while the block runs."""
    target, drop = logging.getLogger(logger), _Drop(dropped)
    target.addFilter(drop)
    try:
        yield
    finally:
        target.removeFilter(drop)


@contextmanager
def silenced(*logs: tuple[str, str], warned: tuple[tuple[type[Warning], str], ...] = ()) -> Iterator[None]:
    """Silence the (logger, message start) pairs ``logs`` and the Python warnings ``warned`` ((category, message
    regex) pairs) while the block runs."""
    with ExitStack() as stack:
        for logger, start in logs:
            stack.enter_context(silenced_log(logger, lambda message, start=start: message.startswith(start)))
        if warned:
            stack.enter_context(warnings.catch_warnings())
            for category, message in warned:
                warnings.filterwarnings("ignore", message=message, category=category)
        yield
