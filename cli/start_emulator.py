"""`schedctl start emulator`: a drop-in for `text-generation-launcher` (one model, one emulated GPU)."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.errors import exit_on_config_error
from daemons.core.logs import setup_logging

TGI_COMPAT = "Accepted like text-generation-launcher's flag and ignored: the emulator has no shards."


def _list_profiles(value: bool) -> None:
    if not value:
        return
    from daemons.profiles import known_gpus, known_models, load_gpu, load_model

    typer.echo("GPUs:   " + ", ".join(known_gpus()))
    typer.echo("models: " + ", ".join(known_models()))
    for model_id in known_models():
        model = load_model(model_id)
        gpus = ", ".join(load_gpu(g).name for g in sorted(model.latency))
        typer.echo(f"  {model_id}: {model.params / 1e9:.2f} B params, profiled on {gpus}")
    raise typer.Exit()


@exit_on_config_error
def start_emulator(
    model_id: Annotated[str, typer.Option("--model-id", envvar="MODEL_ID",
                                          help="HF Hub id of a profiled model (see --list-profiles).")],
    port: Annotated[int, typer.Option("--port", "-p", envvar="PORT", help="HTTP port.")] = 3000,
    hostname: Annotated[str, typer.Option(help="Address to bind (TGI's default is 0.0.0.0).")] = "127.0.0.1",
    gpu: Annotated[str, typer.Option(envvar="SCHEDCTL_EMULATOR_GPU", help="GPU profile.")] = "a100-80gb",
    max_concurrent_requests: Annotated[int, typer.Option(envvar="MAX_CONCURRENT_REQUESTS",
                                                         help="Permits for queued + running requests.")] = 128,
    checkpoint_tier: Annotated[str, typer.Option(
        envvar="SCHEDCTL_EMULATOR_CHECKPOINT_TIER",
        help="Where the checkpoint loads from: gpu|dram|ssd|remote (sets the load time).")] = "ssd",
    init_seconds: Annotated[float, typer.Option(
        envvar="SCHEDCTL_EMULATOR_INIT_SECONDS",
        help="Engine start-up after the checkpoint copy (CUDA context, warm-up).")] = 5.0,
    max_input_tokens: Annotated[int | None, typer.Option(envvar="MAX_INPUT_TOKENS")] = None,
    max_total_tokens: Annotated[int | None, typer.Option(envvar="MAX_TOTAL_TOKENS")] = None,
    max_batch_prefill_tokens: Annotated[int | None, typer.Option(envvar="MAX_BATCH_PREFILL_TOKENS")] = None,
    max_batch_total_tokens: Annotated[int | None, typer.Option(
        envvar="MAX_BATCH_TOTAL_TOKENS", help="KV budget in tokens (default: what fits in GPU memory).")] = None,
    cuda_memory_fraction: Annotated[float, typer.Option(envvar="CUDA_MEMORY_FRACTION")] = 1.0,
    max_best_of: Annotated[int, typer.Option(envvar="MAX_BEST_OF")] = 2,
    max_stop_sequences: Annotated[int, typer.Option(envvar="MAX_STOP_SEQUENCES")] = 4,
    max_top_n_tokens: Annotated[int, typer.Option(envvar="MAX_TOP_N_TOKENS")] = 5,
    max_client_batch_size: Annotated[int, typer.Option(envvar="MAX_CLIENT_BATCH_SIZE")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the generated pseudo-words.")] = 0,
    eos_rate: Annotated[float, typer.Option(help="Probability that a token after the first is EOS.")] = 0.0,
    num_shard: Annotated[int | None, typer.Option(hidden=True, help=TGI_COMPAT)] = None,
    shard_uds_path: Annotated[str | None, typer.Option(hidden=True, help=TGI_COMPAT)] = None,
    master_port: Annotated[int | None, typer.Option(hidden=True, help=TGI_COMPAT)] = None,
    revision: Annotated[str | None, typer.Option(hidden=True, help=TGI_COMPAT)] = None,
    dtype: Annotated[str | None, typer.Option(hidden=True, help=TGI_COMPAT)] = None,
    quantize: Annotated[str | None, typer.Option(hidden=True, help=TGI_COMPAT)] = None,
    huggingface_hub_cache: Annotated[str | None, typer.Option(hidden=True, help=TGI_COMPAT)] = None,
    prometheus_port: Annotated[int | None, typer.Option(hidden=True, help=TGI_COMPAT)] = None,
    json_output: Annotated[bool, typer.Option(hidden=True, help=TGI_COMPAT)] = False,
    list_profiles: Annotated[bool, typer.Option(
        "--list-profiles", is_eager=True, callback=_list_profiles,
        help="Print the known GPU and model profiles and exit.")] = False,
) -> None:
    """Serve TGI's HTTP protocol for one model on one emulated GPU, in the foreground.

    Timing comes from a continuous-batching engine over a published latency model; /health
    turns 200 once the modelled load time (checkpoint size / tier bandwidth + init seconds)
    has passed.  SIGTERM or SIGINT stops it cleanly.

    \b
    Example:

    \b
      schedctl start emulator --model-id meta-llama/Llama-3.1-8B-Instruct --port 8080 \\
          --gpu h100-80gb --checkpoint-tier dram --init-seconds 2
      curl -s localhost:8080/generate -H 'content-type: application/json' \\
          -d '{"inputs": "hello there", "parameters": {"max_new_tokens": 8}}'
    """
    from daemons.emulator.daemon import EmulatorConfig, run

    setup_logging("emulator")
    run(EmulatorConfig(
        model_id=model_id, port=port, hostname=hostname, gpu=gpu,
        max_concurrent_requests=max_concurrent_requests, checkpoint_tier=checkpoint_tier,
        max_input_tokens=max_input_tokens, max_total_tokens=max_total_tokens,
        max_batch_prefill_tokens=max_batch_prefill_tokens, max_batch_total_tokens=max_batch_total_tokens,
        cuda_memory_fraction=cuda_memory_fraction, init_seconds=init_seconds, seed=seed, eos_rate=eos_rate,
        max_best_of=max_best_of, max_stop_sequences=max_stop_sequences, max_top_n_tokens=max_top_n_tokens,
        max_client_batch_size=max_client_batch_size,
    ))
