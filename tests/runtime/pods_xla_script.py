"""Child process for tests/runtime/test_pods.py (PJRT_DEVICE=CPU CPU_NUM_DEVICES=4): writes JSON to argv[1].

1. Multi-slice mesh: torch_xla's HybridMesh on stand-in device attributes (2 slices of 2 chips, slices
   interleaved in id order, 1x2 chip coordinates) and a TPU device kind, built by rae_xla's mesh code.
2. The XlaRuntime with runtime.remat and the gradient-constraining activation sharding: one forward/backward
   of the toy transformer, gradients returned for comparison with eager CPU.
3. The XLA profiler (runtime.start_trace/stop_trace) around that step.
"""
import glob
import json
import os
import sys

import torch
import torch_xla.core.xla_model as xm
import torch_xla.runtime as xr

from rae_xla import config as config_lib
from rae_xla.runtime import make_runtime
from rae_xla.runtime import mesh as mesh_lib
from rae_xla.runtime.selftest import TinyTransformer, toy_batch

out = {}

# --- 1. The multi-slice device arrangement -------------------------------------------------------------------
runtime = make_runtime(config_lib.runtime_block(backend="xla", remat=True, compile_cache_dir=""))
real_attributes, real_hw = xr.global_runtime_device_attributes, xm.xla_device_hw
stand_in = [{"name": f"TPU:{i}", "slice_index": i % 2, "coords": [i // 2, 0, 0], "core_on_chip": 0}
            for i in range(4)]
xr.global_runtime_device_attributes = lambda: [dict(a) for a in stand_in]
xm.xla_device_hw = lambda device: "TPU"  # HybridMesh asserts a TPU before reading the coordinates.
try:
    slices = mesh_lib.slice_count(stand_in)
    ici, dcn = config_lib.resolve_slice_mesh({"data": 1, "fsdp": -1, "dcn_data": -1}, 4, slices)
    hybrid = mesh_lib.build_mesh(ici, dcn)
    out["multi"] = dict(slices=slices, ici=ici, dcn=dcn, shape=list(hybrid.mesh_shape),
                        slice_of=mesh_lib.slice_of_each_device(hybrid, stand_in).tolist(),
                        device_ids=[int(i) for i in hybrid.device_ids])
    ici, dcn = config_lib.resolve_slice_mesh({"data": 2, "fsdp": -1, "dcn_data": -1}, 4, slices)
    two_per_slice = mesh_lib.build_mesh(ici, dcn)
    out["multi_data2"] = dict(shape=list(two_per_slice.mesh_shape),
                              slice_of=mesh_lib.slice_of_each_device(two_per_slice, stand_in).tolist())
finally:
    xr.global_runtime_device_attributes, xm.xla_device_hw = real_attributes, real_hw
out["single"] = dict(slices=mesh_lib.slice_count(xr.global_runtime_device_attributes()),
                     device_ids=[int(i) for i in runtime.mesh.device_ids], mesh_shape=runtime.mesh_shape)

# --- 2. remat + mark_sharding_with_gradients through the runtime ----------------------------------------------
torch.manual_seed(0)
model = runtime.shard_model(TinyTransformer())
batch = {k: v.to(runtime.device) for k, v in toy_batch(0, 8, slice(0, 8)).items()}
trace_dir = os.path.join(os.path.dirname(sys.argv[1]), "profile", "host_0")
runtime.start_trace(trace_dir)  # 3. torch_xla's profiler around the step, copied to trace_dir.
loss = torch.nn.functional.mse_loss(model(batch["x"]), batch["y"])
loss.backward()
out["loss"] = float(loss.detach().cpu())
out["grads"] = {n: p.grad.detach().cpu().tolist() for n, p in model.named_parameters()}
runtime.stop_trace()
out["trace_files"] = sorted(os.path.basename(f) for f in glob.glob(os.path.join(trace_dir, "**", "*"), recursive=True)
                            if os.path.isfile(f))
out["stats"] = {k: v for k, v in runtime.compile_stats().items() if k != "cpu_fallbacks"}
out["scalars"] = runtime.compile_stats_scalars()
out["device_kind"] = runtime.device_kind
json.dump(out, open(sys.argv[1], "w"))
