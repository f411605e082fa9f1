"""GPU memory and load time of one model instance (the models' config.json; vLLM paper, Kwon et al.
SOSP'23; ServerlessLLM, OSDI'24, arXiv 2401.14351).

An instance occupies, for its whole life,

    footprint = weights + fixed overhead + KV budget
    weights   = params × bytes per parameter
    overhead  = GPU runtime (CUDA context, allocator slack) + model activations
    KV budget = max_batch_total_tokens × KV bytes per token
    KV bytes per token = 2 (K and V) × n_layers × n_kv_heads × head_dim × bytes per element

TGI sizes the KV budget from the memory left after warm-up; `default_max_batch_total_tokens`
does the same from the profile.  Loading takes

    load_s = checkpoint bytes / bandwidth of the tier holding it + init_s

(0 bytes to copy when the tier is the GPU itself).  These are small pure functions so
the node agent can keep an emulated GPU ledger with the very numbers the emulator uses.
"""

from __future__ import annotations

from daemons.profiles import GIB, GpuProfile, ModelProfile, ProfileError, StorageTier

#: TGI's launcher default for `--cuda-memory-fraction`.
DEFAULT_CUDA_MEMORY_FRACTION = 1.0


def kv_bytes_per_token(model: ModelProfile) -> int:
    """KV-cache bytes one token of context occupies (K and V, every layer)."""
    return 2 * model.n_layers * model.n_kv_heads * model.head_dim * model.bytes_per_param


def weights_bytes(model: ModelProfile) -> int:
    """Bytes of the weights on the GPU, and of the checkpoint on disk (safetensors ≈ weights)."""
    return model.params * model.bytes_per_param


def overhead_bytes(model: ModelProfile, gpu: GpuProfile) -> int:
    """Memory an instance holds besides weights and KV cache."""
    return gpu.runtime_overhead_bytes + model.activation_overhead_bytes


def footprint_bytes(model: ModelProfile, gpu: GpuProfile, max_batch_total_tokens: int) -> int:
    """GPU bytes one instance occupies: weights + fixed overhead + its KV budget."""
    kv = max_batch_total_tokens * kv_bytes_per_token(model)
    return weights_bytes(model) + overhead_bytes(model, gpu) + kv


def usable_bytes(gpu: GpuProfile, cuda_memory_fraction: float = DEFAULT_CUDA_MEMORY_FRACTION) -> int:
    return int(gpu.memory_bytes * cuda_memory_fraction)


def default_max_batch_total_tokens(
    model: ModelProfile, gpu: GpuProfile, cuda_memory_fraction: float = DEFAULT_CUDA_MEMORY_FRACTION
) -> int:
    """The KV budget TGI would infer: memory left after weights and overhead, in tokens.

    Raises ProfileError when the weights and overhead alone do not fit.
    """
    free = usable_bytes(gpu, cuda_memory_fraction) - weights_bytes(model) - overhead_bytes(model, gpu)
    if free <= 0:
        need = (weights_bytes(model) + overhead_bytes(model, gpu)) / GIB
        have = usable_bytes(gpu, cuda_memory_fraction) / GIB
        raise ProfileError(
            f"model {model.model_id} needs {need:.1f} GiB for weights and overhead but GPU {gpu.name} "
            f"offers {have:.1f} GiB at --cuda-memory-fraction {cuda_memory_fraction}; "
            "use a larger GPU profile or a larger fraction"
        )
    return free // kv_bytes_per_token(model)


def check_fits(
    model: ModelProfile, gpu: GpuProfile, max_batch_total_tokens: int, cuda_memory_fraction: float
) -> None:
    """Raise ProfileError when the instance's footprint exceeds the usable GPU memory."""
    need = footprint_bytes(model, gpu, max_batch_total_tokens)
    have = usable_bytes(gpu, cuda_memory_fraction)
    if need > have:
        raise ProfileError(
            f"model {model.model_id} with --max-batch-total-tokens {max_batch_total_tokens} needs "
            f"{need / GIB:.1f} GiB but GPU {gpu.name} offers {have / GIB:.1f} GiB at "
            f"--cuda-memory-fraction {cuda_memory_fraction}; lower --max-batch-total-tokens"
        )


def load_seconds(model: ModelProfile, tier: StorageTier, init_seconds: float) -> float:
    """Seconds from process start to ready: copy the checkpoint from `tier`, then initialise."""
    return weights_bytes(model) / tier.bandwidth_bytes_per_s + init_seconds
