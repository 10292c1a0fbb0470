"""Known third-party messages are silenced where they arise; any other message of the same logger still shows."""

import logging
import warnings

import pytest

from dogerm_mergekit.noise import TORCH_DTYPE, head_swap_report, silenced, silenced_log

REPORT = ("\x1b[1mLlamaForSequenceClassification LOAD REPORT\x1b[0m from: base\nKey            | Status     | \n"
          "---------------+------------+-\n{rows}\nNotes:\n- UNEXPECTED:\tcan be ignored\n")


def test_only_the_head_swap_report_is_recognised():
    swap = REPORT.format(rows="lm_head.weight | UNEXPECTED | \nscore.weight   | MISSING    | ")
    assert head_swap_report(swap)
    assert head_swap_report(REPORT.format(rows="score.weight   | MISSING    | "))  # tied embeddings: no lm_head
    for rows in ("model.norm.weight | MISSING | ", "lm_head.weight | UNEXPECTED | \nscore.weight | MISMATCH | ",
                 "score.weight | UNEXPECTED | "):
        assert not head_swap_report(REPORT.format(rows=rows)), rows
    assert not head_swap_report("lm_head.weight | UNEXPECTED |")  # not a load report


def test_silenced_drops_the_named_message_only(caplog: pytest.LogCaptureFixture):
    logger = logging.getLogger(TORCH_DTYPE[0])
    with caplog.at_level(logging.WARNING, logger=TORCH_DTYPE[0]):
        with silenced(TORCH_DTYPE), silenced_log(TORCH_DTYPE[0], head_swap_report):
            logger.warning("`torch_dtype` is deprecated! Use `dtype` instead!")
            logger.warning("something else")
        logger.warning("`torch_dtype` is deprecated! Use `dtype` instead!")  # outside the block: shown
    assert [r.getMessage() for r in caplog.records] == ["something else",
                                                         "`torch_dtype` is deprecated! Use `dtype` instead!"]
    assert not logger.filters


def test_silenced_python_warnings_are_only_the_named_ones():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with silenced(warned=((FutureWarning, "`gradient_checkpointing` is deprecated"),)):
            warnings.warn("`gradient_checkpointing` is deprecated and will be removed", FutureWarning)
            warnings.warn("`other` is deprecated", FutureWarning)
    assert [str(w.message) for w in seen] == ["`other` is deprecated"]
