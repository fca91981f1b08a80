"""The quickstart run with the settings a released DiT^DH-XL run uses, for tests/train/test_stage2_release_defaults.py.

On top of configs/quickstart.py: bf16 autocast, on-device random draws, the time shift derived from the latent
shape (flow.shift unset; shift_base 256 makes alpha = sqrt(64*4*4 / 256) = 2 > 1 for the tiny 64x4x4 latents, as
sqrt(768*16*16 / 4096) = 6.93 > 1 for the real ones), label dropout 0.1 (the preset's). The latent statistics
file comes from the command line (--config.rae.stats=...), as in a real run. A config file rather than
overrides because a command-line override cannot reset flow.shift to None.
"""
import importlib.util
import os

_QUICKSTART = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "configs", "quickstart.py")
SHIFT_BASE = 256


def get_config(arg=None):
    spec = importlib.util.spec_from_file_location("quickstart", _QUICKSTART)
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    config = quickstart.get_config(arg)
    config.runtime.precision = "bf16"
    config.runtime.rng = "device"
    config.flow.shift = None  # Derived from the latent shape, as the released configs do.
    config.flow.shift_base = SHIFT_BASE
    assert config.model.class_dropout_prob == 0.1
    return config
