"""Which waiting request joins the running batch: the emulator's admission rule, pure.

TGI v3's rule (launcher.md, `max_batch_prefill_tokens`, `max_batch_total_tokens`): before a
step, waiting requests join in arrival order while their prompts fit the prefill budget
(the head of the queue always does, so a long prompt cannot starve) and their whole
possible length (`input + max_new_tokens`) fits the KV budget. The emulator's engine
(engine.py) and the simulator's batches (daemons/sim/batch.py) both ask `joins`.
"""

from __future__ import annotations


def prefill_budget(max_batch_prefill_tokens: int, running: int) -> int:
    """Prompt tokens one step may prefill: the budget less one decode token per running request."""
    return max_batch_prefill_tokens - running


def joins(first: bool, input_tokens: int, reserved_tokens: int, budget: int, kv_used: int,
          max_batch_total_tokens: int) -> bool:
    """Whether the next waiting request joins this step (`first`: none joined yet)."""
    if not first and input_tokens > budget:
        return False
    return kv_used + reserved_tokens <= max_batch_total_tokens
