"""Throughput of dogerm-eval's fast scorer against a RewardBench-style loop, on the same model and data, in one run.

The baseline scores the chosen texts, then the rejected texts, in dataset order in batches of 8 (RewardBench's CLI
batch size), padded on the tokenizer's side as run_rm.py does. (The CLI forces left padding; in one fp32 CPU run here
that baseline differed from the fast path by up to 2.2e-4, against 8e-6 with right padding.) The fast path is
``RewardScorer.score`` on all pairs (format, tokenize once, de-duplicate, sort by length, batch by token budget).
Prints pairs/s of both, the speed-up and the largest per-example score difference.

    python benchmarks/eval_throughput.py        # tiny random Llama RM (4 layers, hidden 256), CPU, fp32, 1 thread
    python benchmarks/eval_throughput.py --device cuda --dtype bfloat16 --layers 8 --hidden 1024 --rows 2000
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from dogerm_eval.formatting import FormatSettings, format_conversation
from dogerm_eval.options import SCORING_DTYPES
from dogerm_eval.scorer import RewardScorer
from dogerm_mergekit.dtypes import by_name
from dogerm_mergekit.testing import build_tiny_rm

WORDS = (
    "the a reward model answer question because step first then so we add two numbers code return value function "
    "list sort python explain why sky blue light scattering safety refuse help user assistant math proof total"
).split()


def words(rng: random.Random, median: float, sigma: float, cap: int) -> str:
    """A run of words whose count is log-normal (RewardBench's lengths span short chats to long code)."""
    count = min(cap, max(1, int(rng.lognormvariate(np.log(median), sigma))))
    return " ".join(rng.choices(WORDS, k=count))


def make_rows(count: int, seed: int) -> list[tuple[str, str, str]]:
    """(prompt, chosen, rejected) rows; a third of the prompts appear in three subsets with the same chosen
    response and different rejected ones, as alpacaeval-easy/-length/-hard share prompts and chosen answers."""
    rng = random.Random(seed)
    rows: list[tuple[str, str, str]] = []
    while len(rows) < count:
        prompt = words(rng, 25, 0.9, 400)
        chosen = words(rng, 80, 1.0, 1500)
        for _ in range(3 if rng.random() < 1 / 3 else 1):
            rows.append((prompt, chosen, words(rng, 80, 1.0, 1500)))
    return rows[:count]


def baseline_scores(model_dir: Path, texts: list[str], max_length: int, dtype: torch.dtype, device: str) -> np.ndarray:
    """Batches of 8 in dataset order on the tokenizer's padding side, as RewardBench runs a classifier."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
    scores: list[float] = []
    with torch.no_grad():
        for start in range(0, len(texts), 8):
            inputs = tokenizer(
                texts[start : start + 8], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            ).to(device)
            scores.extend(model(**inputs).logits[:, 0].float().cpu().tolist())
    return np.array(scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="reward model folder (default: build a tiny random one)")
    parser.add_argument("--rows", type=int, default=300, help="preference rows (pairs); 2 texts each")
    parser.add_argument("--dtype", default="float32", choices=SCORING_DTYPES)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for both runs")
    parser.add_argument("--batch-tokens", type=int, help="fast path token budget (default: the scorer's)")
    parser.add_argument("--layers", type=int, default=4, help="layers of the built model")
    parser.add_argument("--hidden", type=int, default=256, help="hidden size of the built model")
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or build_tiny_rm(
            Path(tmp) / "rm", num_layers=args.layers, hidden_size=args.hidden, seed=args.seed
        )
        rows = make_rows(args.rows, args.seed)
        settings = FormatSettings(max_length=args.max_length)
        scorer = RewardScorer(
            str(model_dir), settings, dtype=args.dtype, device=args.device, token_budget=args.batch_tokens
        )
        chosen = [format_conversation(scorer.tokenizer, p, c, settings) for p, c, _ in rows]
        rejected = [format_conversation(scorer.tokenizer, p, r, settings) for p, _, r in rows]
        encoded = scorer.tokenizer(chosen + rejected, truncation=True, max_length=args.max_length)["input_ids"]
        lengths = [len(ids) for ids in encoded]
        print(f"model: {model_dir} ({args.dtype}, {args.device}, {args.threads} thread(s))")
        print(
            f"data: {len(rows)} pairs, {len(set(chosen + rejected))} distinct of {2 * len(rows)} texts, "
            f"tokens per text median {int(np.median(lengths))}, max {max(lengths)}, total {sum(lengths)}"
        )

        start = time.perf_counter()
        slow = np.concatenate([
            baseline_scores(model_dir, texts, args.max_length, by_name(args.dtype).torch, args.device)
            for texts in (chosen, rejected)
        ])
        baseline_s = time.perf_counter() - start

        start = time.perf_counter()
        fast = scorer.score([(p, c) for p, c, _ in rows] + [(p, r) for p, _, r in rows])
        fast_s = time.perf_counter() - start

    print(f"baseline (batch 8, dataset order): {baseline_s:8.2f} s  {len(rows) / baseline_s:8.1f} pairs/s")
    print(f"fast (token budget {scorer.token_budget}):       {fast_s:8.2f} s  {len(rows) / fast_s:8.1f} pairs/s")
    print(f"speed-up: {baseline_s / fast_s:.2f}x")
    print(f"scores: min {slow.min():.3f}, max {slow.max():.3f}, std {slow.std():.3f}")
    print(f"max |score difference| per example: {np.abs(fast - slow).max():.3e}")


if __name__ == "__main__":
    main()
