"""What the kernel's NaN/Inf check costs: the sweep kernel (``interpolate_block``, K lambdas at once) on one bf16
tensor of a 7B model's size (4096 x 11008), with and without ``check``, one torch thread as a sweep's merge threads
run. Prints the median time of each and their ratio, measured in this run.

    python benchmarks/nonfinite_check.py [--k 11] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dogerm_mergekit.method import interpolate_block


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=11, help="lambdas per sweep (outputs per input slice)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    rm = torch.randn(4096 * 11008, generator=generator).to(torch.bfloat16)
    domain = (rm.float() + 0.01 * torch.randn(rm.numel(), generator=generator)).to(torch.bfloat16)
    lambdas = [(k / max(args.k - 1, 1),) for k in range(args.k)]
    width = 1 << 18  # a sweep's staging block per output, as SweepTensor slices a tensor
    out = torch.empty((args.k, width), dtype=torch.bfloat16)

    def run(check: bool) -> float:
        start = time.perf_counter()
        for begin in range(0, rm.numel(), width):
            stop = min(begin + width, rm.numel())
            interpolate_block(rm[begin:stop], [domain[begin:stop]], lambdas, out[:, : stop - begin], check=check)
        return time.perf_counter() - start

    times = {True: [], False: []}
    for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits both alike
        for check in (False, True):
            times[check].append(run(check))
    plain, checked = statistics.median(times[False]), statistics.median(times[True])
    print(f"K={args.k}, {rm.numel() / 1e6:.0f}M elements, bf16, 1 thread, median of {args.repeats}:")
    print(f"  without the check {plain:.3f} s, with it {checked:.3f} s: ratio {checked / plain:.3f}")


if __name__ == "__main__":
    main()
