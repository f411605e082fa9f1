"""The GPU node agent: launches backend instances, streams inference, publishes state."""
