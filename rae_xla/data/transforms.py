"""Image transforms: decode, ADM center crop, horizontal flip (REFERENCE.md §5.1, §6.1).

All functions are pure and run on the host (in DataLoader worker processes). Images are uint8 HWC RGB.
"""
import io

import numpy as np
from PIL import Image

# Decompression-bomb guard: PIL warns above 89 MP and raises above 179 MP. ImageNet's largest
# training image is ~ 40 MP, so this limit only trips on broken or hostile files (which are then replaced).
Image.MAX_IMAGE_PIXELS = 180_000_000


def decode_rgb(encoded: bytes) -> Image.Image:
    """Decodes JPEG/PNG/... bytes to an RGB PIL image (grey, CMYK, palette and alpha are converted).

    Raises (OSError, ValueError, ...) on undecodable data; the loader catches and replaces.
    """
    image = Image.open(io.BytesIO(encoded))
    # torchvision's ImageFolder loader (what the official trainer uses) does exactly this conversion.
    return image.convert('RGB')


def center_crop_arr(pil_image: Image.Image, image_size: int) -> np.ndarray:
    """ADM's center crop (guided-diffusion `image_datasets.py`, used by RAE stage 2 and stage-1 eval).

    1. While the short side is >= 2 * image_size: halve both sides (floor) with a BOX filter.
    2. Resize with BICUBIC so that the short side equals image_size (the long side is rounded).
    3. Take the central image_size x image_size window (offsets floored).

    Args:
      pil_image: an RGB PIL image of any size (smaller images are upsampled by step 2).
      image_size: output side S in pixels.
    Returns:
      uint8 ndarray of shape (S, S, 3).
    """
    while min(*pil_image.size) >= 2 * image_size:
        pil_image = pil_image.resize(tuple(x // 2 for x in pil_image.size), resample=Image.BOX)
    scale = image_size / min(*pil_image.size)
    pil_image = pil_image.resize(tuple(round(x * scale) for x in pil_image.size), resample=Image.BICUBIC)
    arr = np.asarray(pil_image)
    crop_y = (arr.shape[0] - image_size) // 2
    crop_x = (arr.shape[1] - image_size) // 2
    return arr[crop_y:crop_y + image_size, crop_x:crop_x + image_size]


def horizontal_flip(image: np.ndarray) -> np.ndarray:
    """Mirrors a (H, W, C) image left-right (torchvision RandomHorizontalFlip with the coin already tossed)."""
    return image[:, ::-1]


def load_example_image(encoded: bytes, image_size: int, flip: bool) -> np.ndarray:
    """Decode -> ADM center crop -> optional flip. Returns a contiguous uint8 (S, S, 3) array."""
    image = center_crop_arr(decode_rgb(encoded), image_size)
    if flip:
        image = horizontal_flip(image)
    return np.ascontiguousarray(image)
