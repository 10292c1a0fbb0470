"""Sweep benchmark: K lambdas with dogerm-sweep vs the I/O floor vs K x mergekit-yaml, from one run.

Builds two random bf16 checkpoints (a LlamaForSequenceClassification RM and a LlamaForCausalLM domain model,
sharded safetensors, a 32000-token tokenizer) of TinyLlama-1.1B's shape or of Llama-2-7B's width
(``--shape llama7b``: hidden 4096, intermediate 11008, fewer layers), then prints: the K-lambda ``dogerm-sweep``
wall time and peak anonymous RSS; the I/O floor, measured right after it: writing the same K checkpoints' bytes
with ``cat`` plus one ``sync`` (through the page cache, whose speed varies widely on a busy VM); the direct-I/O
floor: as many bytes written past the page cache (the way the sweep writes them), the disk's own speed;
``mergekit-yaml`` (dogerm) wall time and peak RSS for R runs, extrapolated to K
(and said so); and the ratios.

    python benchmarks/sweep.py --workdir /tmp/dogerm-bench [--k 11] [--yaml-runs 1] [--shape tinyllama|llama7b]
"""

from __future__ import annotations

import argparse
import mmap
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
import yaml
from huggingface_hub import save_torch_state_dict
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, PreTrainedTokenizerFast

BIN = Path(sys.executable).parent


SHAPES = {
    "tinyllama": {"hidden_size": 2048, "intermediate_size": 5632, "num_attention_heads": 32, "num_key_value_heads": 4},
    "llama7b": {"hidden_size": 4096, "intermediate_size": 11008, "num_attention_heads": 32, "num_key_value_heads": 32},
}


def model_config(shape: str, layers: int):
    return AutoConfig.for_model(
        "llama", vocab_size=32000, num_hidden_layers=layers, max_position_embeddings=2048, num_labels=1,
        pad_token_id=2, bos_token_id=1, eos_token_id=2, dtype="bfloat16", **SHAPES[shape],
    )


def build(folder: Path, cls, shape: str, layers: int, seed: int) -> None:
    """Random bf16 weights in the class's real key names and shapes, 1 GB shards, plus a 32000-token tokenizer."""
    if (folder / "config.json").exists():
        return
    config = model_config(shape, layers)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in cls.from_config(config).state_dict().items()}
    generator = torch.Generator().manual_seed(seed)
    state = {k: (torch.randn(s, generator=generator) * 0.02).to(torch.bfloat16) for k, s in shapes.items()}
    folder.mkdir(parents=True, exist_ok=True)
    save_torch_state_dict(state, folder, max_shard_size="1GB")
    config.architectures = [cls.__name__.replace("AutoModelFor", "LlamaFor")]
    config.save_pretrained(folder)
    vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>"] + [f"t{i}" for i in range(31997)])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>").save_pretrained(folder)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run_measured(args: list[str]) -> tuple[float, int]:
    """Wall time and peak anonymous RSS (RssAnon sampled every 20 ms) of a command."""
    start = time.perf_counter()
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0

    def sample() -> None:
        nonlocal peak
        status = Path(f"/proc/{process.pid}/status")
        while process.poll() is None:
            try:
                line = next(x for x in status.read_text().splitlines() if x.startswith("RssAnon"))
                peak = max(peak, int(line.split()[1]) * 1024)
            except (OSError, StopIteration):
                pass
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    _, stderr = process.communicate()
    sampler.join()
    if process.returncode:
        raise RuntimeError(f"{args[0]} failed:\n{stderr[-3000:]}")
    return time.perf_counter() - start, peak


def io_floor(checkpoint: Path, copies: int, folder: Path) -> float:
    """Seconds to write ``copies`` copies of a checkpoint's files with ``cat``, plus one ``sync``."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["sync"], check=True)
    start = time.perf_counter()
    for index in range(copies):
        for file in checkpoint.iterdir():
            with (folder / f"{index}-{file.name}").open("wb") as out:
                subprocess.run(["cat", str(file)], stdout=out, check=True)
    subprocess.run(["sync"], check=True)
    elapsed = time.perf_counter() - start
    shutil.rmtree(folder)
    return elapsed


def direct_floor(nbytes: int, copies: int, folder: Path) -> float:
    """Seconds to write ``copies`` files of ``nbytes`` with direct I/O (4 MiB blocks) and fsync: the disk's own
    write speed, past the page cache (the way the sweep writes)."""
    folder.mkdir(parents=True, exist_ok=True)
    block = mmap.mmap(-1, 4 << 20)
    block.write(os.urandom(4 << 20))
    start = time.perf_counter()
    for index in range(copies):
        fd = os.open(folder / f"{index}.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o644)
        for offset in range(0, nbytes, len(block)):
            os.pwrite(fd, block, offset)
        os.fsync(fd)
        os.close(fd)
    elapsed = time.perf_counter() - start
    shutil.rmtree(folder)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dogerm-bench"))
    parser.add_argument("--k", type=int, default=11)
    parser.add_argument("--yaml-runs", type=int, default=1)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tinyllama")
    parser.add_argument("--layers", type=int, default=None, help="default: 22 (tinyllama), 4 (llama7b)")
    args = parser.parse_args()
    layers = args.layers or {"tinyllama": 22, "llama7b": 4}[args.shape]
    work = args.workdir / f"{args.shape}-{layers}"
    work.mkdir(parents=True, exist_ok=True)
    rm, lm = work / "rm", work / "lm"
    build(rm, AutoModelForSequenceClassification, args.shape, layers, 0)
    build(lm, AutoModelForCausalLM, args.shape, layers, 1)
    config = {"merge_method": "dogerm", "base_model": str(rm),
              "models": [{"model": str(lm), "parameters": {"lambda": 0.5}}]}
    config_path = work / "dogerm.yml"
    config_path.write_text(yaml.safe_dump(config))
    lambdas = [round(i / (args.k - 1), 4) for i in range(args.k)] if args.k > 1 else [0.5]

    shutil.rmtree(work / "sweep", ignore_errors=True)
    subprocess.run(["sync"], check=True)
    sweep_time, sweep_rss = run_measured([str(BIN / "dogerm-sweep"), str(config_path), str(work / "sweep"),
                                          "--lambdas", ",".join(map(str, lambdas)), "--quiet"])
    checkpoint = work / "sweep" / "lambda-0.00"
    out_bytes = folder_bytes(checkpoint)
    floor = io_floor(checkpoint, args.k, work / "floor")
    direct = direct_floor(out_bytes, args.k, work / "direct")
    shutil.rmtree(work / "sweep")

    yaml_times, yaml_rss = [], 0
    for index in range(args.yaml_runs):
        one = dict(config, models=[{"model": str(lm), "parameters": {"lambda": lambdas[index % len(lambdas)]}}])
        (work / "one.yml").write_text(yaml.safe_dump(one))
        elapsed, rss = run_measured([str(BIN / "mergekit-yaml"), str(work / "one.yml"), str(work / "one"), "--quiet"])
        yaml_times.append(elapsed)
        yaml_rss = max(yaml_rss, rss)
        shutil.rmtree(work / "one")
    one_yaml = sum(yaml_times) / len(yaml_times)

    in_bytes = sum(f.stat().st_size for s in (rm, lm) for f in s.glob("*.safetensors"))
    gib = 1 << 30
    print(f"models: 2 x {args.shape} shape ({layers} layers), bf16; K = {args.k} lambdas; {os.cpu_count()} CPUs")
    print(f"inputs {in_bytes / gib:.2f} GiB read once; outputs {args.k} x {out_bytes / gib:.2f} GiB")
    print(f"I/O floor (cat K copies + sync): {floor:8.1f} s")
    print(f"direct-I/O floor (same bytes):   {direct:8.1f} s")
    print(f"dogerm-sweep (K={args.k}):          {sweep_time:8.1f} s   peak anonymous RSS {sweep_rss / gib:.2f} GiB")
    print(f"mergekit-yaml, one merge ({args.yaml_runs} timed): {one_yaml:8.1f} s   peak anonymous RSS {yaml_rss / gib:.2f} GiB")
    print(f"sweep / I/O floor:               {sweep_time / floor:8.2f}x  (goal <= 1.3)")
    print(f"sweep / direct-I/O floor:        {sweep_time / direct:8.2f}x")
    print(f"K x mergekit-yaml / sweep:       {one_yaml * args.k / sweep_time:8.2f}x  (extrapolated from {args.yaml_runs} run(s))")


if __name__ == "__main__":
    main()
