"""Third-party messages a user cannot act on, silenced where they arise; any other message still shows.

Each silenced message is named here by the text it starts with, with the logger or warning category that emits it,
so a library upgrade that changes the text shows the message again rather than hiding something new.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

# mergekit 0.1.5 sets `config.torch_dtype` on the merged model's config; transformers 5 renamed the attribute.
TORCH_DTYPE = ("transformers.configuration_utils", "`torch_dtype` is deprecated")
# optuna's GP sampler falls back to a sequential optimiser without the optional greenlet package: same results.
GREENLET = ("optuna._gp.batched_lbfgsb", "The 'greenlet' package is unavailable")


class _Drop(logging.Filter):
    def __init__(self, starts: tuple[str, ...]):
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.starts)


@contextmanager
def silenced_log(logger: str, *starts: str) -> Iterator[None]:
    """Drop records of ``logger`` whose message starts with one of ``starts`` while the block runs."""
    target, drop = logging.getLogger(logger), _Drop(starts)
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
            stack.enter_context(silenced_log(logger, start))
        if warned:
            stack.enter_context(warnings.catch_warnings())
            for category, message in warned:
                warnings.filterwarnings("ignore", message=message, category=category)
        yield
