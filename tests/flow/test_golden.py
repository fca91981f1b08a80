"""Parity with the official transport code: golden `official_tiny/transport.io.pt` (see golden README)."""

import pytest
import torch

from rae_xla import flow
from tests import golden

# Samplers chain several model calls: relative tolerance ~1e-4 (golden README).
SAMPLE_RTOL = 1e-4


@pytest.fixture(scope="module")
def manifest():
    return golden.manifest()["cases"]


@pytest.fixture(scope="module")
def io():
    return golden.load("transport.io.pt")


def _build(config, state_dict_file):
    from rae_xla.models.ditdh import DiTDH
    model = DiTDH(**config)
    model.load_state_dict(golden.load(state_dict_file))
    return model.eval()


@pytest.fixture(scope="module")
def model(manifest):
    case = manifest[manifest["transport"]["model_case"]]
    return _build(case["config"], case["state_dict"])


@pytest.fixture(scope="module")
def weak_model(manifest):
    g = manifest["transport"]["guidance_model"]
    return _build(g["config"], g["state_dict"])


@pytest.fixture(scope="module")
def alpha(manifest):
    return manifest["transport"]["time_dist_shift"]


def _assert_close(actual, expected, rtol):
    err = (actual - expected).abs().max().item() / expected.abs().max().item()
    assert err < rtol, f"relative error {err:.3g} ≥ {rtol}"


def test_path_values(io):
    x_t, u_t = flow.interpolate(io["data_x1"], io["noise_x0"], io["t"])
    torch.testing.assert_close(x_t, io["xt"], rtol=0, atol=1e-6)
    torch.testing.assert_close(u_t, io["ut"], rtol=0, atol=1e-6)


def test_time_sampling_map(io, alpha):
    t_raw = flow.training_time_from_uniform(io["u_grid"], dist="logit_normal", mu=0.0, sigma=1.0, alpha=1.0)
    t = flow.training_time_from_uniform(io["u_grid"], dist="logit_normal", mu=0.0, sigma=1.0, alpha=alpha)
    torch.testing.assert_close(t_raw, io["t_unshifted"], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(t, io["t_shifted"], rtol=1e-6, atol=1e-6)


def test_sampling_grid(io, alpha):
    for n, expected in io["ode_time_grid"].items():
        assert flow.sampling_grid(int(n), alpha) == expected.tolist()


def test_per_sample_loss(io, model):
    loss = flow.flow_matching_loss(model, io["data_x1"], io["loss_y"], t=io["t"], noise=io["noise_x0"])
    assert loss.shape == (3,)
    torch.testing.assert_close(loss, io["loss_per_sample"], rtol=1e-5, atol=1e-5)


def _parse_key(key):
    """'heun2_5_cfg2.0_int0.2-0.8' → (method, num_steps, guidance kind, scale, interval)."""
    name, n, rest = key.split("_", 2)
    method = {"euler": "euler", "heun2": "heun", "midpoint": "midpoint"}[name]
    if rest == "nocfg":
        return method, int(n), None
    if rest.startswith("cfg"):
        scale, interval = rest[3:].split("_int")
        lo, hi = interval.split("-")
        return method, int(n), dict(method="cfg", scale=float(scale), t_min=float(lo), t_max=float(hi))
    assert rest.startswith("autoguidance"), key
    return method, int(n), dict(method="autoguidance", scale=float(rest[len("autoguidance"):]), t_min=0.0, t_max=1.0)


# Every sample case in the golden file, read at collection: a new case is a new test (and an unknown key format
# fails in _parse_key), never silently ignored.
SAMPLE_KEYS = sorted(golden.load("transport.io.pt")["samples"])


def test_golden_sample_cases_include_every_method_and_guidance():
    parsed = [_parse_key(k) for k in SAMPLE_KEYS]
    assert {method for method, _, _ in parsed} == {"euler", "heun", "midpoint"}
    assert {None if g is None else g["method"] for _, _, g in parsed} == {None, "cfg", "autoguidance"}


@pytest.mark.parametrize("key", SAMPLE_KEYS)
def test_samples(io, model, weak_model, alpha, key):
    method, num_steps, guidance = _parse_key(key)
    if guidance is not None and guidance["method"] == "autoguidance":
        guidance["model"] = weak_model
    out = flow.sample(model, io["sample_z"], io["sample_y"], method=method, num_steps=num_steps, shift=alpha,
                      guidance=guidance)
    _assert_close(out, io["samples"][key], SAMPLE_RTOL)
