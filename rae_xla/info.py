"""The `info` job: what this process sees — backend, devices, mesh, processes — and the resolved config."""
from __future__ import annotations

import torch
from absl import logging

from rae_xla import config as config_lib
from rae_xla.runtime import Runtime


def describe(runtime: Runtime) -> dict:
    """A JSON-friendly summary of the runtime."""
    return dict(backend=runtime.kind, device=str(runtime.device), num_devices=runtime.num_devices,
                mesh=dict(runtime.mesh_shape), process_index=runtime.process_index,
                process_count=runtime.process_count, torch=torch.__version__)


def run(config, workdir: str, runtime: Runtime) -> None:
    del workdir  # config.json is already written by main.
    for key, value in describe(runtime).items():
        logging.info("%-14s %s", key, value)
    logging.info("resolved config:\n%s", config_lib.to_json(config))
