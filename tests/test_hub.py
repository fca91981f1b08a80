"""hf:// paths and released names, resolved offline from a Hugging Face cache laid out as the hub client lays it out.

The cache holds tiny files in the released formats (the golden official-format decoder, stats, DiT^DH state dict
and a tiny DINOv2-with-registers folder), so the normal loaders are exercised end to end without network.
"""
import shutil

import pytest
import torch

from rae_xla import config as config_lib
from rae_xla import hub, released
from rae_xla.checkpoint import official
from rae_xla.models import build_stage2_model, stage2_preset
from rae_xla.models.rae import RAE
from tests import golden
from tests.release_env import put_in_hf_cache

COMMIT_A = "a" * 40
COMMIT_B = "b" * 40
REPO = "test-org/RAE-collections"
ENCODER_REPO = "test-org/dinov2-tiny"


@pytest.fixture(name="hf_cache")
def hf_cache_fixture(tmp_path, monkeypatch):
    """An offline HF cache: REPO at commit A (tag v1) and B (main, stats changed); the tiny encoder repo."""
    from huggingface_hub import constants
    cache = tmp_path / "hub"
    tiny = golden.TINY
    files = {"decoders/tiny/model.pt": (tiny / "decoder.state_dict.pt").read_bytes(),
             "decoders/tiny/config.json": (tiny / "decoder_tiny" / "config.json").read_bytes(),
             "DiTs/tiny/stage2_model.pt": (tiny / "ditdh_released_flags.state_dict.pt").read_bytes()}
    stats_a = (tiny / "latent_stats.pt").read_bytes()
    stats_b_path = tmp_path / "stats_b.pt"
    torch.save({"var": torch.ones(32, 4, 4)}, stats_b_path)
    put_in_hf_cache(cache, REPO, COMMIT_A, {**files, "stats/tiny/stat.pt": stats_a}, refs={"v1": COMMIT_A})
    put_in_hf_cache(cache, REPO, COMMIT_B, {**files, "stats/tiny/stat.pt": stats_b_path.read_bytes()},
                    refs={"main": COMMIT_B})
    encoder_files = {p.name: p.read_bytes() for p in (tiny / "dinov2_tiny").iterdir()}
    put_in_hf_cache(cache, ENCODER_REPO, COMMIT_A, encoder_files, refs={"main": COMMIT_A})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_parse_splits_repo_revision_and_path():
    assert hub.parse("hf://org/repo/a/b.pt") == hub.HubPath("org/repo", None, "a/b.pt")
    assert hub.parse("hf://org/repo@v1.2/a.pt") == hub.HubPath("org/repo", "v1.2", "a.pt")
    assert hub.parse("hf://org/repo") == hub.HubPath("org/repo", None, "")
    assert str(hub.parse("hf://org/repo@abc/x/y.pt")) == "hf://org/repo@abc/x/y.pt"
    for bad in ("hf://org", "hf:///repo/x", "hf://org/repo@/x"):
        with pytest.raises(ValueError):
            hub.parse(bad)


def test_non_hub_paths_are_left_alone():
    for path in ("/tmp/x.pt", "gs://bucket/x.pt", "facebook/dinov2-with-registers-base", "random-tiny"):
        assert hub.local_file(path) == path and hub.local_dir(path) == path


def test_files_resolve_offline_and_revisions_pin(hf_cache):
    main = official.load_stats(f"hf://{REPO}/stats/tiny/stat.pt")
    pinned = official.load_stats(f"hf://{REPO}@{COMMIT_A}/stats/tiny/stat.pt")
    tagged = official.load_stats(f"hf://{REPO}@v1/stats/tiny/stat.pt")
    reference = official.load_stats(golden.path("official_tiny", "latent_stats.pt"))
    assert main[0] is None and torch.equal(main[1], torch.ones(32, 4, 4))  # main = commit B: variance only
    for mean_var in (pinned, tagged):
        assert torch.equal(mean_var[0], reference[0]) and torch.equal(mean_var[1], reference[1])
    assert hub.local_file(f"hf://{REPO}/stats/tiny/stat.pt").startswith(str(hf_cache))


def test_missing_file_names_it_and_the_fetch_command(hf_cache):
    with pytest.raises(hub.HubFileNotFoundError) as err:
        hub.local_file(f"hf://{REPO}@v1/decoders/ViTXL_n08/model.pt")
    message = str(err.value)
    assert f"hf://{REPO}@v1/decoders/ViTXL_n08/model.pt" in message
    assert f"hf download {REPO} decoders/ViTXL_n08/model.pt --revision v1" in message
    with pytest.raises(hub.HubFileNotFoundError, match="hf download other/repo"):
        hub.local_dir("hf://other/repo")
    with pytest.raises(FileNotFoundError):  # the same error family the loaders already raise for local paths
        official.load_stage2(torch.nn.Linear(1, 1), f"hf://{REPO}/DiTs/none/stage2_model.pt")


def test_models_load_through_the_normal_loaders(hf_cache):
    spec = golden.manifest()["cases"]["rae"]
    rae = RAE.from_pretrained(f"hf://{ENCODER_REPO}", decoder_config=f"hf://{REPO}/decoders/tiny/config.json",
                              decoder_weights=f"hf://{REPO}/decoders/tiny/model.pt",
                              stats=f"hf://{REPO}@v1/stats/tiny/stat.pt", encoder_input_size=spec["encoder_input_size"],
                              decoder_patch_size=spec["decoder_patch_size"]).eval()
    io = golden.load("rae.io.pt")
    with torch.no_grad():
        torch.testing.assert_close(rae.encode(io["image"]), io["latent"], rtol=1e-5, atol=2e-5)
        torch.testing.assert_close(rae.decode(io["latent"]), io["reconstruction"], rtol=1e-5, atol=2e-5)
    case = golden.manifest()["cases"]["ditdh_released_flags"]
    model = official.load_stage2(build_stage2_model("ditdh", **case["config"]), f"hf://{REPO}/DiTs/tiny/stage2_model.pt")
    expected = golden.load(case["state_dict"])
    assert all(torch.equal(model.state_dict()[k], v) for k, v in expected.items())


def test_released_names_resolve_under_a_root(hf_cache, monkeypatch, tmp_path):
    spec = golden.manifest()["cases"]["rae"]
    tiny = released.ReleasedRAE(
        encoder="dinov2", encoder_path=f"hf://{ENCODER_REPO}", encoder_input_size=spec["encoder_input_size"],
        decoder_config=f"hf://{REPO}/decoders/tiny/config.json", decoder_weights="decoders/tiny/model.pt",
        stats="stats/tiny/stat.pt", noise_tau=0.8, latent_shape=(32, 4, 4),
        decoder_patch_size=spec["decoder_patch_size"])
    monkeypatch.setitem(released.RAES, "tiny", tiny)
    from_hub = RAE.from_pretrained("tiny", root=f"hf://{REPO}@v1")
    mirror = tmp_path / "mirror"  # a local (or gs://) copy of the same layout works the same way
    shutil.copytree(hub.local_dir(f"hf://{REPO}@v1"), mirror)
    from_mirror = RAE.from_pretrained("tiny", root=str(mirror))
    image = golden.load("rae.io.pt")["image"]
    with torch.no_grad():
        torch.testing.assert_close(from_hub.eval().encode(image), from_mirror.eval().encode(image))
        torch.testing.assert_close(from_hub.encode(image), golden.load("rae.io.pt")["latent"], rtol=1e-5, atol=2e-5)


def test_registry_entries_are_consistent():
    keys = golden.released_keys()
    for name, model in released.STAGE2.items():
        assert model.rae in released.RAES, name
        assert not model.guidance_model or model.guidance_model in released.STAGE2, name
        rae = released.rae(model.rae)
        assert stage2_preset(model.preset, input_size=model.input_size)["in_channels"] == rae.latent_shape[0]
        assert rae.latent_shape[1] == model.input_size, name
    # The 256-px models build with exactly the released key/shape tables (so the released files load).
    for name, table in (("ditdh-xl-256", "DiTDH-XL_256"), ("ditdh-s-256-ep14", "DiTDH-S_256_guidance")):
        entry = released.stage2(name)
        with torch.device("meta"):
            model = build_stage2_model(**stage2_preset(entry.preset, input_size=entry.input_size))
        assert {k: list(v.shape) for k, v in model.state_dict().items()} == keys[table]["keys"], name
    assert released.stage2("ditdh-xl-256").guidance_scale == 1.42
    assert released.stage2("ditdh-xl-512").guidance_scale == 1.5
    with pytest.raises(KeyError, match="dinov2-b"):
        released.rae("dinov3")


def test_config_name_conflicts_are_config_errors():
    config = config_lib.rae_block(name="dinov2-b", stats="/tmp/other_stat.pt")
    with pytest.raises(config_lib.ConfigError, match="rae.name='dinov2-b' sets rae.stats"):
        config_lib.check_released_rae_name(config)
    config_lib.check_released_rae_name(config_lib.rae_block(name="dinov2-b"))  # defaults: no conflict
    with pytest.raises(config_lib.ConfigError, match="rae.name"):
        config_lib.check_released_rae_name(config_lib.rae_block(name="dinov3-b"))
