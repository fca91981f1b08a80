"""Network evaluations and wall time of 50-point Euler sampling with guidance, ours vs the official scheme.

The official cost is run, not only counted: CFG as `forward_with_cfg` does it (the doubled batch at every
step, i.e. our CFG with the interval widened to [0, 1] — same rows, the interval only changes which
output is kept), autoguidance as `sample_ddp.py` does it (a doubled batch through both models).

    .venv/bin/python benchmarks/sampling_cost.py --batch 8 --repeats 3 --threads 1

Prints a markdown table; copy it into benchmarks/results/<date>_<machine>_sampling_cost.md.
"""
import argparse
import math
import time

import torch

from rae_xla import flow
from rae_xla.models.ditdh import DiTDH

# A small DiT^DH (the released XL / S shapes would take minutes per run on a 2-core CPU); the weak model
# has a narrower, shallower trunk, as DiT^DH-S is to DiT^DH-XL.
MAIN = dict(input_size=8, patch_size=1, in_channels=16, hidden_size=[192, 256], depth=[4, 1], num_heads=[4, 4],
            num_classes=1000)
WEAK = dict(MAIN, hidden_size=[96, 256], depth=[2, 1], num_heads=[2, 4])
ALPHA = math.sqrt(48)  # the released 256-px α (768×16×16 / 4096), so the grid and interval hits match the release
NUM_STEPS = 50


def cases(weak):
    return [
        ("no guidance", None, None),
        ("CFG 1.5, [0, 1]", dict(method="cfg", scale=1.5, t_min=0.0, t_max=1.0), None),
        ("CFG 1.5, [0.2, 0.8]", dict(method="cfg", scale=1.5, t_min=0.2, t_max=0.8),
         dict(method="cfg", scale=1.5, t_min=0.0, t_max=1.0)),
        ("CFG 1.5, [0, 0.7]", dict(method="cfg", scale=1.5, t_min=0.0, t_max=0.7),
         dict(method="cfg", scale=1.5, t_min=0.0, t_max=1.0)),
        ("AG 1.42, [0, 1] (released)", dict(method="autoguidance", scale=1.42, t_min=0.0, t_max=1.0, model=weak),
         "doubled"),
    ]


def timed(fn, repeats):
    fn()  # warm-up
    best = math.inf  # best of N: the box is shared, the minimum is the least disturbed run
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: steadier on a shared box)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, weak = DiTDH(**MAIN).eval(), DiTDH(**WEAK).eval()
    noise = torch.randn(args.batch, 16, 8, 8)
    labels = torch.randint(0, 1000, (args.batch,))
    print(f"| case | ours: main rows | ours: weak rows | official: main rows | official: weak rows | ours s | official s |")
    print("|---|---|---|---|---|---|---|")
    for name, guidance, official in cases(weak):
        cost = flow.sampling_cost(method="euler", num_steps=NUM_STEPS, shift=ALPHA, batch_size=args.batch,
                                  guidance=guidance)
        ours_s = timed(lambda: flow.sample(model, noise, labels, method="euler", num_steps=NUM_STEPS, shift=ALPHA,
                                           guidance=guidance), args.repeats)
        if official is None:
            official_s = ours_s  # the official layout costs the same rows here
        elif official == "doubled":
            official_s = timed(lambda: flow.sample(model, torch.cat([noise, noise]), torch.cat([labels, labels]),
                                                   method="euler", num_steps=NUM_STEPS, shift=ALPHA,
                                                   guidance=guidance), args.repeats)
        else:
            official_s = timed(lambda: flow.sample(model, noise, labels, method="euler", num_steps=NUM_STEPS,
                                                   shift=ALPHA, guidance=official), args.repeats)
        o, r = cost["ours"], cost["official"]
        print(f"| {name} | {o['main']} | {o['weak']} | {r['main']} | {r['weak']} | {ours_s:.2f} | {official_s:.2f} |")


if __name__ == "__main__":
    main()
