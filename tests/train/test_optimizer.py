"""ForeachAdamW and the multi-tensor clipping equal torch's own (eager CPU, < 1 s)."""
import copy

import pytest
import torch
from torch import nn

from rae_xla.train import optimizer as optimizer_lib


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.SiLU(), nn.Linear(16, 3), nn.LayerNorm(3))


def _train(model: nn.Module, opt, steps: int, clip) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    norms = []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = 1e-2 * (1 + step) ** -0.5  # A changing host LR, as the schedules set it.
        x = torch.randn(8, 6, generator=g)
        loss = model(x).pow(2).mean()
        loss.backward()
        norms.append(clip([p for p in model.parameters()], 0.05))
        opt.step()
        opt.zero_grad(set_to_none=True)
    return norms


def test_foreach_adamw_matches_torch_adamw_over_steps():
    ref, ours = _model(0), _model(0)
    kwargs = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.05)
    ref_opt = torch.optim.AdamW(ref.parameters(), foreach=False, **kwargs)
    our_opt = optimizer_lib.ForeachAdamW(ours.parameters(), **kwargs)
    ref_norms = _train(ref, ref_opt, 6, lambda ps, m: torch.nn.utils.clip_grad_norm_(ps, m, foreach=False))
    our_norms = _train(ours, our_opt, 6, optimizer_lib.clip_grad_norm_)
    # The same kernels (lerp, addcmul, addcdiv, ...) with the same scalars, only out of place: bit-identical
    # on eager CPU. (On XLA both trace to the same element-wise graph.)
    for a, b in zip(ref_norms, our_norms):
        assert torch.equal(b, a)
    for (name, a), b in zip(ref.named_parameters(), ours.parameters()):
        assert not torch.equal(a, _model(0).state_dict()[name])  # The params moved.
        assert torch.equal(b, a), name
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(our_opt.state[b][key], ref_opt.state[a][key]), (name, key)
        assert float(our_opt.state[b]["step"]) == float(ref_opt.state[a]["step"]) == 6.0


def test_one_step_with_weight_decay_matches_torch_adamw():
    ref, ours = _model(4), _model(4)
    kwargs = dict(lr=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    ref_opt = torch.optim.AdamW(ref.parameters(), foreach=False, **kwargs)
    our_opt = optimizer_lib.ForeachAdamW(ours.parameters(), **kwargs)
    x = torch.randn(8, 6)
    for m, opt in ((ref, ref_opt), (ours, our_opt)):
        m(x).pow(2).mean().backward()
        opt.step()
    for a, b in zip(ref.parameters(), ours.parameters()):
        assert torch.equal(b, a)


def test_state_dicts_load_across_implementations():
    """A torch.optim.AdamW state dict continues in ForeachAdamW (old checkpoints) and back, the same layout."""
    ref, ours = _model(2), _model(2)
    kwargs = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    ref_opt = torch.optim.AdamW(ref.parameters(), foreach=False, **kwargs)
    clip = lambda ps, m: torch.nn.utils.clip_grad_norm_(ps, m, foreach=False)  # noqa: E731
    _train(ref, ref_opt, 3, clip)
    ours.load_state_dict(ref.state_dict())
    our_opt = optimizer_lib.ForeachAdamW(ours.parameters(), **kwargs)
    our_opt.load_state_dict(copy.deepcopy(ref_opt.state_dict()))  # As from a file (torch aliases "step").
    _train(ref, ref_opt, 3, clip)
    _train(ours, our_opt, 3, clip)
    for a, b in zip(ref.parameters(), ours.parameters()):
        assert torch.equal(b, a)
    saved = our_opt.state_dict()
    assert set(saved["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    back = torch.optim.AdamW(_model(2).parameters(), **kwargs)
    back.load_state_dict(saved)
    assert float(back.state_dict()["state"][3]["step"]) == 6.0


def test_clip_grad_norm_scales_like_torch_and_reports_the_unclipped_norm():
    a, b = _model(3), _model(3)
    x = torch.randn(4, 6)
    for m in (a, b):
        m(x).sum().backward()
    ref = torch.nn.utils.clip_grad_norm_(list(a.parameters()), 0.1, foreach=False)
    ours = optimizer_lib.clip_grad_norm_(list(b.parameters()), 0.1)
    assert float(ours) > 0.1  # It clipped.
    assert torch.equal(ours, ref)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(q.grad, p.grad)


def test_prepared_steps_match_torch_adamw_to_fp32_rounding():
    """The trainer's path (prepare_step: per-step scalars as float32 tensors, for a captured XLA step) rounds
    the scalars once to float32, so it may differ from torch's in the last bit; over 6 steps it stays there."""
    ref_model, our_model = _model(0), _model(0)
    ref_opt = torch.optim.AdamW(ref_model.parameters(), lr=3e-3, weight_decay=0.1)
    our_opt = optimizer_lib.ForeachAdamW(our_model.parameters(), lr=3e-3, weight_decay=0.1)
    g = torch.Generator().manual_seed(5)
    for step in range(6):
        for group in (*ref_opt.param_groups, *our_opt.param_groups):
            group["lr"] = 3e-3 * (step + 1) / 6  # Warm-up: the prepared scalars change every step.
        for a, b in zip(ref_model.parameters(), our_model.parameters()):
            a.grad = torch.randn(a.shape, generator=g)
            b.grad = a.grad.clone()
        ref_opt.step()
        our_opt.prepare_step()
        our_opt.step()
    for (name, a), b in zip(ref_model.named_parameters(), our_model.parameters()):
        assert not torch.equal(a, _model(0).state_dict()[name])
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7, msg=name)
    assert float(our_opt.state[next(our_model.parameters())]["step"]) == 6.0


def test_a_prepared_step_needs_every_gradient():
    model = _model(0)
    opt = optimizer_lib.ForeachAdamW(model.parameters(), lr=1e-3)
    params = list(model.parameters())
    for p in params[1:]:
        p.grad = torch.ones_like(p)
    opt.prepare_step()
    with pytest.raises(ValueError, match="1 parameter"):
        opt.step()
