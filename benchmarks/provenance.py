"""Where a benchmark number came from: machine and commit, for the dated reports in benchmarks/results/."""
import os
import platform
import subprocess


def machine() -> str:
    """'2 CPUs (nproc), AMD EPYC ..., Linux x86_64'."""
    model = platform.processor() or "unknown CPU"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        model = names[0] if names else model
    return f"{os.cpu_count()} CPUs (nproc), {model}, {platform.system()} {platform.machine()}"


def commit() -> str:
    """The short git commit of the working tree ('unknown' outside a checkout)."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
