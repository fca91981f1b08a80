"""Path fields are checked by one rule (rae_xla/config/checks.py: check_path): a local path must exist, gs:// and
hf:// are checked when loaded, and a malformed hf:// URL is refused at once."""
import pytest

from rae_xla import config as config_lib
from tests.test_config_ranges import every_block

PATH_FIELDS = [("rae", "decoder_weights"), ("rae", "stats"), ("train", "init_from"), ("sampling", "checkpoint"),
               ("sample.guidance", "model_weights"), ("eval", "inception_weights"), ("eval", "lpips_vgg_weights")]


def _validate_with(block, field, path):
    config = every_block()
    del config["data"]  # Its check opens the dataset.
    del config["stage1"]  # Stage 1 refuses latent statistics, which rae.stats sets here.
    node = config
    for part in block.split("."):
        node = node[part]
    node[field] = path
    config_lib.validate(config)


@pytest.mark.parametrize("block,field", PATH_FIELDS, ids=[f"{b}.{f}" for b, f in PATH_FIELDS])
def test_path_field(block, field, tmp_path):
    existing = tmp_path / "weights.pt"
    existing.write_bytes(b"")
    for accepted in (str(existing), "gs://bucket/weights.pt", "hf://owner/repo/weights.pt"):
        _validate_with(block, field, accepted)
    with pytest.raises(config_lib.ConfigError, match=rf"^{block}\.{field}='.*missing\.pt' does not exist; give a "
                                                     r"local, gs:// or hf:// "):
        _validate_with(block, field, str(tmp_path / "missing.pt"))
    with pytest.raises(config_lib.ConfigError, match=r"'hf://owner\.pt' is not hf://<owner>/<repo>"):
        _validate_with(block, field, "hf://owner.pt")
