"""The in-process model manager on its own (no sockets): an engine that stops under its
instance fails that instance as a dead emulator process would, and a refused load is one error."""

from __future__ import annotations

import asyncio

import pytest

from daemons.node.backend_api import BackendRequestError, Finished, Token
from daemons.node.catalog import Catalog
from daemons.node.config import NodeConfig
from daemons.node.inproc import InprocBackend, InprocModelManager
from daemons.node.instances import ModelManager, make_manager

SMALL = "facebook/opt-125m"


def manager(**fields: object) -> ModelManager:
    config = NodeConfig(backend="emulator-inproc", models=(SMALL,), gpu_backend="emulated", init_s=0.0,
                        checkpoint_tier="gpu", **fields)  # type: ignore[arg-type]
    catalog = Catalog(config.models, config.gpu, config.checkpoint_tier, config.kv_tokens, config.init_s)
    return make_manager(config, catalog, lambda: catalog.gpu_memory, lambda: None)


async def test_a_stream_is_what_the_http_backend_yields() -> None:
    models = manager()
    assert isinstance(models, InprocModelManager)
    instance, cold = await models.acquire(SMALL)
    items = [item async for item in instance.backend.stream("one two three", 5)]
    assert cold and [i.index for i in items if isinstance(i, Token)] == [1, 2, 3, 4, 5]
    assert items[-1] == Finished(5, "length") and instance.backend.open_streams == 0
    models.release(instance)
    await models.close()


async def test_an_engine_that_stops_fails_its_instance_and_its_streams() -> None:
    models = manager()
    instance, _ = await models.acquire(SMALL)
    backend = instance.backend
    assert isinstance(backend, InprocBackend)
    stream = backend.stream("one two three", 2000)
    assert isinstance(await anext(stream), Token)
    await backend.close()  # the engine ends under a running stream, as an emulator process dies
    with pytest.raises(BackendRequestError) as failed:
        await anext(stream)
    assert failed.value.code == "backend_died"
    for _ in range(50):  # the manager's watch notices and frees the instance's memory
        if SMALL not in models.instances:
            break
        await asyncio.sleep(0.01)
    assert SMALL not in models.instances and instance.state == "failed" and "ended" in instance.failure
    models.release(instance)
    await models.close()


async def test_a_request_the_engine_refuses_is_a_validation_error() -> None:
    models = manager()
    instance, _ = await models.acquire(SMALL)
    with pytest.raises(BackendRequestError) as refused:
        await anext(instance.backend.stream("one two", 100_000))  # past OPT's context
    assert refused.value.code == "validation" and instance.backend.open_streams == 0
    models.release(instance)
    await models.close()
