"""Stage-2 flow matching: path and loss, training times with the dimension shift, samplers, guidance.

Pure tensor functions: nothing here imports the XLA runtime or names a device (docs/design.md).
"""
from rae_xla.flow.cost import sampling_cost
from rae_xla.flow.guidance import Guidance, GuidedVelocity, guidance_from_config, parse_guidance
from rae_xla.flow.path import flow_matching_loss, interpolate
from rae_xla.flow.adaptive import integrate_dopri5
from rae_xla.flow.samplers import ADAPTIVE_METHODS, METHODS, diffusion_coefficient, sample
from rae_xla.flow.schedule import (sample_training_time, sampling_grid, shift_time, time_shift_alpha,
                                   training_time_from_uniform)

__all__ = [
    "ADAPTIVE_METHODS", "Guidance", "GuidedVelocity", "METHODS", "diffusion_coefficient", "flow_matching_loss",
    "guidance_from_config",
    "integrate_dopri5", "interpolate", "parse_guidance", "sample", "sample_training_time", "sampling_cost",
    "sampling_grid", "shift_time", "time_shift_alpha", "training_time_from_uniform",
]
