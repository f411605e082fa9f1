#!/usr/bin/env python3
"""Benchmark: does one emulator process deliver the timing its latency model predicts?

Profile: meta-llama/Llama-3.1-8B-Instruct on a100-80gb by default (α ≈ 9.5 ms steps, so
Python has a realistic step to keep up with); `--model-id` / `--gpu` pick another.

1. TTFT and time per output token (TPOT) at batch 1, 16 and 64, measured by a real HTTP
   client on loopback (httpx2, the stack huggingface_hub uses), against
   `latency.ttft_seconds` / `latency.mean_tpot_seconds`.  To put the b requests in one
   prefill step, as the prediction assumes, a "gate" request with a long prompt and one
   output token occupies the engine first; the b streams queue behind it and are admitted
   together when it ends.  TTFT = first token − end of the gate, TPOT = (last − first
   token) / (n − 1), both per stream, averaged.
2. Sustained streams: the same at 16, 32, 64, 128, 256, ... concurrent streams until TPOT
   drifts more than 10 % above the model (or the time budget runs out); the figure is the
   largest level within 10 %, measured over the steady-state tail of each stream.

Prints a table, then ONE final line of JSON with the figures (ratios = measured / predicted).
`--quick` (CI): fewer tokens and levels, a few seconds.

    .venv/bin/python scripts/bench_emulator.py [--quick] [--model-id M] [--gpu G]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httpx2

from daemons.emulator import latency
from daemons.emulator.testing import start_emulator
from daemons.profiles import LatencyCoefficients, load_gpu, load_model

TOLERANCE = 1.10  # a level is sustained while measured TPOT <= 1.10 x predicted


@dataclass
class Stream:
    """Client-side record of one stream."""

    mark: int = 0  # note when this many tokens have arrived (start of the steady-state tail)
    first: float = 0.0
    mid: float = 0.0
    mid_events: int = 0
    last: float = 0.0
    events: int = 0
    error: str = ""

    def tail_tpot(self) -> float:
        return (self.last - self.mid) / (self.events - self.mid_events)


@dataclass
class Run:
    batch: int
    gate_end: float = 0.0
    streams: list[Stream] = field(default_factory=list)

    @property
    def ok(self) -> list[Stream]:
        return [s for s in self.streams if not s.error and s.events > 1]


async def read_stream(http: httpx2.AsyncClient, body: dict[str, Any], rec: Stream) -> None:
    async with http.stream("POST", "/generate_stream", json=body) as resp:
        async for chunk in resp.aiter_raw():
            now = time.perf_counter()
            if b'"error"' in chunk:
                rec.error = chunk.decode(errors="replace").strip()
                return
            if not rec.first:
                rec.first = now
            rec.last = now
            rec.events += chunk.count(b"\n\n")
            if rec.mark and not rec.mid and rec.events >= rec.mark:
                rec.mid, rec.mid_events = now, rec.events


async def gated_run(http: httpx2.AsyncClient, batch: int, prompt: int, new: int, gate_words: int) -> Run:
    """One gate request, then `batch` streams queued behind it."""
    run = Run(batch, streams=[Stream(mark=new // 4) for _ in range(batch)])

    async def gate() -> None:
        # A stream too, so its end reaches us by the same path as the measured tokens.
        rec = Stream()
        body = {"inputs": "gate " * gate_words, "parameters": {"max_new_tokens": 1, "details": False}}
        await read_stream(http, body, rec)
        run.gate_end = rec.last

    gate_task = asyncio.create_task(gate())
    await asyncio.sleep(0.02)  # let the gate be admitted first
    body = {"inputs": " ".join(["token"] * prompt), "parameters": {"max_new_tokens": new, "details": False}}
    await asyncio.gather(gate_task, *(read_stream(http, body, s) for s in run.streams))
    return run


async def scrape(http: httpx2.AsyncClient) -> dict[str, float]:
    """The emulator's step-lag histogram sums and its prefill-step counter."""
    wanted = ("schedctl_emulator_step_lag_seconds_sum", "schedctl_emulator_step_lag_seconds_count",
              'tgi_batch_inference_count{method="prefill"}')
    values = {}
    for line in (await http.get("/metrics")).text.splitlines():
        name, _, value = line.rpartition(" ")
        if name in wanted:
            values[name] = float(value)
    return values


@dataclass
class Measured:
    run: Run
    lag_ms: float  # mean server-side lateness of a step start during the run
    prefill_steps: int  # 1 for the gate + the steps that admitted the streams


async def measured_run(http: httpx2.AsyncClient, batch: int, prompt: int, new: int,
                       gate_words: int) -> Measured:
    """A gated run on warm connections, with the server's own view of it."""
    await gated_run(http, batch, prompt, 2, gate_words)  # open `batch` keep-alive connections first
    before = await scrape(http)
    run = await gated_run(http, batch, prompt, new, gate_words)
    after = await scrape(http)
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    steps = max(delta["schedctl_emulator_step_lag_seconds_count"], 1.0)
    lag_ms = delta["schedctl_emulator_step_lag_seconds_sum"] / steps * 1e3
    return Measured(run, lag_ms, int(delta['tgi_batch_inference_count{method="prefill"}']))


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def window_tpot(c: LatencyCoefficients, batch: int, prompt: int, first_k: int, new: int) -> float:
    """Predicted mean step for tokens first_k+1..new of `batch` streams decoding together."""
    steps = [latency.tpot_seconds(c, batch, prompt + k - 1) for k in range(first_k + 1, new + 1)]
    return mean(steps)


def batch_row(measured: list[Measured], c: LatencyCoefficients, prompt: int, new: int) -> dict[str, Any]:
    """Median over repeated runs of the per-run mean TTFT and TPOT.

    `gated`: every run prefilled the b streams in one step, as `ttft_seconds` assumes."""
    runs = [m.run for m in measured]
    batch = runs[0].batch
    ttft = median([mean([s.first - r.gate_end for s in r.ok]) for r in runs])
    tpot = median([mean([(s.last - s.first) / (new - 1) for s in r.ok]) for r in runs])
    p_ttft = latency.ttft_seconds(c, batch, prompt)
    p_tpot = latency.mean_tpot_seconds(c, batch, prompt, new)
    return {
        "batch": batch, "runs": len(runs), "ok_streams": min(len(r.ok) for r in runs),
        "gated": all(m.prefill_steps == 2 for m in measured),
        "ttft_measured_ms": round(ttft * 1e3, 3), "ttft_predicted_ms": round(p_ttft * 1e3, 3),
        "ttft_ratio": round(ttft / p_ttft, 4),
        "tpot_measured_ms": round(tpot * 1e3, 3), "tpot_predicted_ms": round(p_tpot * 1e3, 3),
        "tpot_ratio": round(tpot / p_tpot, 4),
    }


def sustain_row(measured: list[Measured], c: LatencyCoefficients, prompt: int, new: int) -> dict[str, Any]:
    """TPOT over the last 3/4 of each stream, when every stream is decoding (the prefill
    of many streams may take several steps, which the closed form does not cover);
    the median over repeated runs, so one hiccup of a shared machine does not decide."""
    batch = measured[0].run.batch
    oks = [[s for s in m.run.ok if s.mid and s.events > s.mid_events] for m in measured]
    tpot = median([mean([s.tail_tpot() for s in ok]) for ok in oks])
    predicted = window_tpot(c, batch, prompt, new // 4, new)
    ratio = tpot / predicted
    complete = all(len(ok) == batch for ok in oks)
    return {"streams": batch, "runs": len(measured), "errors": sum(batch - len(ok) for ok in oks),
            "prefill_steps": max(m.prefill_steps for m in measured) - 1,
            "server_step_lag_ms": round(median([m.lag_ms for m in measured]), 3),
            "tpot_measured_ms": round(tpot * 1e3, 3), "tpot_predicted_ms": round(predicted * 1e3, 3),
            "tpot_ratio": round(ratio, 4), "within_10pct": complete and ratio <= TOLERANCE}


async def bench(base_url: str, args: argparse.Namespace, c: LatencyCoefficients) -> dict[str, Any]:
    limits = httpx2.Limits(max_connections=None, max_keepalive_connections=None)
    deadline = time.monotonic() + args.budget_s
    async with httpx2.AsyncClient(base_url=base_url, timeout=120, limits=limits) as http:
        batches = []
        for b in args.batches:
            runs = [await measured_run(http, b, args.prompt_tokens, args.new_tokens, args.gate_words)
                    for _ in range(args.reps)]
            batches.append(batch_row(runs, c, args.prompt_tokens, args.new_tokens))
        sustain: list[dict[str, Any]] = []
        for level in args.levels:
            if time.monotonic() > deadline:
                break
            runs = [await measured_run(http, level, args.prompt_tokens, args.new_tokens, args.gate_words)
                    for _ in range(args.reps)]
            sustain.append(sustain_row(runs, c, args.prompt_tokens, args.new_tokens))
            if not sustain[-1]["within_10pct"]:
                break
    best = max((r["streams"] for r in sustain if r["within_10pct"]), default=0)
    return {"batches": batches, "sustain": sustain, "max_sustained_streams": best}


def print_table(result: dict[str, Any]) -> None:
    print(f"emulator benchmark: {result['model_id']} on {result['gpu']} (prompt {result['prompt_tokens']} "
          f"tokens, {result['new_tokens']} new tokens{', quick' if result['quick'] else ''})")
    print(f"{'batch':>6} {'TTFT ms':>10} {'model':>9} {'ratio':>6}   {'TPOT ms':>9} {'model':>9} {'ratio':>6}"
          f"  gated")
    for r in result["batches"]:
        print(f"{r['batch']:>6} {r['ttft_measured_ms']:>10.2f} {r['ttft_predicted_ms']:>9.2f} "
              f"{r['ttft_ratio']:>6.3f}   {r['tpot_measured_ms']:>9.2f} {r['tpot_predicted_ms']:>9.2f} "
              f"{r['tpot_ratio']:>6.3f}  {r['gated']}")
    print(f"{'streams':>7} {'TPOT ms':>9} {'model':>9} {'ratio':>6} {'server lag ms':>13}  within 10 %")
    for r in result["sustain"]:
        errors = f" errors={r['errors']}" if r["errors"] else ""
        print(f"{r['streams']:>7} {r['tpot_measured_ms']:>9.2f} {r['tpot_predicted_ms']:>9.2f} "
              f"{r['tpot_ratio']:>6.3f} {r['server_step_lag_ms']:>13.3f}  {r['within_10pct']}{errors}")
    print(f"max sustained streams within 10 % of the model: {result['max_sustained_streams']}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-id", default="meta-llama/Llama-3.1-8B-Instruct")
    parser.add_argument("--gpu", default="a100-80gb")
    parser.add_argument("--quick", action="store_true", help="CI mode: a few seconds")
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=None)
    parser.add_argument("--budget-s", type=float, default=None, help="time budget of the sustain sweep")
    args = parser.parse_args(argv)
    args.new_tokens = args.new_tokens or (16 if args.quick else 64)
    args.budget_s = args.budget_s or (5.0 if args.quick else 90.0)
    args.batches = [1, 16] if args.quick else [1, 16, 64]
    args.levels = [16, 32] if args.quick else [16, 32, 64, 128, 256, 512, 1024]
    args.gate_words = 3000
    args.reps = 1 if args.quick else 3
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    c = load_model(args.model_id).latency_on(load_gpu(args.gpu))
    extra = ["--max-concurrent-requests", "4096"]
    with start_emulator(args.model_id, args.gpu, extra_args=extra) as emu:
        figures = asyncio.run(bench(emu.base_url, args, c))
    result = {"bench": "emulator", "model_id": args.model_id, "gpu": args.gpu, "quick": args.quick,
              "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens, **figures}
    print_table(result)
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
