"""DiT^DH throughput on this machine: forward and training-step (forward + backward + AdamW) images/s, and the
achieved FLOP/s against the analytic count (rae_xla.models.flops, 2 x MACs; a training step = 3 x forward),
as a fraction of a measured fp32 matmul peak.

Default = the reference setting the official code was timed on (latent 768x16x16, hidden [384, 768],
depth [4, 1], heads [6, 12], batch 8, fp32, 2 CPU threads: official ~1.6 img/s train step, 5.1 img/s forward).
    .venv/bin/python benchmarks/model_throughput.py [--preset DiTDH-S] [--batch 8] [--threads 2] [--repeats 3]
Eager PyTorch only (the XLA path is measured by the trainer's benchmark). Median of timed iterations per repeat.
"""
import argparse
import json
import os
import statistics
import time

import torch

from rae_xla.models import build_stage2_model, stage2_preset
from rae_xla.models.flops import ditdh_forward_flops

REFERENCE = dict(hidden_size=[384, 768], depth=[4, 1], num_heads=[6, 12])


def matmul_peak(size: int = 1024, iters: int = 20) -> float:
    """fp32 FLOP/s of a square matmul, best of `iters` (the practical compute ceiling of this CPU)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(iters):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


def time_it(fn, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="reference", help="'reference' or a rae_xla.models.PRESETS name")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    if args.preset == "reference":
        spec = stage2_preset("DiTDH-S", **REFERENCE)
    else:
        spec = stage2_preset(args.preset)
    model = build_stage2_model(**spec)
    flops_fwd = ditdh_forward_flops(**spec)
    c, g = spec["in_channels"], spec["input_size"]
    x, t = torch.randn(args.batch, c, g, g), torch.rand(args.batch)
    y = torch.randint(0, spec["num_classes"], (args.batch,))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4, betas=(0.9, 0.95),
                            weight_decay=0.0)

    def forward():
        model.eval()
        with torch.no_grad():
            model(x, t, y)

    def train_step():
        model.train()
        loss = (model(x, t, y) - x).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for repeat in range(args.repeats):
        # Re-measured every repeat: the CPU is shared, so the ceiling moves with the other load.
        peak = matmul_peak()
        fwd_s = time_it(forward, args.warmup, args.iters)
        train_s = time_it(train_step, args.warmup, args.iters)
        result = dict(repeat=repeat, preset=args.preset, batch=args.batch, threads=args.threads,
                      params=sum(p.numel() for p in model.parameters()),
                      gflop_fwd_per_image=round(flops_fwd / 1e9, 3),
                      fwd_images_per_s=round(args.batch / fwd_s, 2),
                      train_images_per_s=round(args.batch / train_s, 2),
                      fwd_gflops=round(args.batch * flops_fwd / fwd_s / 1e9, 1),
                      train_gflops=round(3 * args.batch * flops_fwd / train_s / 1e9, 1),
                      matmul_peak_gflops=round(peak / 1e9, 1), load_avg_1min=os.getloadavg()[0])
        result["fwd_frac_of_peak"] = round(result["fwd_gflops"] * 1e9 / peak, 3)
        result["train_frac_of_peak"] = round(result["train_gflops"] * 1e9 / peak, 3)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
