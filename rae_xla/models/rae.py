"""RAE: frozen encoder + latent statistics + noise augmentation + ViT decoder (docs/reference.md §1.2-§1.6).

encode: images (B,3,H,W) in [0,1] -> bicubic resize to S (no antialias) -> ImageNet-style normalisation ->
frozen encoder tokens (B,N,C) -> [+ tau*U(0,1)*eps noise in training] -> (B,C,h,w) -> (z - mean)/sqrt(var+eps).
The resize and the encoder run in fp32 even inside a bf16 autocast region (`encoder_precision='fp32'`, as the
official main trainer, which encodes outside autocast); 'bf16' runs them under bf16 autocast instead.
decode: the exact inverse of the latent normalisation -> decoder -> unpatchify -> x*std + mean (not clamped).
"""
import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from rae_xla.models.encoders import FrozenEncoder, load_encoder
from rae_xla.models.vit_decoder import ViTDecoder


class LatentMismatchError(ValueError):
    """The decoder or the latent statistics do not fit the encoder's latents (C, h, w): files of another RAE."""


class RAE(nn.Module):
    """Args: encoder (FrozenEncoder), decoder (ViTDecoder whose in_channels = encoder width), noise_tau (0.8 for
    decoder training, 0 for inference), latent_mean (C,h,w)-broadcastable or None (the released DINOv2-B stats
    have no mean), latent_var likewise or None (no normalisation), eps 1e-5 inside the sqrt (official).

    Statistics and pixel mean/std are non-persistent buffers: they follow `.to(device)` and stay out of the
    state dict, which then has the official `encoder.*` and `decoder.*` keys only.
    """

    def __init__(self, encoder: FrozenEncoder, decoder: ViTDecoder, noise_tau: float,
                 latent_mean: torch.Tensor | None, latent_var: torch.Tensor | None, eps: float = 1e-5,
                 encoder_precision: str = "fp32"):
        super().__init__()
        if encoder_precision not in ("fp32", "bf16"):
            raise ValueError(f"encoder_precision={encoder_precision!r}: use 'fp32' or 'bf16'")
        self.encoder_precision = encoder_precision
        if decoder.decoder_embed.in_features != encoder.hidden_size:
            raise LatentMismatchError(f"decoder expects {decoder.decoder_embed.in_features}-d latents but the encoder gives "
                             f"{encoder.hidden_size}-d; build the decoder with in_channels={encoder.hidden_size}.")
        self.encoder, self.decoder = encoder, decoder
        self.noise_tau, self.eps = noise_tau, eps
        self.encoder_input_size = encoder.input_size
        self.latent_shape = (encoder.hidden_size, encoder.grid, encoder.grid)
        self.register_buffer("pixel_mean", torch.tensor(encoder.image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(encoder.image_std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("latent_mean", self._check_stat(latent_mean, "mean"), persistent=False)
        self.register_buffer("latent_var", self._check_stat(latent_var, "var"), persistent=False)

    def _check_stat(self, stat: torch.Tensor | None, name: str) -> torch.Tensor | None:
        if stat is None:
            return None
        try:
            torch.broadcast_shapes(stat.shape, (1, *self.latent_shape))
        except RuntimeError as err:
            raise LatentMismatchError(f"latent {name} of shape {tuple(stat.shape)} does not broadcast to the latent shape "
                             f"{self.latent_shape}; were the stats computed for this encoder/resolution?") from err
        return stat.float()

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images (B,3,H,W) float in [0,1] -> latents (B,C,h,w), normalised with the stats when given."""
        bf16 = self.encoder_precision == "bf16"
        # The device type comes from the input, so this stays device-agnostic ('cuda', 'xla', 'cpu').
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=bf16):
            if not bf16:
                images = images.float()
            size = self.encoder_input_size
            if images.shape[-2:] != (size, size):                   # static shape test, not a tensor value
                rows, cols = self._resize_matrices(images.shape[-2], images.shape[-1])
                images = rows.to(images.dtype) @ images @ cols.to(images.dtype).T
            tokens = self.encoder((images - self.pixel_mean) / self.pixel_std)
        tokens = tokens.float()
        if self.training and self.noise_tau > 0:
            sigma = self.noise_tau * torch.rand(tokens.shape[0], 1, 1, device=tokens.device, dtype=tokens.dtype)
            tokens = tokens + sigma * torch.randn_like(tokens)
        b, n, c = tokens.shape
        side = math.isqrt(n)
        z = tokens.transpose(1, 2).reshape(b, c, side, side)
        if self.latent_mean is not None:
            z = z - self.latent_mean
        if self.latent_var is not None:
            z = z / torch.sqrt(self.latent_var + self.eps)
        return z

    def _resize_matrices(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The bicubic resize matrices for (height, width) inputs, kept as non-persistent buffers: built and
        copied to the device once (the first encode), then they follow `.to()` like the other buffers. A host
        matrix copied in every encode would be a host-to-device transfer per step (a sync on CUDA)."""
        name = f"resize_{height}x{width}"
        if not hasattr(self, name + "_rows"):
            device, size = self.pixel_mean.device, self.encoder_input_size
            # copy=True: the lru-cached host matrix must never become (and be mutated as) a module buffer.
            self.register_buffer(name + "_rows", _bicubic_matrix(height, size).to(device, copy=True), persistent=False)
            self.register_buffer(name + "_cols", _bicubic_matrix(width, size).to(device, copy=True), persistent=False)
        return getattr(self, name + "_rows"), getattr(self, name + "_cols")

    def decode(self, latents: torch.Tensor, decoder: nn.Module | None = None) -> torch.Tensor:
        """latents (B,C,h,w) (normalised) -> images (B,3,h*p,w*p), roughly in [0,1], unclamped.

        decoder: decode with this module instead of `self.decoder` (the stage-1 trainer passes its wrapped,
        trainable decoder or the EMA copy; same geometry).
        """
        z = latents
        if self.latent_var is not None:
            z = z * torch.sqrt(self.latent_var + self.eps)
        if self.latent_mean is not None:
            z = z + self.latent_mean
        tokens = z.flatten(2).transpose(1, 2)
        pixels = self.decoder.unpatchify((decoder if decoder is not None else self.decoder)(tokens))
        return pixels * self.pixel_std + self.pixel_mean

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(images))

    @classmethod
    def from_pretrained(cls, encoder: str, decoder_config: str | None = None, decoder_weights=None, stats=None,
                        encoder_input_size: int = 224, decoder_patch_size: int = 16, noise_tau: float = 0.0,
                        encoder_kind: str = "dinov2", encoder_precision: str = "fp32",
                        root: str | None = None) -> "RAE":
        """A released RAE by name, or one built from its parts.

        By name (rae_xla/released.py): `RAE.from_pretrained("dinov2-b")` (also 'dinov2-b-512', 'siglip2-b',
        'mae-b', ...): encoder, decoder and stats from the registry, files under `root` (default
        hf://nyu-visionx/RAE-collections; a local or gs:// mirror of its layout works too); noise tau 0.

        From parts: `encoder` = HF folder / gs:// / hf:// / hub id / 'random-tiny'; `decoder_config` =
        'ViT-B'|'ViT-L'|'ViT-XL' or a released config.json (file or folder); `decoder_weights` = model.pt (path or
        state dict) or None (random decoder); `stats` = stat.pt (path or dict) or None. Defaults are the released
        DINOv2-B @256 px setting (224-px encoder input, 16-px decoder patches, tau 0). `encoder_precision`:
        'fp32' (the encoder runs in fp32 even under bf16 autocast) or 'bf16'.
        """
        from rae_xla import released
        from rae_xla.checkpoint.official import load_decoder, load_stats

        if decoder_config is None:
            spec = released.rae(encoder)  # A KeyError listing the released names if it is not one.
            root = root or released.DEFAULT_ROOT
            return cls.from_pretrained(
                spec.encoder_path, spec.decoder_config, released.path(spec.decoder_weights, root),
                released.path(spec.stats, root), encoder_input_size=spec.encoder_input_size,
                decoder_patch_size=spec.decoder_patch_size, noise_tau=noise_tau, encoder_kind=spec.encoder,
                encoder_precision=encoder_precision)
        enc = load_encoder(encoder_kind, encoder, encoder_input_size)
        dec = ViTDecoder.from_preset(decoder_config, in_channels=enc.hidden_size, num_patches=enc.grid ** 2,
                                     patch_size=decoder_patch_size)
        if decoder_weights is not None:
            load_decoder(dec, decoder_weights)
        mean, var = load_stats(stats) if stats is not None else (None, None)
        return cls(enc, dec, noise_tau=noise_tau, latent_mean=mean, latent_var=var,
                   encoder_precision=encoder_precision)


@functools.lru_cache(maxsize=16)
def _bicubic_matrix(size_in: int, size_out: int) -> torch.Tensor:
    """(size_out, size_in) matrix M with M @ v == 1-D F.interpolate(v, bicubic, align_corners=False).

    The encoder resize is written as two matmuls with such matrices (PyTorch's bicubic is separable) because XLA
    has no lowering for aten::upsample_bicubic2d and would run it on the host (a CPU fallback and a device round
    trip per call)."""
    # float32 like the image kernel, so the weights round the same way (float64 weights differ by ~3e-5).
    eye = torch.eye(size_in).view(size_in, 1, size_in, 1)
    return F.interpolate(eye, size=(size_out, 1), mode="bicubic", align_corners=False).view(size_in, size_out).T
