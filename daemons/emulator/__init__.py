"""A drop-in for TGI's `text-generation-launcher`: one model on one emulated GPU.

A real HTTP server speaking TGI's protocol (TGI router/src/server.rs and docs/openapi.json), with continuous batching
timed by a published latency model (`latency`), over the GPU memory an instance occupies
and its load time (`daemons.profiles.memory`).

    from daemons.emulator.daemon import EmulatorConfig, run
    run(EmulatorConfig(model_id="facebook/opt-125m", port=8080))

Importing this package loads no web server: the engine (`engine`, `latency`, `tokens`)
is usable on its own, e.g. in-process or in simulation; the HTTP layer is `daemon`
(configuration and process), `instance` (what every route shares), `tgi_routes`,
`openai_routes` and `route_helpers`. Tests start it as a subprocess with
`daemons.emulator.testing.start_emulator`.
"""
