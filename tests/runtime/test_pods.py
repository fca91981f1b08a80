"""Pod/cluster pieces of the runtime that a CPU can check: TPU kind lookup and libtpu flags, the multi-slice
mesh arrangement (stand-in device attributes), the compile-cache default, remat, host collectives, profiling."""
import json

import ml_collections
import numpy as np
import pytest
import torch

from rae_xla import config as config_lib
from rae_xla import metrics
from rae_xla.runtime import make_runtime, on_tpu_vm, resolve_compile_cache_dir, tpu_env
from rae_xla.runtime.remat import apply_remat
from rae_xla.runtime.selftest import TinyTransformer, toy_batch
from tests.conftest import run_python


def _fail():
    raise OSError("no metadata server")


# --- Which TPU: environment, torch_xla's tpu-env helper, then the metadata attribute --------------------------


def test_accelerator_type_prefers_the_environment_variable():
    assert tpu_env.accelerator_type({"TPU_ACCELERATOR_TYPE": "v6e-8"}, tpu_env=lambda: {"ACCELERATOR_TYPE": "v4-8"},
                                    metadata=lambda: "v5p-8") == "v6e-8"


def test_plain_tpu_vm_without_the_variable_reads_the_tpu_env_metadata():
    assert tpu_env.accelerator_type({}, tpu_env=lambda: {"ACCELERATOR_TYPE": "v5litepod-16"},
                                    metadata=_fail) == "v5litepod-16"


def test_metadata_attribute_is_the_last_source_and_failures_give_empty():
    assert tpu_env.accelerator_type({}, tpu_env=lambda: {}, metadata=lambda: "v5p-64\n") == "v5p-64"
    assert tpu_env.accelerator_type({}, tpu_env=_fail, metadata=_fail) == ""


@pytest.mark.parametrize("accelerator, gen, peak", [
    ("v5p-64", "v5p", 459e12), ("v6e-8", "v6e", 918e12), ("v5litepod-16", "v5e", 197e12), ("v4-32", "v4", 275e12),
    ("v2-8", None, None),
])
def test_generation_and_mfu_peak_of_each_accelerator_type(accelerator, gen, peak):
    assert tpu_env.generation(accelerator) == gen
    assert metrics.peak_bf16_flops(f"TPU {accelerator}") == peak  # The XLA runtime's device_kind.


# --- libtpu flags ------------------------------------------------------------------------------------------


def test_auto_flags_per_generation():
    v5p = tpu_env.resolve_libtpu_flags("auto", "v5p")
    assert "--xla_tpu_enable_async_collective_fusion_fuse_all_gather=true" in v5p
    assert "--xla_tpu_enable_data_parallel_all_reduce_opt=true" in v5p
    assert "--xla_tpu_scoped_vmem_limit_kib=98304" in v5p
    v4 = tpu_env.resolve_libtpu_flags("auto", "v4")
    assert "--xla_tpu_overlap_compute_collective_tc=true" in v4
    assert not any("scoped_vmem" in f for f in v4)  # 96 MiB would not fit v4's VMEM.
    assert tpu_env.resolve_libtpu_flags("auto", None) == ()
    assert tpu_env.resolve_libtpu_flags("none", "v5p") == ()
    assert tpu_env.resolve_libtpu_flags("--a=1 --b=2", "v5p") == ("--a=1", "--b=2")


def test_flags_exported_by_hand_win_over_the_config():
    env = {"TPU_ACCELERATOR_TYPE": "v6e-16",
           "LIBTPU_INIT_ARGS": "--xla_tpu_scoped_vmem_limit_kib=65536 --my_flag=1"}
    merged = tpu_env.apply_libtpu_flags("auto", env)
    flags = merged.split()
    assert env["LIBTPU_INIT_ARGS"] == merged
    assert flags[:2] == ["--xla_tpu_scoped_vmem_limit_kib=65536", "--my_flag=1"]
    assert sum(f.startswith("--xla_tpu_scoped_vmem_limit_kib") for f in flags) == 1
    assert "--xla_enable_async_all_gather=true" in flags


def test_none_leaves_the_environment_alone():
    env = {"TPU_ACCELERATOR_TYPE": "v5p-8"}
    assert tpu_env.apply_libtpu_flags("none", env) == "" and "LIBTPU_INIT_ARGS" not in env


# --- Compile cache default --------------------------------------------------------------------------------------


def test_compile_cache_is_local_and_on_by_default_on_tpu_only(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_compile_cache_dir("auto", on_tpu=True) == str(tmp_path / ".cache" / "rae_xla" / "xla_cache")
    assert resolve_compile_cache_dir("auto", on_tpu=False) == ""
    assert resolve_compile_cache_dir("", on_tpu=True) == ""
    assert resolve_compile_cache_dir("~/c", on_tpu=False) == str(tmp_path / "c")
    assert on_tpu_vm({"PJRT_DEVICE": "TPU"}) and not on_tpu_vm({"PJRT_DEVICE": "CPU"})


# --- Mesh shapes across slices ---------------------------------------------------------------------------------


def test_slice_mesh_puts_slices_on_data_and_keeps_a_single_slice_unchanged():
    assert config_lib.resolve_slice_mesh({"data": 1, "fsdp": -1, "dcn_data": -1}, 64, 2) == (
        {"data": 1, "fsdp": 32}, {"data": 2, "fsdp": 1})
    assert config_lib.resolve_mesh({"data": 1, "fsdp": -1, "dcn_data": -1}, 64, 2) == {"data": 2, "fsdp": 32}
    assert config_lib.resolve_mesh({"data": 2, "fsdp": -1}, 8) == {"data": 2, "fsdp": 4}


@pytest.mark.parametrize("mesh, devices, slices, message", [
    ({"data": 1, "fsdp": -1, "dcn_data": 2}, 8, 1, "dcn_data=2 but the job has 1 slice"),
    ({"data": 3, "fsdp": -1}, 16, 2, "8 devices per slice"),
])
def test_slice_mesh_errors(mesh, devices, slices, message):
    with pytest.raises(config_lib.ConfigError, match=message):
        config_lib.resolve_slice_mesh(mesh, devices, slices)


# --- Remat, host collectives, profiler on the torch runtime -----------------------------------------------------


def _runtime(**overrides):
    return make_runtime(ml_collections.ConfigDict(config_lib.runtime_block(backend="cpu", **overrides)))


def _grads(model):
    batch = toy_batch(0, 8, slice(0, 8))
    torch.nn.functional.mse_loss(model(batch["x"]), batch["y"]).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_remat_recomputes_blocks_with_identical_gradients():
    torch.manual_seed(0)
    reference = _grads(TinyTransformer())
    torch.manual_seed(0)
    model = _runtime(remat=True).shard_model(TinyTransformer())
    recomputed = []
    model.blocks[0].fc1.register_forward_hook(lambda *a: recomputed.append(1))
    grads = _grads(model)
    assert len(recomputed) == 2  # Forward, then again in the backward.
    for name, grad in reference.items():
        torch.testing.assert_close(grads[name], grad, atol=1e-6, rtol=1e-5)
    with torch.no_grad():
        model(toy_batch(0, 8, slice(0, 8))["x"])
    assert len(recomputed) == 3  # Without grad the block runs once.


def test_remat_needs_matching_modules():
    with pytest.raises(ValueError, match="no module name matches"):
        apply_remat(TinyTransformer(), r"^nothing$", lambda fn, *a: fn(*a))


def test_single_process_host_sums_and_any_process():
    runtime = _runtime()
    assert runtime.sum_over_processes([2, 0, 5]) == [2, 0, 5]
    assert runtime.any_process(True) and not runtime.any_process(False)


def test_profile_trace_lands_in_the_destination(tmp_path):
    runtime = _runtime()
    model = TinyTransformer()
    runtime.start_trace(str(tmp_path / "profile" / "host_0"))
    model(toy_batch(0, 8, slice(0, 8))["x"])
    where = runtime.stop_trace()
    (trace,) = (tmp_path / "profile" / "host_0").glob("*.json")
    assert where == str(tmp_path / "profile" / "host_0")
    assert any("aten::linear" in event.get("name", "") for event in json.loads(trace.read_text())["traceEvents"])


def test_validate_rejects_bad_profile_steps_and_check_interval():
    config = ml_collections.ConfigDict(dict(job="info", runtime=config_lib.runtime_block()))
    config.runtime.profile_steps = (5, 5)
    with pytest.raises(config_lib.ConfigError, match="profile_steps"):
        config_lib.validate(config)
    config.runtime.profile_steps = (5, 8)
    config.runtime.preemption_check_every = 0
    with pytest.raises(config_lib.ConfigError, match="preemption_check_every"):
        config_lib.validate(config)


# --- On the XLA runtime (4 virtual CPU devices, one subprocess) -----------------------------------------------


@pytest.fixture(scope="module")
def xla(tmp_path_factory):
    out = tmp_path_factory.mktemp("pods") / "out.json"
    run_python(["tests/runtime/pods_xla_script.py", str(out)], xla_devices=4, timeout=1800)
    return json.loads(out.read_text())


def test_hybrid_mesh_puts_each_slice_on_one_data_row(xla):
    multi = xla["multi"]
    assert multi["slices"] == 2 and multi["shape"] == [2, 2]
    assert multi["slice_of"] == [[0, 0], [1, 1]]  # 'fsdp' never leaves a slice (ICI only).
    assert sorted(multi["device_ids"]) == list(range(4)) and multi["device_ids"] != list(range(4))
    two = xla["multi_data2"]
    assert two["shape"] == [4, 1]
    assert two["slice_of"] == [[0], [0], [1], [1]]  # In-slice 'data' rows stay in their slice.


def test_single_slice_mesh_is_unchanged(xla):
    assert xla["single"] == {"slices": 1, "device_ids": list(range(4)), "mesh_shape": {"data": 1, "fsdp": 4}}


def test_xla_remat_and_gradient_constraints_match_eager(xla):
    torch.manual_seed(0)
    reference = _grads(TinyTransformer())
    for name, grad in reference.items():
        np.testing.assert_allclose(np.array(xla["grads"][name]), grad.numpy(), atol=2e-5, rtol=1e-4)


def test_xla_compile_stats_report_the_persistent_cache(xla):
    assert {"cache_hits", "cache_misses"} <= set(xla["stats"])
    assert xla["scalars"]["compile_cache_hits"] == 0.0  # No cache on CPU.
    assert xla["device_kind"] == "CPU"


def test_xla_profiler_trace_is_copied_to_the_destination(xla):
    names = xla["trace_files"]
    assert any(n.endswith(".xplane.pb") for n in names) and any(n.endswith(".trace.json.gz") for n in names)
