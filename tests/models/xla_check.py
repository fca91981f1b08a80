"""Run the models under torch_xla on CPU and compare with eager; invoked by test_xla.py in a subprocess.

Usage: PJRT_DEVICE=CPU CPU_NUM_DEVICES=4 python tests/models/xla_check.py {plain|spmd}
plain: DiT^DH (golden weights), LightningDiT, RAE encode/decode -- outputs equal eager, one compiled graph per
       model and shape over 3 calls with new values, no CPU fallback ops.
spmd:  the same DiT^DH and RAE decoder with each >=2-D weight's largest dim sharded on 'fsdp' of a
       ('data', 'fsdp') = (2, 2) mesh and the batch on ('data', 'fsdp'); outputs equal eager.
Prints one JSON line per check; exits non-zero on the first failure.
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../.."))
import torch_xla  # noqa: E402
import torch_xla.debug.metrics as met  # noqa: E402
import torch_xla.distributed.spmd as xs  # noqa: E402
import torch_xla.runtime as xr  # noqa: E402

from rae_xla.checkpoint.official import load_stage2  # noqa: E402
from rae_xla.models import build_stage2_model  # noqa: E402
from rae_xla.models.rae import RAE  # noqa: E402
from tests import golden  # noqa: E402

ATOL = 1e-4


def stage2(case):
    spec = golden.manifest()["cases"][case]
    model = build_stage2_model("lightningdit" if case == "lightningdit" else "ditdh", **spec["config"]).eval()
    load_stage2(model, golden.load(spec["state_dict"]))
    return model


def rae():
    spec = golden.manifest()["cases"]["rae"]
    return RAE.from_pretrained(encoder=os.path.join(golden.TINY, spec["encoder_dir"]),
                               decoder_config=os.path.join(golden.TINY, spec["decoder_config_dir"]),
                               decoder_weights=os.path.join(golden.TINY, spec["decoder_state_dict"]),
                               stats=os.path.join(golden.TINY, spec["latent_stats"]), encoder_input_size=56,
                               decoder_patch_size=8, noise_tau=0.0).eval()


def stage2_inputs(seed, batch=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 8, 4, 4, generator=g), torch.rand(batch, generator=g), torch.randint(0, 11, (batch,),
                                                                                                    generator=g)


def check(name, fn_eager, fn_xla, make_inputs, shard_inputs=None):
    """3 calls with new values: equal to eager, exactly 1 new compile, no fallback ops."""
    before = met.counter_value("UncachedCompile") or 0
    worst = 0.0
    for seed in range(3):
        inputs = make_inputs(seed)
        with torch.no_grad():
            ref = fn_eager(*inputs)
            dev_inputs = [t.to(torch_xla.device()) for t in inputs]
            if shard_inputs:
                shard_inputs(dev_inputs)
            out = fn_xla(*dev_inputs)
            torch_xla.sync()
        worst = max(worst, (out.cpu() - ref).abs().max().item())
    compiles = (met.counter_value("UncachedCompile") or 0) - before
    fallbacks = met.executed_fallback_ops()
    result = dict(check=name, max_abs_err=worst, compiles=compiles, fallbacks=fallbacks)
    print(json.dumps(result), flush=True)
    if worst > ATOL or compiles != 1 or fallbacks:
        sys.exit(f"FAILED {result}")


def to_xla(module):
    import copy
    return copy.deepcopy(module).to(torch_xla.device())


def plain():
    for case in ("ditdh_released_flags", "ditdh_alt_flags", "lightningdit"):
        model = stage2(case)
        check(case, model, to_xla(model), stage2_inputs)
    ditdh = stage2("ditdh_released_flags")
    xla_ditdh = to_xla(ditdh)
    check("ditdh_cfg", lambda x, t, y: ditdh.forward_with_cfg(x, t, y, 2.5, (0.1, 0.9)),
          lambda x, t, y: xla_ditdh.forward_with_cfg(x, t, y, 2.5, (0.1, 0.9)),
          lambda s: (lambda x, t, y: (torch.cat([x[:2], x[:2]]), torch.cat([t[:2], t[:2]]),
                                      torch.cat([y[:2], torch.full((2,), 10)])))(*stage2_inputs(s)))
    model = rae()
    xla_rae = to_xla(model)
    check("rae_encode_resize", model.encode, xla_rae.encode,
          lambda s: (torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(s)),))
    check("rae_decode", model.decode, xla_rae.decode,
          lambda s: (torch.randn(2, 32, 4, 4, generator=torch.Generator().manual_seed(s)),))


def fsdp_shard(module, mesh):
    for p in module.parameters():
        if p.dim() >= 2:
            spec = [None] * p.dim()
            spec[int(np.argmax(p.shape))] = "fsdp"
            xs.mark_sharding(p, mesh, tuple(spec))


def spmd():
    xr.use_spmd()
    n = xr.global_runtime_device_count()
    mesh = xs.Mesh(np.arange(n), (2, n // 2), ("data", "fsdp"))

    def shard_batch(tensors):
        for t in tensors:
            xs.mark_sharding(t, mesh, (("data", "fsdp"),) + (None,) * (t.dim() - 1))

    model = stage2("ditdh_released_flags")
    xla_model = to_xla(model)
    fsdp_shard(xla_model, mesh)
    check("spmd_ditdh", model, xla_model, stage2_inputs, shard_batch)
    auto = rae()
    xla_rae = to_xla(auto)
    fsdp_shard(xla_rae, mesh)
    check("spmd_rae_encode_decode", auto.forward, xla_rae.forward,
          lambda s: (torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(s)),), shard_batch)


if __name__ == "__main__":
    {"plain": plain, "spmd": spmd}[sys.argv[1]]()
    print("OK", flush=True)
