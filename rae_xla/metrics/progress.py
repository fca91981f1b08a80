"""Throughput, ETA and MFU from host timestamps only (no device sync).

Under torch_xla the host only dispatches steps; it runs ahead of the device until the input pipeline or the
execution queue makes it wait, so in steady state the host's step rate equals the device's. Rates measured over
`every_steps` steps (100 in the official trainers) are therefore right without `wait_device_ops()`; the first
interval after a compile is slow and is reported as measured.
"""

import dataclasses
import re
import time
from collections.abc import Callable

# Peak dense bf16 FLOP/s per device (one TPU chip / one GPU). TPU values: Google's spec sheets, the ones
# torchprime's MFU uses (docs/xla_notes.md §1.2); GPU values: NVIDIA's dense (no sparsity) bf16 tensor-core peaks
# for SXM parts (H200 has the same compute as H100). CPU: None, i.e. MFU is not reported.
PEAK_BF16_FLOPS: dict[str, float | None] = {
    "tpu v4": 275e12,
    "tpu v5e": 197e12,
    "tpu v5p": 459e12,
    "tpu v6e": 918e12,
    "a100": 312e12,
    "h100": 989e12,
    "h200": 989e12,
    "cpu": None,
}

# Device-kind strings as runtimes print them -> table key; first match wins (so 'v5 lite' beats 'v5').
_KIND_PATTERNS = (
    (r"v6e|v6 ?lite", "tpu v6e"),
    (r"v5e|v5 ?lite", "tpu v5e"),
    (r"v5p|^tpu v5$", "tpu v5p"),
    (r"\bv4\b", "tpu v4"),
    (r"h200", "h200"),
    (r"h100", "h100"),
    (r"a100", "a100"),
    (r"\bcpu\b", "cpu"),
)


def device_kind_key(device_kind: str) -> str | None:
    """'NVIDIA H100 80GB HBM3' -> 'h100', 'TPU v5 lite' -> 'tpu v5e'; None if unknown."""
    kind = device_kind.strip().lower()
    for pattern, key in _KIND_PATTERNS:
        if re.search(pattern, kind):
            return key
    return None


def peak_bf16_flops(device_kind: str) -> float | None:
    """Peak bf16 FLOP/s for a device-kind string; None for CPU and unknown kinds (MFU then not reported)."""
    key = device_kind_key(device_kind)
    return None if key is None else PEAK_BF16_FLOPS[key]


def mfu(flops_per_image: float, images_per_sec_per_device: float, peak_flops_per_device: float | None
        ) -> float | None:
    """Model FLOPs utilisation in [0, 1]: achieved model FLOP/s per device / peak.

    Args:
      flops_per_image: training FLOPs per image (forward + backward ~ 3x forward), counted from the model, not
        from what the hardware ran (rematerialisation does not count).
      images_per_sec_per_device: measured throughput divided by the number of devices.
      peak_flops_per_device: from `peak_bf16_flops`; None -> None.
    """
    if peak_flops_per_device is None:
        return None
    if peak_flops_per_device <= 0:
        raise ValueError(f"peak_flops_per_device must be > 0 or None; got {peak_flops_per_device}.")
    return flops_per_image * images_per_sec_per_device / peak_flops_per_device


def format_duration(seconds: float) -> str:
    """3725 -> '1:02:05'; 90061 -> '1d 01:01:01'."""
    seconds = max(int(round(seconds)), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:d}:{minutes:02d}:{secs:02d}"
    return f"{days}d {hours:02d}:{minutes:02d}:{secs:02d}" if days else clock


@dataclasses.dataclass(frozen=True)
class ProgressReport:
    """Rates over the last interval; `eta_seconds` extrapolates that rate to `total_steps`."""
    step: int
    total_steps: int
    steps_per_sec: float
    images_per_sec: float
    images_per_sec_per_device: float
    eta_seconds: float

    @property
    def eta(self) -> str:
        return format_duration(self.eta_seconds)

    def scalars(self) -> dict[str, float]:
        """What goes to write_scalars (metrics.jsonl needs `images_per_sec`)."""
        return {"steps_per_sec": self.steps_per_sec, "images_per_sec": self.images_per_sec,
                "images_per_sec_per_device": self.images_per_sec_per_device}

    def line(self) -> str:
        """'step 2000/1000800 (0.2%) 3.21 steps/s 3287 img/s (411/dev) ETA 3d 14:25:10'."""
        percent = 100.0 * self.step / self.total_steps
        return (f"step {self.step}/{self.total_steps} ({percent:.1f}%) {self.steps_per_sec:.3g} steps/s "
                f"{self.images_per_sec:.0f} img/s ({self.images_per_sec_per_device:.0f}/dev) ETA {self.eta}")


class ReportProgress:
    """Call with the step after each update; every `every_steps` steps it returns a ProgressReport, else None.

    The first call only starts the clock (at step 0 for a new run, at the restored step on resume), so the
    first report covers `every_steps` steps or fewer.

    Args:
      total_steps: the step at which training ends (for the ETA).
      every_steps: report when step % every_steps == 0.
      images_per_step: global batch size (images per optimizer step, all devices).
      num_devices: devices sharing that batch (chips or GPUs), for per-device rates.
      clock: seconds from a monotonic host clock; injectable for tests.
    """

    def __init__(self, *, total_steps: int, every_steps: int, images_per_step: int, num_devices: int,
                 clock: Callable[[], float] = time.monotonic):
        if total_steps <= 0 or every_steps <= 0 or images_per_step <= 0 or num_devices <= 0:
            raise ValueError(f"ReportProgress needs positive total_steps, every_steps, images_per_step and "
                             f"num_devices; got {total_steps}, {every_steps}, {images_per_step}, {num_devices}.")
        self._total, self._every = total_steps, every_steps
        self._images, self._devices = images_per_step, num_devices
        self._clock = clock
        self._last: tuple[int, float] | None = None

    def __call__(self, step: int) -> ProgressReport | None:
        now = self._clock()
        if self._last is None:
            self._last = (step, now)
            return None
        if step % self._every != 0:
            return None
        last_step, last_time = self._last
        self._last = (step, now)
        if step <= last_step or now <= last_time:
            return None  # a repeated step, or a clock too coarse to measure: nothing meaningful to report
        steps_per_sec = (step - last_step) / (now - last_time)
        images_per_sec = steps_per_sec * self._images
        return ProgressReport(step=step, total_steps=self._total, steps_per_sec=steps_per_sec,
                              images_per_sec=images_per_sec,
                              images_per_sec_per_device=images_per_sec / self._devices,
                              eta_seconds=max(self._total - step, 0) / steps_per_sec)
