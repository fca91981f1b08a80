"""The stage-1 discriminator, DiffAug and adaptive weight under torch_xla on CPU, compared with eager.

Usage: PJRT_DEVICE=CPU CPU_NUM_DEVICES=4 python tests/losses/stage1_xla_check.py {plain|spmd}
Two compiled functions (torch_xla.compile, full_graph=True, at most 1 graph each: a host sync or a recompile
inside raises), each run 3 times with new inputs:
  d_step: the official discriminator step -- two train-mode calls (fake, real: one spectral-norm power
          iteration each), hinge loss, backward. Checks logits, loss, every head gradient and the updated
          weight_u / weight_v buffers.
  g_step: a tiny decoder's reconstruction -> DiffAug (injected draws) -> eval-mode discriminator -> vanilla G
          loss; L1 + LPIPS-like loss; the adaptive weight (two autograd.grad calls w.r.t. decoder_pred.weight,
          inside the graph); total-loss backward. Checks the weight, the total loss and the decoder gradients.
spmd: the same with the batch sharded over ('data', 'fsdp') = (2, 2), each >=2-D weight's largest dim on 'fsdp'
and the spectral-norm u, v annotated as replicated (without that annotation the second D step compiles a second
graph). Passed on 2026-12-01 (6 checks, 1 graph each, 0 fallbacks); it compiles for ~5 min on 2 busy cores, so the
test suite runs 'plain' only.
Prints one JSON line per check and OK; exits non-zero on the first failure.
"""
import copy
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

from rae_xla.losses import gan  # noqa: E402
from rae_xla.losses.diffaug import diffaug  # noqa: E402
from tests.losses.stage1_helpers import TinyDecoder, golden_discriminator, lpips_like, manifest_case  # noqa: E402

# Logits, losses, buffers, the adaptive weight: |err| / max(1, |value|). Float32 rounding gives ~1e-5, but the
# LeakyReLU slope flip below also moves the G step's adaptive weight (a ratio of gradient norms): 1.9e-4 was seen
# once in a CI run, so 1e-3; a wrong formula or a missing term errs by O(1).
RTOL = 1e-3
# Gradients, relative to the largest: XLA's float32 kernels round differently from eager, and a head activation
# within rounding of 0 then takes the other LeakyReLU slope (0.2 vs 1) for one token, which moves the weight
# gradients of that head by ~1e-3 of the largest gradient (seen in 1 of 3 calls); without a flip they agree to 2e-6.
GRAD_RTOL = 5e-3
BATCH = 4           # one row per device in spmd mode


def d_step(disc, fake, real):
    logits_fake = disc(fake, power_iteration=True)
    logits_real = disc(real, power_iteration=True)
    loss = gan.hinge_d_loss(logits_real, logits_fake)
    loss.backward()
    buffers = {k: v for k, v in disc.state_dict().items() if k.endswith(("weight_u", "weight_v"))}
    return dict(logits_fake=logits_fake, logits_real=logits_real, loss=loss,
                accuracy=gan.discriminator_accuracy(logits_real, logits_fake),
                **{f"grad/{k}": p.grad for k, p in disc.named_parameters()}, **{f"buf/{k}": v for k, v in buffers.items()})


def g_step(decoder, disc, z, images, rand3, rand01):
    recon = decoder(z)
    recon_total = (recon - images).abs().mean() + lpips_like(2 * images - 1, 2 * recon - 1)
    logits = disc(diffaug(2 * recon - 1, prob=1.0, cutout=0.0, rand3=rand3, rand01=rand01), power_iteration=False)
    gan_loss = gan.vanilla_g_loss(logits)
    weight = gan.adaptive_weight(recon_total, gan_loss, decoder.decoder_pred.weight, 1e4)
    total = recon_total + 0.75 * weight * gan_loss
    total.backward()
    return dict(weight=weight, total=total, **{f"grad/{k}": p.grad for k, p in decoder.named_parameters()})


def inputs(seed):
    g = torch.Generator().manual_seed(seed)
    cfg = manifest_case("adaptive_weight")["tiny_decoder"]["config"]
    images = torch.rand(BATCH, 3, 32, 32, generator=g)
    return dict(fake=torch.rand(BATCH, 3, 64, 64, generator=g) * 2 - 1,
                real=torch.rand(BATCH, 3, 64, 64, generator=g) * 2 - 1,
                z=torch.randn(BATCH, cfg["grid"] ** 2, cfg["cz"], generator=g), images=images,
                rand3=torch.rand(3, generator=g), rand01=torch.rand(7, BATCH, 1, 1, generator=g))


def compare(name, eager, device_out, compiles):
    worst_abs, worst_grad = 0.0, 0.0
    grad_scale = max([v.abs().max().item() for k, v in eager.items() if k.startswith("grad/")] or [1.0])
    for key, ref in eager.items():
        err = (device_out[key].cpu().float() - ref.float()).abs()
        if key.startswith("grad/"):
            worst_grad = max(worst_grad, err.max().item() / grad_scale)
        else:
            worst_abs = max(worst_abs, (err / ref.float().abs().clamp(min=1.0)).max().item())
    result = dict(check=name, max_rel_err=worst_abs, max_grad_err_rel=worst_grad, compiles=compiles,
                  fallbacks=met.executed_fallback_ops())
    print(json.dumps(result), flush=True)
    if worst_abs > RTOL or worst_grad > GRAD_RTOL or compiles != 1 or result["fallbacks"]:
        sys.exit(f"FAILED {result}")


def main(mode):
    shard = lambda *tensors: None  # noqa: E731
    if mode == "spmd":
        xr.use_spmd()             # before any device tensor exists
        n = xr.global_runtime_device_count()
        mesh = xs.Mesh(np.arange(n), (2, n // 2), ("data", "fsdp"))

        def shard(*tensors):  # noqa: F811
            for t in tensors:
                xs.mark_sharding(t, mesh, (("data", "fsdp"),) + (None,) * (t.dim() - 1))

    device = torch_xla.device()
    disc = golden_discriminator().train()
    cfg = manifest_case("adaptive_weight")["tiny_decoder"]["config"]
    torch.manual_seed(0)
    decoder = TinyDecoder(**cfg)
    xla_disc, xla_decoder = copy.deepcopy(disc).to(device), copy.deepcopy(decoder).to(device)
    if mode == "spmd":
        for p in list(xla_disc.parameters()) + list(xla_decoder.parameters()):
            if p.dim() >= 2:
                spec = [None] * p.dim()
                spec[int(np.argmax(p.shape))] = "fsdp"
                xs.mark_sharding(p, mesh, tuple(spec))
        # The spectral-norm vectors are updated in place by the step. Left unannotated, they come back from the
        # first graph with whatever sharding XLA propagated onto them, and the second call compiles a second
        # graph; an explicit (replicated) annotation is kept across the in-place update.
        for buf in xla_disc.spectral_norm_buffers().values():
            xs.mark_sharding(buf, mesh, (None,))
    compiled_d = torch_xla.compile(d_step, full_graph=True, name="d_step", max_different_graphs=1)
    compiled_g = torch_xla.compile(g_step, full_graph=True, name="g_step", max_different_graphs=1)
    for step_name, fn, compiled, args in (
            ("d_step", d_step, compiled_d, lambda m, x: (m[1], x["fake"], x["real"])),
            ("g_step", g_step, compiled_g, lambda m, x: (m[0], m[1], x["z"], x["images"], x["rand3"], x["rand01"]))):
        before = met.counter_value("UncachedCompile") or 0
        for seed in range(3):
            x = inputs(seed)
            for module in (disc, decoder, xla_disc, xla_decoder):
                module.zero_grad(set_to_none=True)
            eager = {k: v.detach().clone() for k, v in fn(*args((decoder, disc), x)).items()}
            dev = {k: v.to(device) for k, v in x.items()}
            shard(*[dev[k] for k in ("fake", "real", "z", "images")])
            out = compiled(*args((xla_decoder, xla_disc), dev))
            torch_xla.sync()
            compare(f"{mode}_{step_name}_call{seed}", eager, out, (met.counter_value("UncachedCompile") or 0) - before)
    print("OK")


if __name__ == "__main__":
    main(sys.argv[1])
