"""Print what the runtime sees (backend, devices, mesh, processes) and the resolved config; trains nothing.

  python -m rae_xla.main --config=configs/info.py --workdir=/tmp/info
  PJRT_DEVICE=CPU CPU_NUM_DEVICES=4 python -m rae_xla.main --config=configs/info.py --workdir=/tmp/info \
      --config.runtime.mesh.data=2     # a (2, 2) mesh of 4 virtual XLA devices on a CPU
"""
import ml_collections

from rae_xla import config as config_lib


def get_config(arg=None):
    config_lib.parse_arg(arg)  # No arguments: rejects any.
    config = ml_collections.ConfigDict()
    config.job = "info"
    config.seed = 0
    config.runtime = config_lib.runtime_block()
    return config
