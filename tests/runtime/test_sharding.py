"""Sharding rules: the default FSDP spec and config rules, without torch_xla."""
import pytest

from rae_xla.runtime import sharding


def test_fsdp_spec_shards_the_largest_divisible_dim():
    assert sharding.fsdp_spec((6144, 1152), 4) == ("fsdp", None)
    assert sharding.fsdp_spec((1152, 3072), 4) == (None, "fsdp")
    assert sharding.fsdp_spec((2048, 768, 1, 1), 8) == ("fsdp", None, None, None)
    # 1001 (the label table with its null row) is not divisible by 4: the next largest dim is used.
    assert sharding.fsdp_spec((1001, 1152), 4) == (None, "fsdp")
    assert sharding.fsdp_spec((7, 5), 4) == (None, None)  # Nothing divides: replicate.
    assert sharding.fsdp_spec((1152,), 4) == (None,)  # Biases and gains stay replicated.
    assert sharding.fsdp_spec((64, 64), 1) == (None, None)


def test_rules_win_over_the_default_and_are_checked():
    shapes = [("blocks.0.attn.qkv.weight", (96, 32)), ("blocks.0.attn.qkv.bias", (96,)), ("head.weight", (16, 32))]
    mesh = {"data": 2, "fsdp": 2}
    plan = sharding.plan_param_sharding(shapes, strategy="fsdp", rules=[(r"qkv\.weight", (None, "fsdp"))],
                                        mesh_shape=mesh)
    assert plan == {"blocks.0.attn.qkv.weight": (None, "fsdp"), "blocks.0.attn.qkv.bias": (None,),
                    "head.weight": (None, "fsdp")}
    replicated = sharding.plan_param_sharding(shapes, strategy="replicate", rules=(), mesh_shape=mesh)
    assert all(all(a is None for a in spec) for spec in replicated.values())
    with pytest.raises(ValueError, match="one entry per dimension"):
        sharding.plan_param_sharding(shapes, strategy="fsdp", rules=[("qkv.weight", ("fsdp",))], mesh_shape=mesh)
    with pytest.raises(ValueError, match="mesh axis 'model'"):
        sharding.plan_param_sharding(shapes, strategy="fsdp", rules=[("head", ("model", None))], mesh_shape=mesh)


def test_batch_spec_uses_every_mesh_axis():
    assert sharding.batch_spec(4) == (("data", "fsdp"), None, None, None)
