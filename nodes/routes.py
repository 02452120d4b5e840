"""HTTP routes of the pack: the last run report of every cache node, and the last result of every Compare node
(``GET /tcpade/compares``, same shape as the reports), for the web extension.

``GET /tcpade/reports`` (also ``/api/tcpade/reports``: the host mirrors every route under ``/api``)
returns ``{"<prompt id>/<node id>/<n>": report}``: :data:`.patcher.LAST_REPORTS`, the payload of every recent
``tcpade.report`` message (each names its ``node``), each with ``workflow_id``, the id of the workflow the
prompt came from (read from the host's history or running queue; ``null`` when unknown). The
extension shows a report on a node only when the workflow and the node type match, so a reloaded
page, or a branch the host serves from its cache without sampling, still shows the last run.

:func:`register` adds the route to a running host's ``PromptServer``; without a server (tests,
scripts) nothing is registered and the pack imports as before. Nothing here imports the host at
module level.
"""

from __future__ import annotations

import logging
from typing import Callable, Dict, Optional

from ..tcpade_core.methods import ui_table
from . import host, patcher

log = logging.getLogger("tcpade")

PATH = "/tcpade/reports"
COMPARES_PATH = "/tcpade/compares"  # the last result of every Compare node, same shape
METHODS_PATH = "/tcpade/methods"  # every cache node's label, presets and greyed-out widget rules
_REGISTERED = False


def _workflow_id(extra_data) -> Optional[str]:
    try:
        wid = extra_data["extra_pnginfo"]["workflow"]["id"]
    except (KeyError, TypeError):
        return None
    return str(wid) if wid is not None else None


def queue_lookup(prompt_queue) -> Callable[[str], Optional[str]]:
    """prompt id -> workflow id, from the host's history (finished prompts) or its running queue."""

    def lookup(prompt_id: str) -> Optional[str]:
        try:
            hist = prompt_queue.get_history(
                prompt_id=prompt_id, map_function=lambda item: _workflow_id(host.queue_item(item["prompt"])[1])
            )
            if prompt_id in hist:
                return hist[prompt_id]
            running, _ = prompt_queue.get_current_queue_volatile()
            for item in running:
                pid, extra = host.queue_item(item)
                if pid == prompt_id:
                    return _workflow_id(extra)
        except Exception as e:  # the host's queue layout is not an API; never fail the request
            log.debug(f"TC-Padé: workflow of prompt {prompt_id} not found: {e}")
        return None

    return lookup


def reports_payload(reports: Dict[str, dict], lookup: Optional[Callable[[str], Optional[str]]]) -> Dict[str, dict]:
    """The reports with ``workflow_id`` filled in (one lookup per prompt)."""
    cache: Dict[str, Optional[str]] = {}
    out = {}
    for key, rep in list(reports.items()):
        pid = rep.get("prompt_id")
        if pid not in cache:
            cache[pid] = lookup(pid) if (pid and lookup is not None) else None
        out[str(key)] = {**rep, "workflow_id": cache[pid]}
    return out


def register() -> bool:
    """Add ``GET /tcpade/reports``, ``GET /tcpade/compares`` and ``GET /tcpade/methods`` (the web extension's method
    facts, :func:`tcpade_core.methods.ui_table`) to the running host server, once. False when there is no server."""
    global _REGISTERED
    if _REGISTERED:
        return True
    inst = patcher.prompt_server()
    if inst is None or not hasattr(inst, "routes"):
        return False
    from aiohttp import web

    @inst.routes.get(PATH)
    async def get_reports(request):
        queue = getattr(inst, "prompt_queue", None)
        return web.json_response(reports_payload(patcher.LAST_REPORTS, queue_lookup(queue) if queue else None))

    @inst.routes.get(METHODS_PATH)
    async def get_methods(request):
        return web.json_response(ui_table())

    @inst.routes.get(COMPARES_PATH)
    async def get_compares(request):
        queue = getattr(inst, "prompt_queue", None)
        return web.json_response(reports_payload(patcher.LAST_COMPARES, queue_lookup(queue) if queue else None))

    _REGISTERED = True
    return True
