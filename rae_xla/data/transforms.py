"""Image transforms: decode, ADM center crop, horizontal flip (docs/reference.md §5.1, §6.1).

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


def first_crop_size(image_size: int) -> int:
    """The stage-1 trainer's resize target before its random crop: 384 for 256 px, else 1.5 x
    (docs/reference.md §5.1)."""
    return 384 if image_size == 256 else int(1.5 * image_size)


def resize_random_crop_arr(pil_image: Image.Image, image_size: int, crop_uv: np.ndarray) -> np.ndarray:
    """The official stage-1 transform: Resize(shorter side -> first_crop_size, bicubic) + RandomCrop(S), no flip.

    crop_uv: two uniforms in [0, 1) (row, column) drawn by the loader from (seed, step), so the crop is a pure
      function of the step; offset = floor(u * (L - S + 1)), torchvision's randint(0, L - S) range.
    Returns uint8 (S, S, 3).
    """
    target = first_crop_size(image_size)
    w, h = pil_image.size
    # torchvision Resize(int): the short side becomes `target`, the long side int(target * long / short).
    size = (target, int(target * h / w)) if w <= h else (int(target * w / h), target)
    arr = np.asarray(pil_image.resize(size, resample=Image.BICUBIC))
    top = int(crop_uv[0] * (arr.shape[0] - image_size + 1))
    left = int(crop_uv[1] * (arr.shape[1] - image_size + 1))
    return arr[top:top + image_size, left:left + image_size]


def load_example_image(encoded: bytes, image_size: int, flip: bool, crop_uv: np.ndarray | None = None) -> np.ndarray:
    """Decode -> ADM center crop (or, given `crop_uv`, the stage-1 resize + random crop) -> optional flip.

    Returns a contiguous uint8 (S, S, 3) array.
    """
    pil_image = decode_rgb(encoded)
    if crop_uv is None:
        image = center_crop_arr(pil_image, image_size)
    else:
        image = resize_random_crop_arr(pil_image, image_size, crop_uv)
    if flip:
        image = horizontal_flip(image)
    return np.ascontiguousarray(image)
