"""Does a picture show its class of the synthetic dataset? Colour and shape checks for the quickstart's samples.

The synthetic classes (rae_xla/data/synthetic.py) are one saturated colour and one of four shapes each, on a dim
background. Two independent judges, both 1.0 on the dataset's own images and ~1/10 resp. ~1/4 (or 0) on pictures
that do not show the class:
- colour: the mean of the most saturated tenth of the pixels, nearest (RGB) among the class colours;
- shape: the saturated pixels (max - min channel > 140 of 255: shapes have ~206, backgrounds <= 90), re-sampled
  around their centroid at their own scale (so position and size do not matter), correlated with the mean mask
  of each shape over training images; the best correlation wins. A picture without saturated pixels has no shape.
Both read uint8 (N, S, S, 3) arrays (S = the training image size).
"""
from __future__ import annotations

import numpy as np

from rae_xla.data import synthetic

SATURATION_THRESHOLD = 140.0  # Of 255; shape pixels ~206 (HSV s 0.85, v 0.95), background pixels <= 90.
MASK_SIZE = 24  # Side of the normalised mask.
# The normalised mask covers +-1.5 scale units around the centroid: a disc's radius is 1.0, an upright square's
# corners are at 1.22, a ring's outer edge at 0.84. (+-1.8 blurred disc vs square: the smallest winning margin on
# 100 validation drawings fell from 0.076 to 0.045.)
MASK_EXTENT = 1.5
SUBSAMPLES = 4  # Each mask cell is the mean of 4x4 nearest-pixel samples (area average: no aliasing of edges).
MIN_SHAPE_PIXELS = 4  # Fewer saturated pixels than this: no shape.


def class_colour_accuracy(images: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """Share of `images` whose shape colour is nearest (RGB) to the colour of their label among the
    `num_classes` class colours."""
    palette = np.stack([synthetic.class_colour(c) for c in range(num_classes)])
    hits = []
    for image, label in zip(images.reshape(len(images), -1, 3).astype(np.float64), labels):
        saturation = image.max(axis=1) - image.min(axis=1)
        colour = image[saturation >= np.percentile(saturation, 90)].mean(axis=0)
        hits.append(np.argmin(((palette - colour) ** 2).sum(axis=1)) == label)
    return float(np.mean(hits))


def normalised_masks(images: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) uint8 -> (N, MASK_SIZE, MASK_SIZE) float masks of the saturated pixels, centred on their
    centroid and scaled by their radius of gyration x sqrt(2) (a disc's radius); all zeros where there are fewer
    than MIN_SHAPE_PIXELS saturated pixels."""
    x = images.astype(np.float64)
    masks = (x.max(-1) - x.min(-1)) > SATURATION_THRESHOLD
    _, height, width = masks.shape
    yy, xx = np.mgrid[:height, :width] + 0.5  # Pixel centres.
    cell = 2 * MASK_EXTENT / MASK_SIZE
    grid = -MASK_EXTENT + cell * (np.arange(MASK_SIZE * SUBSAMPLES) + 0.5) / SUBSAMPLES  # Sample offsets.
    out = np.zeros((len(masks), MASK_SIZE, MASK_SIZE))
    for i, mask in enumerate(masks):
        area = mask.sum()
        if area < MIN_SHAPE_PIXELS:
            continue
        cy, cx = yy[mask].mean(), xx[mask].mean()
        scale = np.sqrt(2 * ((yy[mask] - cy) ** 2 + (xx[mask] - cx) ** 2).mean())
        rows = np.clip(np.floor(cy + scale * grid), 0, height - 1).astype(int)
        cols = np.clip(np.floor(cx + scale * grid), 0, width - 1).astype(int)
        samples = mask[rows[:, None], cols[None, :]]
        out[i] = samples.reshape(MASK_SIZE, SUBSAMPLES, MASK_SIZE, SUBSAMPLES).mean(axis=(1, 3))
    return out


class ShapeJudge:
    """Shape templates (the mean normalised mask of each shape) from labelled training images."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        """images: uint8 (N, S, S, 3) of the synthetic dataset; labels: (N,) class ids."""
        shapes = np.asarray(labels) % len(synthetic.SHAPES)
        masks = normalised_masks(images)
        missing = [synthetic.SHAPES[s] for s in range(len(synthetic.SHAPES)) if not (shapes == s).any()]
        if missing:
            raise ValueError(f"ShapeJudge needs training images of every shape; none of {missing} among "
                             f"{len(images)} images")
        self.templates = _unit_rows(np.stack([masks[shapes == s].mean(0) for s in range(len(synthetic.SHAPES))]))

    def predict(self, images: np.ndarray) -> np.ndarray:
        """(N,) index into synthetic.SHAPES of each picture's best-matching shape; -1 where it has no shape."""
        masks = normalised_masks(images)
        scores = _unit_rows(masks) @ self.templates.T
        return np.where(masks.reshape(len(masks), -1).any(1), scores.argmax(1), -1)

    def accuracy(self, images: np.ndarray, labels: np.ndarray) -> float:
        """Share of `images` that show the shape of their label."""
        return float(np.mean(self.predict(images) == np.asarray(labels) % len(synthetic.SHAPES)))


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Each (flattened) row minus its mean, scaled to unit norm (zero rows stay zero)."""
    rows = x.reshape(len(x), -1)
    rows = rows - rows.mean(1, keepdims=True)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
