"""Run by test_xla.py in a subprocess with PJRT_DEVICE=CPU: sampling on the XLA device vs eager CPU.

Prints one JSON line with, per case, the relative error against eager, the number of distinct step
graphs `sample` asked for, the XLA compile counts after the first and the second call, and the count
after every step of the first call, as [step graph index, compile count] pairs.
"""
import json
import pathlib
import sys

import torch
import torch_xla
import torch_xla.debug.metrics as met

from rae_xla import flow
from rae_xla.models.ditdh import DiTDH

GOLDEN = pathlib.Path(sys.argv[1])


def load(config, state_dict_file):
    model = DiTDH(**config)
    model.load_state_dict(torch.load(GOLDEN / state_dict_file, weights_only=True))
    return model.eval()


def compiles():
    return met.counter_value("UncachedCompile") or 0


def main():
    cases = json.loads((GOLDEN / "manifest.json").read_text())["cases"]
    t_case = cases["transport"]
    alpha = t_case["time_dist_shift"]
    cpu_main = load(cases[t_case["model_case"]]["config"], cases[t_case["model_case"]]["state_dict"])
    cpu_weak = load(t_case["guidance_model"]["config"], t_case["guidance_model"]["state_dict"])
    dev = torch_xla.device()
    xla_main = load(cases[t_case["model_case"]]["config"], cases[t_case["model_case"]]["state_dict"]).to(dev)
    xla_weak = load(t_case["guidance_model"]["config"], t_case["guidance_model"]["state_dict"]).to(dev)

    runs = [
        ("euler_cfg_interval", "euler", dict(method="cfg", scale=2.0, t_min=0.2, t_max=0.8)),
        ("heun_plain", "heun", None),
        ("euler_autoguidance_interval", "euler", dict(method="autoguidance", scale=1.5, t_min=0.3, t_max=1.0)),
        ("sde_plain", "sde", None),
    ]
    report = {}
    for name, method, guidance in runs:
        per_step, wrapped = [], []

        def wrapper(fn, per_step=per_step, wrapped=wrapped):
            variant = len(wrapped)
            compiled = torch_xla.compile(fn, full_graph=True, name=f"sample_{variant}", max_different_graphs=1)
            wrapped.append(fn)

            def call(*args):
                out = compiled(*args)
                per_step.append((variant, compiles()))
                return out
            return call

        def run(model, weak, noise, labels, step_fn_wrapper=None):
            g = None if guidance is None else dict(guidance, **({"model": weak} if guidance["method"] == "autoguidance" else {}))
            return flow.sample(model, noise, labels, method=method, num_steps=10, shift=alpha, guidance=g,
                               step_fn_wrapper=step_fn_wrapper)

        gen = torch.Generator().manual_seed(0)
        outs, counts, before = [], [], compiles()
        for call in range(2):
            noise = torch.randn(2, 8, 4, 4, generator=gen)
            labels = torch.tensor([3, 7])
            got = run(xla_main, xla_weak, noise.to(dev), labels.to(dev), wrapper).cpu()  # sync point: test readback
            counts.append(compiles())
            if call == 0:
                graphs = len(wrapped)
            ref = run(cpu_main, cpu_weak, noise, labels) if method != "sde" else None
            outs.append(None if ref is None else ((got - ref).abs().max() / ref.abs().max()).item())
            finite = bool(torch.isfinite(got).all())
        report[name] = dict(rel_err=outs, graphs=graphs, compiles_before=before, compiles_after_call=counts,
                            per_step_first_call=per_step[:9], finite=finite)
    print("RESULT " + json.dumps(report))


if __name__ == "__main__":
    main()
