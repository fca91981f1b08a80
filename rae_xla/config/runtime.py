"""`config.runtime`: backend, mesh, sharding, precision (docs/xla_notes.md §5): the block, its ranges, its checks."""
from __future__ import annotations

from typing import Any

import ml_collections

from rae_xla.config.checks import Placement, one_of, require
from rae_xla.config.ranges import COUNT, at_least
from rae_xla.runtime.base import BACKENDS, PRECISIONS, RNG_SOURCES
from rae_xla.runtime.sharding import STRATEGIES


def runtime_block(**overrides: Any) -> ml_collections.ConfigDict:
    """Backend, mesh and sharding (docs/xla_notes.md §5)."""
    block = dict(
        backend="auto",  # auto: TPU (libtpu or PJRT_DEVICE set) -> xla; CUDA -> cuda; else cpu.
        # Mesh ('data', 'fsdp'): -1 takes the remaining devices. On a pod slice keep data=1 (all chips on the fast
        # ICI axis 'fsdp'); with several slices, data = number of slices (the slow DCN axis).
        # Several slices (multi-slice over DCN): data and fsdp are the mesh inside ONE slice (ICI) and dcn_data
        # slices stack along 'data' (-1 = the slice count of the job), so the global mesh is
        # (dcn_data * data, fsdp) and only the gradient all-reduce crosses DCN. One slice: dcn_data is 1.
        mesh=dict(data=1, fsdp=-1, dcn_data=-1),
        # 'fsdp': every >=2-D weight has its largest dimension divisible by the fsdp size sharded on 'fsdp'
        # (params + grads + AdamW state ~20 B/param shrink by the fsdp size); 'replicate': plain data parallel.
        # On CUDA: 'fsdp' -> FSDP2 (fully_shard), 'replicate' -> DDP.
        param_sharding="fsdp",
        # ((name regex, partition spec), ...) tried first, e.g. ((r'blocks\.\d+\.attn\.qkv\.weight', ('fsdp', None)),).
        sharding_rules=(),
        # Modules whose outputs are pinned to the batch sharding, so XLA never re-lays activations out
        # (without it: 'Involuntary full rematerialization' warnings, docs/xla_notes.md §6.1).
        activation_sharding=r"^blocks\.\d+$",
        precision="fp32",  # fp32 | bf16 (autocast for the forward; master weights and optimizer state stay fp32).
        # 'device': random draws (noise, times, label drop) on the accelerator, seeded per step; 'host': drawn on
        # the CPU from (seed, step) and copied over — bitwise identical across backends (tests), slower.
        rng="device",
        strict=False,  # XLA: a recompile after warm-up or a host sync inside the step raises.
        # XLA: after a lazy first call, trace the stage-2 training step and each stage-1 phase step until two
        # traces agree, then replay the compiled graph without running its Python (host cost per call: ~44x less
        # on DiT^DH-XL's stage-2 graph, ~39x on the stage-1 GAN step; runtime/xla_capture.py). False: trace every call.
        capture_step=True,
        torch_compile=False,  # cuda/cpu: wrap the step in torch.compile.
        # XLA on TPU: persistent compilation cache, a LOCAL dir on each host (a shared one still compiles per host,
        # pytorch/xla#7196); 'auto' = ~/.cache/rae_xla/xla_cache on TPU, off elsewhere (CPU cannot reload
        # entries, docs/xla_notes.md §6.1); '' = off. A restart after preemption on the same VM reuses it.
        compile_cache_dir="auto",
        # LIBTPU_INIT_ARGS added before torch_xla starts: 'auto' = collective/compute overlap flags for the TPU
        # generation (runtime/tpu_env.py), 'none', or the flags verbatim. Flags already in $LIBTPU_INIT_ARGS win.
        libtpu_flags="auto",
        # The frozen encoder's parameters: 'fsdp' (sharded like the model) or 'replicate' (no all-gathers in
        # its forward; DINOv2-B is 86M params, 0.35 GB in fp32).
        encoder_sharding="fsdp",
        remat=False,  # Recompute each block (activation_sharding's modules) in the backward: less HBM, ~1/3 more FLOPs.
        # (first_step, end_step): trace steps first_step..end_step-1 into <workdir>/profile (XLA profiler on TPU,
        # torch.profiler on CUDA/CPU); () = off.
        profile_steps=(),
        # Steps between the host collectives that agree on a SIGTERM (a spot VM gives ~30 s; a DiT^DH-XL step
        # is < 1 s, so 10 steps cost little grace time while keeping per-step host syncs off the hot loop).
        preemption_check_every=10,
    )
    block.update(overrides)
    return ml_collections.ConfigDict(block)


MESH_AXIS = at_least(1, special=(-1,), note="-1 = the remaining devices")
RANGES = {
    "mesh.data": MESH_AXIS,
    "mesh.fsdp": MESH_AXIS,
    "mesh.dcn_data": at_least(1, special=(-1,), note="-1 = the slice count of the job"),
    "profile_steps": at_least(0),
    "preemption_check_every": COUNT,
}


def validate_runtime(config: ml_collections.ConfigDict, placement: Placement) -> None:
    """The backend and its options; the mesh is checked against the devices by `resolve_mesh`."""
    runtime = config.runtime
    require(runtime.backend != "tpu", "runtime.backend='tpu': TPUs run through torch_xla, use 'xla' (or 'auto')")
    one_of(runtime.backend, BACKENDS, "runtime.backend")
    one_of(runtime.param_sharding, STRATEGIES, "runtime.param_sharding")
    one_of(runtime.precision, PRECISIONS, "runtime.precision")
    one_of(runtime.rng, RNG_SOURCES, "runtime.rng")
    one_of(runtime.encoder_sharding, STRATEGIES, "runtime.encoder_sharding")
    profile = tuple(runtime.profile_steps)
    require(not profile or (len(profile) == 2 and 0 <= profile[0] < profile[1]),
            f"runtime.profile_steps={profile} must be () or (first_step, end_step) with first_step < end_step, "
            f"e.g. --config.runtime.profile_steps='(100, 103)'")
    for rule in runtime.sharding_rules:
        require(len(rule) == 2 and isinstance(rule[0], str),
                f"runtime.sharding_rules entry {rule!r} must be (name_regex, partition_spec_tuple)")
