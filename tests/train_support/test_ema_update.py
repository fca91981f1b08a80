"""EMA: closed form, the step-by-step definition, bit-equality with the official mul_/add_ loop, XLA."""

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


def test_bit_equal_to_official_update_loop():
    """The official update_ema: ema.mul_(decay).add_(param, alpha=1 - decay), float32."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4))
    ours, official = ema.init_ema(model), ema.init_ema(model)
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ema.ema_update_(*ema.paired_parameters(ours, model), 0.9978)
        with torch.no_grad():
            for (_, e), (_, p) in zip(official.named_parameters(), model.named_parameters()):
                e.mul_(0.9978).add_(p.data, alpha=1 - 0.9978)
    for a, b in zip(ours.parameters(), official.parameters()):
        assert torch.equal(a, b)


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
