"""The Compare node beside the mean: the worst image, the images whose content changed, and its last result kept
for a reloaded page (GET /tcpade/compares)."""

from __future__ import annotations

import json
import math

import pytest
import torch

import host_util as H

H.require_host()


@pytest.fixture(scope="module")
def compare(tmp_path_factory):
    H.load_pack()
    import folder_paths

    old = folder_paths.get_temp_directory()
    folder_paths.set_temp_directory(str(tmp_path_factory.mktemp("compare_tmp")))
    yield H.host().nodes.NODE_CLASS_MAPPINGS["TCPade_Compare"]
    folder_paths.set_temp_directory(old)


def test_worst_image_and_changed_content_are_shown(compare):
    cn = H.pack_module("nodes.compare_nodes")
    patcher = H.pack_module("nodes.patcher")
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(4, 16, 16, 3, generator=g)
    test = (ref + 0.01 * torch.randn(ref.shape, generator=g)).clamp(0, 1)
    test[2] = torch.rand(16, 16, 3, generator=g)  # another picture altogether
    out = compare.execute(test, ref, 4.0)
    res = out.ui["tcpade_compare"][0]
    per = [10 * math.log10(1.0 / float(((test[i].double() - ref[i].double()) ** 2).mean())) for i in range(4)]
    assert res["per_image_psnr"] == pytest.approx(per, rel=1e-5)
    assert res["worst_index"] == 2 and res["worst_psnr"] == pytest.approx(per[2], rel=1e-5)
    assert per[2] < cn.CHANGED_FLOOR_DB < min(per[0], per[1], per[3])
    assert res["changed"] == [2] and res["changed_floor_db"] == cn.CHANGED_FLOOR_DB
    assert "worst" in res["text"] and "1 image changed content" in res["text"] and ": 3" in res["text"]
    json.dumps(out.ui, allow_nan=False)
    # nothing changed: no mark
    calm = compare.execute(test[[0, 1, 3]], ref[[0, 1, 3]], 4.0).ui["tcpade_compare"][0]
    assert calm["changed"] == [] and "changed content" not in calm["text"]
    # the last result per node is kept for the reload route
    patcher.LAST_COMPARES.clear()
    compare.hidden = type("Hidden", (), {"unique_id": "42", "prompt": None, "extra_pnginfo": None})()
    try:
        compare.execute(test, ref, 4.0)
    finally:
        del compare.hidden
    assert patcher.LAST_COMPARES["42"]["changed"] == [2]
    routes = H.pack_module("nodes.routes")
    served = routes.reports_payload(patcher.LAST_COMPARES, None)
    assert served["42"]["worst_index"] == 2 and served["42"]["workflow_id"] is None
