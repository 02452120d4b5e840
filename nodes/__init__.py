"""The ComfyUI side of the pack. Only this package knows the host.

``cache_nodes`` (the V3 nodes) imports ``comfy_api`` and is loaded by the pack's
``comfy_entrypoint``; ``driver``, ``families`` and ``teacache_tables`` import no host module.
"""
