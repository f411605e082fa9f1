"""What the node knows of its GPUs: NVML on a real GPU, else the emulated GPU's ledger.

The probe is chosen once at start-up and the reason is logged and shown by
`schedctl node gpu`, so nobody mistakes an emulated GPU for a real one. On a real GPU
the memory figures are NVML's; on an emulated one they are the sum of the footprints of
the instances this node runs (the ledger), which is exactly what the emulator models.

Utilisation is *compute*, never memory: on a real GPU NVML's utilization.gpu (the share
of the last sample period in which a kernel ran); on an emulated one the busy fraction
the node scraped from its emulator instances (`schedctl_emulator_busy_ratio`, the share
of the last second spent in engine steps), summed over the instances and capped at 1.
Summed because the emulator does not slow one instance for another's steps: one real GPU
would have had to run all of them, so their busy times add up (max would claim two
instances each busy half the time leave the GPU half idle).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from daemons.core.errors import ConfigError

log = logging.getLogger("schedctl.node.gpu")


@dataclass(frozen=True, slots=True)
class GpuReading:
    index: int
    name: str
    memory_total: int
    memory_used: int
    utilization: float  # compute, 0..1


class GpuProbe(Protocol):
    backend: str  # "nvml" | "emulated"
    reason: str

    def read(self, ledger_used: int, busy: float = 0.0) -> list[GpuReading]:
        """Current readings; `ledger_used` is what this node's instances occupy, `busy` their
        summed busy ratio (used where there is no real GPU to ask)."""
        ...

    def close(self) -> None: ...


class EmulatedProbe:
    """One emulated GPU whose memory use is the node's own ledger."""

    backend = "emulated"

    def __init__(self, name: str, memory_total: int, reason: str) -> None:
        self.name, self.memory_total, self.reason = name, memory_total, reason

    def read(self, ledger_used: int, busy: float = 0.0) -> list[GpuReading]:
        return [GpuReading(0, self.name, self.memory_total, ledger_used, min(1.0, max(0.0, busy)))]

    def close(self) -> None:
        pass


class NvmlProbe:
    """Real GPUs through NVML. A GPU that is lost reads as zero memory, it is not fatal."""

    backend = "nvml"

    def __init__(self, nvml: Any, count: int) -> None:
        self._nvml = nvml
        self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        self.reason = f"NVML found {count} NVIDIA GPU(s)"

    def read(self, ledger_used: int, busy: float = 0.0) -> list[GpuReading]:
        return [self._read_one(i, h) for i, h in enumerate(self._handles)]

    def _read_one(self, index: int, handle: Any) -> GpuReading:
        nvml = self._nvml
        try:
            name = nvml.nvmlDeviceGetName(handle)
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            util = _utilization(nvml, handle)
        except nvml.NVMLError as exc:
            log.warning("GPU %d unreadable: %s", index, exc)
            return GpuReading(index, "lost", 0, 0, 0.0)
        return GpuReading(index, str(name), int(mem.total), int(mem.used), util)

    def close(self) -> None:
        self._nvml.nvmlShutdown()


def _utilization(nvml: Any, handle: Any) -> float:
    try:
        return float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu) / 100.0
    except nvml.NVMLError_NotSupported:
        return 0.0


def open_nvml() -> tuple[NvmlProbe | None, str]:
    """Try NVML; return the probe, or None and why it cannot be used."""
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        return None, "no NVIDIA driver (libnvidia-ml.so.1 not found)"
    except pynvml.NVMLError_DriverNotLoaded:
        return None, "NVIDIA library present but the kernel driver is not loaded"
    except pynvml.NVMLError as exc:
        return None, f"NVML failed to initialise: {exc}"
    count = pynvml.nvmlDeviceGetCount()
    if count == 0:
        pynvml.nvmlShutdown()
        return None, "NVML works but sees no NVIDIA GPU"
    return NvmlProbe(pynvml, count), ""


def choose_probe(backend: str, emulated_name: str, emulated_total: int) -> GpuProbe:
    """Pick the probe for `backend` ("auto", "nvml" or "emulated") and say why."""
    if backend == "emulated":
        return EmulatedProbe(emulated_name, emulated_total, f"configured: using emulated {emulated_name}")
    probe, why = open_nvml()
    if probe is not None:
        return probe
    if backend == "nvml":
        raise ConfigError(f"gpu_backend = 'nvml' but {why}; install the NVIDIA driver or set "
                          "gpu_backend = 'emulated'")
    return EmulatedProbe(emulated_name, emulated_total, f"{why}: using emulated {emulated_name}")
