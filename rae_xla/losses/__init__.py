"""Stage-1 reconstruction losses (see docs/readme/models.md, section "Stage-1 losses and discriminator").

- `losses.gan`: hinge / vanilla discriminator losses, the vanilla generator loss, the adaptive GAN weight and the
  discriminator accuracy the trainer logs;
- `losses.diffaug`: the official DiffAug (translation, colour, cutout) with injectable draws;
- `losses.lpips`: LPIPS-VGG (torchvision VGG16 backbone + the `lpips` wheel's linear heads).
Submodules are imported explicitly (`from rae_xla.losses.lpips import LPIPS`) so that importing one does not
pull in the others.
"""
