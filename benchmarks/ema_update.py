"""Time one EMA update: two foreach calls (what ema_update_ does on CUDA) against the per-tensor loop (the official
update, and what ema_update_ does on CPU).

    python benchmarks/ema_update.py --blocks 12 --width 384     # DiT^DH-S-like trunk, ~190 tensors
Prints ms per update (median of --repeats) for both. Parameter shapes follow a DiT block (qkv, proj, SwiGLU MLP,
adaLN, norms) so the tensor count and sizes are realistic; values are random.
"""

import argparse
import statistics
import time

import torch

from rae_xla.train import ema


def dit_like_params(blocks: int, width: int) -> list[torch.Tensor]:
    hidden = int(width * 4 * 2 / 3)  # SwiGLU hidden size
    shapes = []
    for _ in range(blocks):
        shapes += [(3 * width, width), (3 * width,), (width, width), (width,), (2 * hidden, width), (2 * hidden,),
                   (width, hidden), (width,), (6 * width, width), (6 * width,), (width,), (width,)]
    return [torch.randn(s) for s in shapes]


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=12)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    params = dit_like_params(args.blocks, args.width)
    ema_params = [p.clone() for p in params]
    numel = sum(p.numel() for p in params)

    def official_loop():
        with torch.no_grad():
            for e, p in zip(ema_params, params):
                e.mul_(0.9995).add_(p, alpha=1 - 0.9995)

    print(f"{len(params)} tensors, {numel / 1e6:.1f}M parameters, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    def foreach():
        torch._foreach_mul_(ema_params, 0.9995)
        torch._foreach_add_(ema_params, params, alpha=1 - 0.9995)

    for name, fn in [("foreach (CUDA path)", foreach), ("per-tensor loop (official)", official_loop),
                     ("ema_update_ on CPU", lambda: ema.ema_update_(ema_params, params, 0.9995)),
                     ("foreach again (order check)", foreach)]:
        print(f"{name}: {median_ms(fn, args.repeats):.2f} ms")


if __name__ == "__main__":
    main()
