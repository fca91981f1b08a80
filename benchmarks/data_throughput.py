"""Images/s per CPU core for decode + ADM center crop + flip + batching of ImageNet-sized JPEGs.

  python benchmarks/data_throughput.py [--images=256] [--image_size=256] [--batch=64]

Writes a folder of ~500x375, ~110 KB JPEGs (ImageNet's typical size), then times, in ONE process
(= one core): (a) the loader's per-step work (`TrainSteps[step]`: file read, decode, crop, flip,
stack into a uint8 batch); (b) decode alone. It also measures JPEG draft-mode decoding (libjpeg DCT
scaling) against the exact ADM path, to show whether draft mode could be used.
"""
import argparse
import io
import os
import tempfile
import time

import numpy as np
from PIL import Image

from rae_xla.data import loader
from rae_xla.data import sources
from rae_xla.data import transforms


def imagenet_like_jpeg(seed: int) -> bytes:
    """500x375 JPEG q90 of a smooth random scene plus texture noise: ~110 KB, like an ImageNet photo."""
    rng = np.random.default_rng(seed)
    scene = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((500, 375), Image.BICUBIC)
    texture = rng.normal(0, 20, (375, 500, 3))
    pixels = np.clip(np.asarray(scene, float) + texture, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, 'JPEG', quality=90)
    return buffer.getvalue()


def draft_decode(encoded: bytes, image_size: int) -> Image.Image:
    """Lets libjpeg decode at 1/2, 1/4 or 1/8 scale while the short side stays >= 2 * image_size."""
    image = Image.open(io.BytesIO(encoded))
    image.draft('RGB', (image.size[0] // 2, image.size[1] // 2) if min(image.size) >= 2 * image_size else image.size)
    return image.convert('RGB')


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--images', type=int, default=256)
    parser.add_argument('--image_size', type=int, default=256)
    parser.add_argument('--batch', type=int, default=64)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix='rae_data_bench_')
    sizes = []
    for i in range(args.images):
        os.makedirs(os.path.join(root, f'class{i % 8}'), exist_ok=True)
        encoded = imagenet_like_jpeg(i)
        sizes.append(len(encoded))
        with open(os.path.join(root, f'class{i % 8}', f'{i:05d}.JPEG'), 'wb') as f:
            f.write(encoded)
    print(f'{args.images} JPEGs 500x375, mean {np.mean(sizes) / 1e3:.0f} KB')

    source = sources.FolderSource(root)
    steps = loader.TrainSteps(source, args.image_size, True, args.batch, 0, 1, seed=0)
    steps[0]  # warm the page cache and imports
    num_steps = args.images // args.batch
    rates = []
    for _ in range(3):  # the machine is shared: report the median of 3 passes
        start = time.perf_counter()
        for step in range(num_steps):
            batch = steps[step]
        rates.append(num_steps * args.batch / (time.perf_counter() - start))
    print(f'loader step (read+decode+crop{args.image_size}+flip+batch), 1 process: median '
          f'{np.median(rates):.0f} images/s per core (passes {[round(r) for r in rates]}); '
          f'batch {tuple(batch["image"].shape)}')

    blobs = [source.read_encoded([i])[0][0] for i in range(len(source))]
    for name, fn in [('decode only', lambda b: transforms.decode_rgb(b).load()),
                     ('decode+crop (exact ADM)', lambda b: transforms.center_crop_arr(transforms.decode_rgb(b),
                                                                                      args.image_size))]:
        start = time.perf_counter()
        for b in blobs:
            fn(b)
        print(f'{name}: {len(blobs) / (time.perf_counter() - start):.0f} images/s per core')

    for size in (args.image_size, 128, 64):
        exact = [transforms.center_crop_arr(transforms.decode_rgb(b), size) for b in blobs[:32]]
        start = time.perf_counter()
        draft = [transforms.center_crop_arr(draft_decode(b, size), size) for b in blobs[:32]]
        rate = 32 / (time.perf_counter() - start)
        diff = max(np.abs(e.astype(int) - d.astype(int)).max() for e, d in zip(exact, draft))
        mean = np.mean([np.abs(e.astype(int) - d.astype(int)).mean() for e, d in zip(exact, draft)])
        print(f'draft-mode decode+crop{size}: {rate:.0f} images/s per core; vs exact ADM max|diff| {diff}, '
              f'mean |diff| {mean:.2f} (0 = exact)')


if __name__ == '__main__':
    main()
