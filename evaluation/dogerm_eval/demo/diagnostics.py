"""Why merging helps in the miniature world: numbers per lambda, computed in memory from the world's models.

For each lambda the merged reward model (the weights ``dogerm-sweep`` writes, from
``dogerm_mergekit.inmemory.InMemoryMerger``) is scored on the world's pairs; next to its pair accuracy stand

- ``margin_corr``: Pearson correlation, over the arithmetic pairs, of the merged RM's margin
  ``score(chosen) - score(rejected)`` with the domain LM's margin ``log p(chosen) - log p(rejected)`` (summed
  response log-probabilities): how much the RM's judgement follows what the domain LM knows;
- ``verdict``: (for LMs) the share of pairs whose chosen answer gets a higher ``true``-minus-``false`` logit
  than the rejected one at the final ``.`` of the judged text, the position the RM's head reads;
- ``probe``: held-out accuracy of a linear probe (logistic regression, 2-fold over pairs) that tells correct
  from wrong arithmetic answers from the last-token hidden state the ``score`` head reads: whether correctness is
  linearly readable there at all, whatever the head does with it.

Along the weight path itself: ``weight_vs_output_path`` sets the merged RM's pair accuracy beside that of
interpolating the endpoints' margins (an output ensemble), ``lm_path_verdicts`` the LM ``base + alpha * (domain -
base)``'s verdicts: where a fine-tune's skill appears along its own delta.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from transformers import LlamaForCausalLM, LlamaForSequenceClassification, PreTrainedTokenizerFast

from dogerm_eval.demo.data import RM_ONLY, chat
from dogerm_eval.demo.training import pad_batch, verdict_accuracy

Row = dict[str, Any]


def _texts(tokenizer: PreTrainedTokenizerFast, rows: Sequence[Row], prefix: str = "") -> list[str]:
    """Chat texts of every row's chosen, then every row's rejected response."""
    return [chat(tokenizer, r["prompt"], prefix + r[side]) for side in ("chosen", "rejected") for r in rows]


@torch.no_grad()
def rm_scores(
    rm: LlamaForSequenceClassification, tokenizer: PreTrainedTokenizerFast, texts: Sequence[str]
) -> torch.Tensor:
    """The reward of each text (one batch; the worlds' texts are short)."""
    ids, mask = pad_batch([tokenizer(t)["input_ids"] for t in texts], tokenizer.pad_token_id)
    return rm(input_ids=ids, attention_mask=mask).logits.squeeze(-1).float()


@torch.no_grad()
def last_hidden(model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, texts: Sequence[str]) -> torch.Tensor:
    """Final-norm hidden state at the last non-pad token (where the RM's ``score`` head reads)."""
    ids, mask = pad_batch([tokenizer(t)["input_ids"] for t in texts], tokenizer.pad_token_id)
    hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
    last = (ids != tokenizer.pad_token_id).long().cumsum(1).argmax(1)
    return hidden[torch.arange(len(texts)), last].float()


@torch.no_grad()
def lm_margins(lm: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, rows: Sequence[Row]) -> torch.Tensor:
    """Per pair, summed log-probability of the chosen response minus that of the rejected one under ``lm``."""
    seqs, starts = [], []
    for side in ("chosen", "rejected"):
        for r in rows:
            starts.append(len(tokenizer(chat(tokenizer, r["prompt"]))["input_ids"]))
            seqs.append(tokenizer(chat(tokenizer, r["prompt"], r[side]))["input_ids"])
    ids, mask = pad_batch(seqs, tokenizer.pad_token_id)
    logp = torch.log_softmax(lm(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)
    token_logp = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
    keep = mask[:, 1:].clone()
    for i, s in enumerate(starts):
        keep[i, : s - 1] = 0
    total = (token_logp * keep).sum(1)
    return total[: len(rows)] - total[len(rows) :]


def probe_accuracy(features: torch.Tensor, n_pairs: int, l2: float = 1e-2, steps: int = 200) -> float:
    """2-fold held-out accuracy of logistic regression telling chosen (first ``n_pairs`` rows) from rejected.

    Folds split pairs, so a pair's two answers are never on both sides; features are standardised per fold.
    """
    labels = torch.cat([torch.ones(n_pairs), torch.zeros(n_pairs)])
    pair = torch.arange(n_pairs).repeat(2)
    correct = 0.0
    for fold in (0, 1):
        train, test = pair % 2 != fold, pair % 2 == fold
        mean, std = features[train].mean(0), features[train].std(0) + 1e-6
        x_train, x_test = (features[train] - mean) / std, (features[test] - mean) / std
        w = torch.zeros(features.shape[1] + 1, requires_grad=True)
        optimizer = torch.optim.LBFGS([w], max_iter=steps, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            logits = x_train @ w[:-1] + w[-1]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels[train])
            loss = loss + l2 * w[:-1].square().sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        with torch.no_grad():
            correct += ((x_test @ w[:-1] + w[-1] > 0).float() == labels[test]).sum().item()
    return correct / len(labels)


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm() + 1e-12))


def diagnose(
    rm: LlamaForSequenceClassification,
    lm: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    rows: Sequence[Row],
    lambdas: Iterable[float],
    merged_state: Callable[[float], dict[str, torch.Tensor]],
) -> list[dict[str, float]]:
    """Per lambda: pair accuracy per subset of ``rows`` (and on the RM-only pairs, key ``rm-only``: what only the
    RM was taught, which fades as lambda grows), ``margin_corr`` and ``probe`` on the arithmetic rows.

    ``rm`` and ``lm`` are the world's RM and domain LM (left unchanged); ``tokenizer`` is the RM's;
    ``merged_state(lam)`` gives the merged weights (``InMemoryMerger(rm, lm).state_dict``).
    """
    subsets = sorted({r["subset"] for r in rows})
    by_subset = {s: [r for r in rows if r["subset"] == s] for s in subsets}
    rm_only = [r for r in rows if r.get("rejected_model") == RM_ONLY]
    if rm_only:
        by_subset[RM_ONLY] = rm_only
    arithmetic = by_subset["arithmetic"]
    lm_margin = lm_margins(lm, tokenizer, arithmetic)
    merged = LlamaForSequenceClassification(rm.config).eval()
    out = []
    for lam in lambdas:
        merged.load_state_dict(merged_state(lam))
        result = {"lambda": float(lam)}
        for subset, subset_rows in by_subset.items():
            scores = rm_scores(merged, tokenizer, _texts(tokenizer, subset_rows))
            n = len(subset_rows)
            result[subset] = float((scores[:n] > scores[n:]).float().mean())
            if subset == "arithmetic":
                result["margin_corr"] = _pearson(scores[:n] - scores[n:], lm_margin)
        result["probe"] = probe_accuracy(last_hidden(merged, tokenizer, _texts(tokenizer, arithmetic)), len(arithmetic))
        out.append(result)
    return out


def lm_diagnostics(lm: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, rows: Sequence[Row]) -> dict[str, float]:
    """What an LM (base or domain) knows: its verdict accuracy per subset, its log-prob preference and the probe
    on the arithmetic pairs."""
    out = {}
    for subset in sorted({r["subset"] for r in rows}):
        subset_rows = [r for r in rows if r["subset"] == subset]
        out[f"verdict_{subset}"] = verdict_accuracy(lm, tokenizer, subset_rows)
    arithmetic = [r for r in rows if r["subset"] == "arithmetic"]
    out["logprob_arithmetic"] = float((lm_margins(lm, tokenizer, arithmetic) > 0).float().mean())
    out["probe_arithmetic"] = probe_accuracy(last_hidden(lm, tokenizer, _texts(tokenizer, arithmetic)), len(arithmetic))
    return out


@torch.no_grad()
def weight_vs_output_path(
    rm: LlamaForSequenceClassification,
    tokenizer: PreTrainedTokenizerFast,
    rows: Sequence[Row],
    lambdas: Sequence[float],
    merged_state: Callable[[float], dict[str, torch.Tensor]],
) -> list[dict[str, float]]:
    """Per lambda and subset: pair accuracy of the merged RM (``weights/<subset>``) next to that of interpolating
    the two endpoints' margins pair by pair, ``(1 - lambda) * m(0) + lambda * m(1)`` (``outputs/<subset>``).

    ``outputs`` is what an ensemble of the RM and the domain backbone (under the RM's head) would score; where the
    merge lags it, a fine-tune's skill needs more of its own weight delta than lambda gives it (the miniature's
    late arithmetic gain, docs/demo-research.md section 8). ``merged_state`` as in :func:`diagnose`.
    """
    by_subset = {s: [r for r in rows if r["subset"] == s] for s in sorted({r["subset"] for r in rows})}
    merged = LlamaForSequenceClassification(rm.config).eval()
    margins: dict[float, dict[str, torch.Tensor]] = {}
    for lam in sorted({0.0, 1.0, *map(float, lambdas)}):
        merged.load_state_dict(merged_state(lam))
        margins[lam] = {}
        for subset, subset_rows in by_subset.items():
            scores = rm_scores(merged, tokenizer, _texts(tokenizer, subset_rows)).double()
            margins[lam][subset] = scores[: len(subset_rows)] - scores[len(subset_rows) :]
    out = []
    for lam in map(float, lambdas):
        result = {"lambda": lam}
        for subset in by_subset:
            ensemble = (1 - lam) * margins[0.0][subset] + lam * margins[1.0][subset]
            result[f"weights/{subset}"] = float((margins[lam][subset] > 0).double().mean())
            result[f"outputs/{subset}"] = float((ensemble > 0).double().mean())
        out.append(result)
    return out


@torch.no_grad()
def lm_path_verdicts(
    base: LlamaForCausalLM,
    domain: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    rows: Sequence[Row],
    alphas: Sequence[float],
) -> list[dict[str, float]]:
    """Verdict accuracy per subset of the LM ``base + alpha * (domain - base)``: where along its own weight delta
    the domain LM's skill appears (and, without replay, its general verdicts go). The domain's extra vocabulary rows
    (``[PAD]``) are dropped; ``tokenizer`` is the base's."""
    base_state, domain_state = base.state_dict(), domain.state_dict()
    lm = LlamaForCausalLM(base.config).eval()
    by_subset = {s: [r for r in rows if r["subset"] == s] for s in sorted({r["subset"] for r in rows})}
    out = []
    for alpha in map(float, alphas):
        lm.load_state_dict({k: v + alpha * (domain_state[k][: v.shape[0]] - v) for k, v in base_state.items()})
        out.append({"alpha": alpha, **{s: verdict_accuracy(lm, tokenizer, r) for s, r in by_subset.items()}})
    return out
