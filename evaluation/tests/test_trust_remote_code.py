"""`--trust-remote-code`: a reward model whose architecture lives in its own repository code is refused by default
with an error naming the flag (before anything is written), and scores like the same weights in a stock class
once the flag is given."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from dogerm_eval.cli import main
from evaluation.tests.test_judgebench import SOURCES, pair

CONFIGURATION = '''from transformers import LlamaConfig


class CustomRewardConfig(LlamaConfig):
    model_type = "dogerm-test-custom-rm"
'''
MODELING = '''import torch
from transformers import LlamaModel, LlamaPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutputWithPast

from .configuration_custom import CustomRewardConfig


class CustomRewardModel(LlamaPreTrainedModel):
    """A reward head written in the repository: the last non-pad token's hidden state, one linear score."""

    config_class = CustomRewardConfig

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = LlamaModel(config)
        self.score = torch.nn.Linear(config.hidden_size, config.num_labels, bias=False)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = self.score(hidden)
        positions = torch.arange(input_ids.shape[-1], device=input_ids.device)
        last = (positions * (input_ids != self.config.pad_token_id)).argmax(-1)
        return SequenceClassifierOutputWithPast(logits=logits[torch.arange(len(last)), last])
'''


@pytest.fixture()
def custom_rm(tiny_rm_dir: Path, tmp_path: Path) -> Path:
    """The tiny reward model's weights under a class defined in the model folder (as ArmoRM ships its head)."""
    folder = tmp_path / "custom-rm"
    shutil.copytree(tiny_rm_dir, folder)
    (folder / "configuration_custom.py").write_text(CONFIGURATION)
    (folder / "modeling_custom.py").write_text(MODELING)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="dogerm-test-custom-rm", architectures=["CustomRewardModel"],
                  auto_map={"AutoConfig": "configuration_custom.CustomRewardConfig",
                            "AutoModelForSequenceClassification": "modeling_custom.CustomRewardModel"})
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def run(model: Path, data: Path, out: Path, *extra: str):
    return CliRunner().invoke(main, ["judgebench", str(model), "--data", str(data), "--output-dir", str(out), *extra])


def test_custom_code_needs_the_flag_and_then_scores_as_the_stock_class(tiny_rm_dir: Path, custom_rm: Path,
                                                                      tmp_path: Path) -> None:
    data = tmp_path / "jb.jsonl"
    data.write_text("".join(json.dumps(pair(i, s, "A>B")) + "\n" for i, s in enumerate(SOURCES)))
    refused = run(custom_rm, data, tmp_path / "refused")
    assert refused.exit_code == 1 and "--trust-remote-code" in refused.output
    assert len(refused.output.strip().splitlines()) == 1 and not (tmp_path / "refused").exists()
    trusted = run(custom_rm, data, tmp_path / "trusted", "--trust-remote-code")
    assert trusted.exit_code == 0, trusted.output
    stock = run(tiny_rm_dir, data, tmp_path / "stock")
    assert stock.exit_code == 0, stock.output
    import pandas as pd

    custom = pd.read_parquet(tmp_path / "trusted" / custom_rm.name / "judgebench.per_example.parquet")
    plain = pd.read_parquet(tmp_path / "stock" / tiny_rm_dir.name / "judgebench.per_example.parquet")
    assert custom["score_a"].tolist() == plain["score_a"].tolist()
    assert custom["score_b"].tolist() == plain["score_b"].tolist()


@pytest.mark.parametrize("command", ["rewardbench", "suite", "sweep", "search", "generate", "bon-gsm8k", "ppe"])
def test_every_model_loading_command_offers_the_flag(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0 and "--trust-remote-code" in result.output
