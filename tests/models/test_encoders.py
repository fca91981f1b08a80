"""Frozen encoders: token counts, frozen/eval state, determinism, and the load paths that need no network."""
import pytest
import torch

from rae_xla.models.encoders import load_encoder


@pytest.mark.parametrize("kind,size,tokens", [("dinov2", 56, 16), ("mae", 64, 16), ("siglip2", 64, 16)])
def test_random_tiny_encoders(kind, size, tokens):
    enc = load_encoder(kind, "random-tiny", size)
    again = load_encoder(kind, "random-tiny", size)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        out = enc(x)
        assert out.shape == (2, tokens, enc.hidden_size)
        torch.testing.assert_close(out, again(x))              # seeded: the same random weights each time
        torch.testing.assert_close(out, enc(x))                # MAE: no random token shuffle
    assert not any(p.requires_grad for p in enc.parameters()) and not enc.training
    enc.train()
    assert not enc.training
    # Final LayerNorm without affine: every token is standardised.
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, tokens), atol=1e-4, rtol=0)


def test_dinov2_position_table_is_fixed_at_load(tmp_path):
    """A 98-px (7x7) table used at 56 px: resized once at load, identical to HF's per-call interpolation."""
    import transformers as tf
    cfg = tf.Dinov2WithRegistersConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                       intermediate_size=64, patch_size=14, image_size=98, num_register_tokens=4)
    torch.manual_seed(0)
    hf = tf.Dinov2WithRegistersModel(cfg).eval()
    hf.save_pretrained(tmp_path)
    enc = load_encoder("dinov2", str(tmp_path), 56)
    assert enc.encoder.embeddings.position_embeddings.shape == (1, 17, 32)
    x = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        # HF interpolates the 7x7 table at every call; the affine-free final norm is applied by hand.
        ref = torch.nn.functional.layer_norm(hf(pixel_values=x, output_hidden_states=True).hidden_states[-1],
                                             (32,), eps=cfg.layer_norm_eps)[:, 5:]
        torch.testing.assert_close(enc(x), ref, atol=1e-5, rtol=1e-5)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="unknown"):
        load_encoder("clip", "random-tiny", 224)
    with pytest.raises(ValueError, match="multiple of the dinov2 patch size 14"):
        load_encoder("dinov2", "random-tiny", 50)
