"""TC-Padé: diffusion-transformer feature caching for ComfyUI (V3 extension).

ComfyUI loads this package from ``custom_nodes/<folder>`` and calls :func:`comfy_entrypoint`.
``NODE_CLASS_MAPPINGS`` is deliberately not defined: the host ignores the V3 entry point when it is.
Host modules are imported inside the entry point, so the package also imports outside ComfyUI; the
entry point also adds the pack's one HTTP route (``nodes/routes.py``) when a host server runs.
"""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from comfy_api.latest import ComfyExtension

    from .nodes.cache_nodes import NODE_LIST
    from .nodes.compare_nodes import NODE_LIST as COMPARE_NODES
    from .nodes.model_nodes import NODE_LIST as MODEL_NODES
    from .nodes.routes import register

    register()  # GET /tcpade/reports on the host's server (nothing without a server)

    class TCPadeExtension(ComfyExtension):
        async def get_node_list(self):
            return list(NODE_LIST) + list(COMPARE_NODES) + list(MODEL_NODES)

    return TCPadeExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
