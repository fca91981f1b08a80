"""Image grids as PNG files: training previews, the `sample` job, the quickstart's pictures."""
from __future__ import annotations

import io
import math

import numpy as np
from etils import epath
from PIL import Image


def save_grid(images: np.ndarray, path: epath.Path) -> None:
    """Writes (N, H, W, 3) uint8 images as one PNG grid with ceil(sqrt(N)) columns (local or gs://)."""
    n, h, w, _ = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = image
    buffer = io.BytesIO()
    Image.fromarray(grid).save(buffer, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
