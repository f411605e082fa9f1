"""The models a node may load, with the footprint and load time the profiles predict.

The figures come from the emulator's published profiles (daemons/profiles), so
the node's memory ledger and the scheduler's load-time estimates use the same numbers
the emulator runs on. On a real GPU the ledger is checked against NVML as well.
"""

from __future__ import annotations

from daemons import profiles
from daemons.core.errors import ConfigError
from daemons.core.messages import CatalogEntry
from daemons.profiles import memory


class Catalog:
    def __init__(self, models: tuple[str, ...], gpu: str, tier: str, kv_tokens: int,
                 init_s: float) -> None:
        try:
            self._gpu = profiles.load_gpu(gpu)
            self._models = {m: profiles.load_model(m) for m in models}
            self._tier = profiles.load_tier(tier)
        except profiles.ProfileError as exc:
            raise ConfigError(str(exc)) from None
        self.models = models
        self.kv_tokens = kv_tokens
        self.init_s = init_s

    @property
    def gpu_memory(self) -> int:
        return int(self._gpu.memory_bytes)

    def footprint(self, model: str) -> int:
        return int(memory.footprint_bytes(self._models[model], self._gpu, self.kv_tokens))

    def load_s(self, model: str) -> float:
        return float(memory.load_seconds(self._models[model], self._tier, self.init_s))

    def entries(self) -> list[CatalogEntry]:
        return [CatalogEntry(m, self.footprint(m), self.load_s(m)) for m in self.models]
