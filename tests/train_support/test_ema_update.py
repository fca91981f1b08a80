"""EMA: closed form, the step-by-step definition, a float64 reference and bit-equality with the official update_ema
on both code paths (per-tensor loop, `_foreach_` kernels), XLA."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from rae_xla.train import ema


def test_constant_params_follow_closed_form():
    """With params held at p, ema_k = p + decay^k (ema_0 - p)."""
    torch.manual_seed(0)
    e0 = [torch.randn(3, 4, dtype=torch.float64), torch.randn(5, dtype=torch.float64)]
    p = [torch.randn(3, 4, dtype=torch.float64), torch.randn(5, dtype=torch.float64)]
    e = [t.clone() for t in e0]
    decay, k = 0.9, 37
    for _ in range(k):
        ema.ema_update_(e, p, decay)
    for got, start, target in zip(e, e0, p):
        torch.testing.assert_close(got, target + decay ** k * (start - target), rtol=1e-12, atol=1e-12)


def test_matches_definition_step_by_step_with_moving_params():
    torch.manual_seed(1)
    e = [torch.randn(6, dtype=torch.float64)]
    expected = e[0].clone()
    for step in range(20):
        p = [torch.randn(6, dtype=torch.float64) * (step + 1)]
        ema.ema_update_(e, p, 0.9995)
        expected = 0.9995 * expected + (1 - 0.9995) * p[0]
        torch.testing.assert_close(e[0], expected, rtol=1e-13, atol=1e-13)


class _ReportsCuda(torch.Tensor):
    """A CPU tensor that says it is on CUDA, so `ema_update_` takes its accelerator path (the `_foreach_` kernels)
    on a machine without a GPU; records the torch functions called on it."""
    calls: list = []

    @property
    def device(self):
        return torch.device("cuda", 0)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        cls.calls.append(getattr(func, "__name__", str(func)))
        return super().__torch_function__(func, types, args, kwargs or {})


def _as_path(tensors, path):
    """Views sharing storage with `tensors`, typed so that `ema_update_` takes `path` ('loop' or 'foreach')."""
    return list(tensors) if path == "loop" else [t.as_subclass(_ReportsCuda) for t in tensors]


def _official_update_ema(ema_model, model, decay):
    """The official `update_ema` (RAE src/train.py, as in DiT), transcribed: over named_parameters by name."""
    ema_params = dict(ema_model.named_parameters())
    with torch.no_grad():
        for name, param in model.named_parameters():
            ema_params[name].mul_(decay).add_(param.data, alpha=1 - decay)


def _dit_like_model():
    """Shapes like a DiT block's (matrices, vectors, a frozen table) in float32."""
    model = nn.ModuleDict({"qkv": nn.Linear(48, 144), "proj": nn.Linear(48, 48), "norm": nn.LayerNorm(48),
                           "table": nn.Embedding(11, 48)})
    model["table"].weight.requires_grad_(False)
    return model


@pytest.mark.parametrize("path", ["loop", "foreach"])
@pytest.mark.parametrize("decay", [0.9995, 0.9978])  # Stage 2 and stage 1.
def test_each_update_matches_a_float64_reference(path, decay):
    """ema <- decay*ema + (1-decay)*param against float64 arithmetic, one step at a time from the float32 state:
    two float32 roundings (mul, then add) stay within 2 float32 ulps of the terms' magnitudes."""
    torch.manual_seed(3)
    model = _dit_like_model()
    average = ema.init_ema(model)
    ema_params, live_params = ema.paired_parameters(average, model)
    _ReportsCuda.calls.clear()
    ulp = torch.finfo(torch.float32).eps
    for step in range(8):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * (step + 1))
        before = [e.detach().double() for e in ema_params]
        ema.ema_update_(_as_path(ema_params, path), _as_path(live_params, path), decay)
        for e, e0, p in zip(ema_params, before, live_params):
            p64 = p.detach().double()
            reference = decay * e0 + (1 - decay) * p64
            bound = 2 * ulp * (decay * e0.abs() + (1 - decay) * p64.abs()) + 1e-30
            assert bool(((e.double() - reference).abs() <= bound).all()), (path, step)
    assert ("_foreach_mul_" in _ReportsCuda.calls) == (path == "foreach")


@pytest.mark.parametrize("path", ["loop", "foreach"])
def test_bit_equal_to_the_official_update_ema(path):
    """Same float32 rounding as the official per-tensor mul_/add_ (so a run matches the official EMA bit for bit),
    on the per-tensor CPU path and on the `_foreach_` path used on accelerators."""
    torch.manual_seed(2)
    model = _dit_like_model()
    ours, official = ema.init_ema(model), ema.init_ema(model)
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ema_params, live_params = ema.paired_parameters(ours, model)
        ema.ema_update_(_as_path(ema_params, path), _as_path(live_params, path), 0.9978)
        _official_update_ema(official, model, 0.9978)
    for (name, a), b in zip(ours.named_parameters(), official.parameters()):
        assert torch.equal(a, b), name
    assert not torch.equal(ours["qkv"].weight, model["qkv"].weight)  # It moved, but not all the way.


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the real _foreach_ kernels)")
def test_cuda_foreach_kernels_are_bit_equal_to_the_official_update_ema():
    torch.manual_seed(4)
    model = _dit_like_model().cuda()
    ours, official = ema.init_ema(model), ema.init_ema(model)
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ema.ema_update_(*ema.paired_parameters(ours, model), 0.9995)
        _official_update_ema(official, model, 0.9995)
    for (name, a), b in zip(ours.named_parameters(), official.parameters()):
        assert torch.equal(a, b), name


def test_init_ema_is_frozen_eval_copy_with_own_storage():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    model.train()
    e = ema.init_ema(model)
    assert not e.training and model.training
    assert all(not p.requires_grad for p in e.parameters())
    assert all(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        model[0].weight.add_(1.0)
    assert not torch.equal(e[0].weight, model[0].weight)


def test_frozen_live_params_are_averaged_too():
    """Official EMA runs over named_parameters() including frozen ones (e.g. pos_embed)."""
    model = nn.Linear(3, 3)
    model.bias.requires_grad_(False)
    e = ema.init_ema(model)
    with torch.no_grad():
        model.bias.fill_(1.0)
        e.bias.zero_()
    ema.ema_update_(*ema.paired_parameters(e, model), 0.5)
    torch.testing.assert_close(e.bias, torch.full((3,), 0.5))


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="2 EMA tensors but 1 parameters"):
        ema.ema_update_([torch.zeros(1), torch.zeros(1)], [torch.zeros(1)], 0.9)
    with pytest.raises(ValueError, match="decay must be in"):
        ema.ema_update_([torch.zeros(1)], [torch.zeros(1)], 1.5)
    with pytest.raises(ValueError, match="only in model \\['2.bias', '2.weight'\\]"):
        ema.paired_parameters(nn.Sequential(nn.Linear(2, 2)), nn.Sequential(nn.Linear(2, 2), nn.ReLU(),
                                                                             nn.Linear(2, 2)))


@pytest.mark.xla
def test_xla_step_with_ema_and_host_lr_compiles_once():
    """On the XLA CPU device: EMA inside a compiled step equals eager CPU, and a host-float LR from the
    schedule does not recompile (the script asserts both and prints OK)."""
    script = Path(__file__).with_name("xla_ema_schedule_check.py")
    env = dict(os.environ, PJRT_DEVICE="CPU", CPU_NUM_DEVICES="1")
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "OK" in result.stdout
