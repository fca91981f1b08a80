"""The embedded default dataset: coloured shapes, one (shape, hue) per class, deterministic per index.

Class c draws one large shape SHAPES[c % 4] in hue (c * 0.382) mod 1 (golden-ratio steps keep neighbouring
classes apart) near the centre of a noisy two-colour gradient; position jitter, size, rotation and colour jitter
come from numpy's PCG64 seeded with (GENERATOR_SEED, split, index), so image i is the same on every machine.
The shape is big (radius 0.24-0.34 H, squares and triangles of about the same area), upright (tilted by at most
TILT_DEGREES) and within 0.1 H of the centre: the quickstart trains its tiny generator for a few CPU minutes,
and with shapes of any size, position and rotation (shapes-v1) its samples stayed colour blobs.
Images are 4:3 landscape like ImageNet (H = image_size, W = round(4/3 * H)), JPEG q95, so the
quickstart and tests run the same decode + ADM crop path as ImageNet.

The dataset is written once through the TFDS builder (`builder.py`) into `data_dir/<name>/1.0.0`
(atomic publish) and read back by the ordinary `TfdsSource`.
"""
import colorsys
import io
import json
import math

import numpy as np
from absl import logging
from etils import epath
from PIL import Image
from PIL import ImageDraw

from rae_xla.data import builder

GENERATOR = 'shapes-v2'  # bump when the drawing changes, so stale caches are detected
GENERATOR_SEED = 20251013  # arXiv 2510.11690's month; any fixed constant works
SHAPES = ('disc', 'square', 'triangle', 'ring')
TILT_DEGREES = 10.0
_SPLIT_IDS = {'train': 0, 'validation': 1}
PARAMS_FILE = 'synthetic_params.json'


def class_colour(class_id: int) -> np.ndarray:
    """Saturated RGB (3,) float in [0, 255] for a class."""
    hue = (class_id * 0.381966) % 1.0
    return np.array(colorsys.hsv_to_rgb(hue, 0.85, 0.95)) * 255.0


def render(class_id: int, index: int, split: str, height: int) -> np.ndarray:
    """Draws image `index` of `split` with label `class_id`. Returns uint8 (H, round(4H/3), 3)."""
    rng = np.random.default_rng([GENERATOR_SEED, _SPLIT_IDS[split], index])
    width = round(height * 4 / 3)
    # Background: a vertical gradient between two dim random colours plus pixel noise (sigma 6/255).
    top, bottom = rng.uniform(20, 110, size=(2, 3))
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    background = top * (1 - ramp) + bottom * ramp + rng.normal(0, 6, size=(height, width, 3))
    image = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    colour = np.clip(class_colour(class_id) + rng.uniform(-20, 20, size=3), 0, 255)
    fill = tuple(int(v) for v in colour)
    # Size: the disc's radius; a square's and a triangle's circumradii are 1.25x and 1.3x it, which gives about
    # the disc's area. With the 0.1 H centre jitter every shape stays inside the central H x H square (at most
    # 0.45 H from its centre), so the ADM center crop sees it whole.
    radius = height * rng.uniform(0.24, 0.34)
    cx = width / 2 + rng.uniform(-1, 1) * 0.1 * height
    cy = height / 2 + rng.uniform(-1, 1) * 0.1 * height
    tilt = math.radians(rng.uniform(-1, 1) * TILT_DEGREES)
    draw = ImageDraw.Draw(image)
    shape = SHAPES[class_id % len(SHAPES)]
    if shape in ('disc', 'ring'):
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        if shape == 'disc':
            draw.ellipse(box, fill=fill)
        else:
            draw.ellipse(box, outline=fill, width=max(2, round(radius * 0.35)))
    else:
        # An upright square (corners at 45 degrees) or a triangle pointing up, centred on its bounding box.
        corners, scale, start, drop = (4, 1.25, math.pi / 4, 0.0) if shape == 'square' else (3, 1.3, -math.pi / 2, 0.25)
        r = scale * radius
        draw.polygon([(cx + r * math.cos(start + tilt + 2 * math.pi * k / corners),
                       cy + drop * r + r * math.sin(start + tilt + 2 * math.pi * k / corners)) for k in range(corners)],
                     fill=fill)
    return np.asarray(image)


def _encode_jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format='JPEG', quality=95)
    return buffer.getvalue()


def split_sizes(num_images: int, num_classes: int) -> dict[str, int]:
    """train = num_images; validation = a tenth of it, at least one image per class."""
    return {'train': num_images, 'validation': max(num_classes, num_images // 10)}


def _check_params(found: dict, wanted: dict, dataset_dir: epath.Path) -> None:
    for key in ('generator', 'num_classes', 'num_images'):
        if found.get(key) != wanted[key]:
            field = {'generator': 'name', 'num_classes': 'synthetic_num_classes',
                     'num_images': 'synthetic_num_images'}[key]
            raise ValueError(f'config.data.{field}: the synthetic dataset cached at {dataset_dir} was built with '
                             f'{key}={found.get(key)!r}, the config asks for {wanted[key]!r}. Delete that folder or '
                             'choose another config.data.name.')


def built_dataset_dir(data_dir: str, name: str, num_classes: int, num_images: int) -> epath.Path | None:
    """The cached dataset folder if it exists (checked against the config), else None."""
    dataset_dir = epath.Path(data_dir) / name / builder.VERSION
    if not (dataset_dir / 'dataset_info.json').exists():
        return None
    params_file = dataset_dir / PARAMS_FILE
    found = json.loads(params_file.read_text()) if params_file.exists() else {}
    _check_params(found, dict(generator=GENERATOR, num_classes=num_classes, num_images=num_images), dataset_dir)
    return dataset_dir


def ensure_built(data_dir: str, name: str, num_classes: int, num_images: int, image_size: int) -> epath.Path:
    """Returns `data_dir/name/1.0.0`, building it first if absent (~1000 images at 64 px: about a second)."""
    existing = built_dataset_dir(data_dir, name, num_classes, num_images)
    if existing is not None:
        return existing
    sizes = split_sizes(num_images, num_classes)
    params = dict(generator=GENERATOR, num_classes=num_classes, num_images=num_images,
                  num_validation_images=sizes['validation'], height=image_size, seed=GENERATOR_SEED)

    def examples_for(split):
        def examples():
            for index in range(sizes[split]):
                label = index % num_classes  # balanced classes
                yield f'{index:08d}', {'image': _encode_jpeg(render(label, index, split, image_size)),
                                       'label': label, 'file_name': f'{split}/{index:08d}.jpg'}
        return examples

    logging.info('Building synthetic dataset %s/%s: %s images, %d classes, %d px.', data_dir, name, sizes,
                 num_classes, image_size)
    class_names = [f'{SHAPES[c % len(SHAPES)]}_{c:04d}' for c in range(num_classes)]
    try:
        return builder.write_tfds_dataset(
            data_dir, name, class_names, {split: examples_for(split) for split in sizes},
            description=f'rae_xla synthetic shapes: {json.dumps(params)}', extra_files={PARAMS_FILE: json.dumps(params)})
    except (OSError, ValueError):
        # Another process (e.g. a second local rank) published the same deterministic dataset first
        # (our rename then fails, or the split already exists); use theirs.
        existing = built_dataset_dir(data_dir, name, num_classes, num_images)
        if existing is None:
            raise
        return existing
