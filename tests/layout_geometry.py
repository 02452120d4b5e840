"""What the frontend draws for a workflow JSON: node boxes, wires (through native reroutes), groups, and the
layout problems a person would see. Used by tests/test_workflows.py (every shipped workflow) and
tests/test_browser.py (which checks these positions and curves against the frontend itself).

Geometry of ComfyUI frontend 1.27 (LiteGraph), the same in 1.49 (the browser test checks both): a node's title
bar (30 px) sits above its ``pos``; socket input ``i`` at ``(x + 10, y + 14 + 20 i)``, output ``j`` at
``(x + w - 9, y + 14 + 20 j)``; in the default spline mode a wire is a cubic bezier whose control points lie a
quarter of its length right of the output and left of the input; a wire through native reroutes is drawn
segment by segment with the control points ``LGraphCanvas.renderAllLinkSegments`` and ``Reroute.calculateAngle``
compute (the frontend sets ``Reroute.maxSplineOffset`` to 20).
"""

from __future__ import annotations

import math

TITLE_H, SLOT_H, REROUTE_MAX_OFFSET = 30.0, 20.0, 20.0


def node_box(n):
    """[x0, y0, x1, y1] of a node as drawn, title bar included."""
    (x, y), (w, h) = n["pos"], n["size"]
    return [x, y - TITLE_H, x + w, y + h]


def in_pos(n, slot):
    return (n["pos"][0] + 10.0, n["pos"][1] + 14.0 + SLOT_H * slot)


def out_pos(n, slot):
    return (n["pos"][0] + n["size"][0] - 9.0, n["pos"][1] + 14.0 + SLOT_H * slot)


def bezier(p0, c0, c1, p1, n=64):
    pts = []
    for k in range(n + 1):
        t = k / n
        u = 1.0 - t
        a, b, c, d = u * u * u, 3 * u * u * t, 3 * u * t * t, t * t * t
        pts.append((a * p0[0] + b * c0[0] + c * c1[0] + d * p1[0], a * p0[1] + b * c0[1] + c * c1[1] + d * p1[1]))
    return pts


def link_paths(wf, samples=64, with_reroutes=False):
    """{link id: [segment, ...]}, each segment a list of points along the drawn wire (``samples`` + 1 points,
    so the middle one is the curve at t = 0.5, where the frontend puts a link's and a reroute's ``_pos``).
    With ``with_reroutes``: also the id of the reroute each segment ends at (None for the last one)."""
    nodes = {n["id"]: n for n in wf["nodes"]}
    links = {l[0]: l for l in wf["links"]}
    extra = wf.get("extra") or {}
    reroutes = {r["id"]: r for r in extra.get("reroutes") or []}
    parent = {e["id"]: e["parentId"] for e in extra.get("linkExtensions") or []}

    def chain(lid):
        out, rid = [], parent.get(lid)
        while rid is not None:
            out.append(reroutes[rid])
            rid = reroutes[rid].get("parentId")
        return out[::-1]

    chains = {lid: chain(lid) for lid in links}
    ends = {lid: (out_pos(nodes[l[1]], l[2]), in_pos(nodes[l[3]], l[4])) for lid, l in links.items()}

    def next_pos(lid, rid):
        c = chains[lid]
        i = [r["id"] for r in c].index(rid)
        return tuple(c[i + 1]["pos"]) if i + 1 < len(c) else ends[lid][1]

    angle = {}
    for rid, r in reroutes.items():  # Reroute.calculateAngle
        pos = tuple(r["pos"])
        lids = [lid for lid in r["linkIds"] if lid in links]
        if not lids:
            angle[rid] = (0.0, 0.0, (0.0, 0.0))
            continue
        angs = [math.atan2(next_pos(lid, rid)[1] - pos[1], next_pos(lid, rid)[0] - pos[0]) for lid in lids]
        mean = sum(angs) / len(angs)
        start = tuple(reroutes[r["parentId"]]["pos"]) if r.get("parentId") is not None else ends[lids[0]][0]
        o2r = math.atan2(pos[1] - start[1], pos[0] - start[0])
        diff = (o2r - mean) * 0.5
        if abs(diff) > math.pi * 0.5:
            diff += math.pi
        dist = min(REROUTE_MAX_OFFSET, math.dist(start, pos) * 0.25)
        cos, sin = math.cos(o2r - diff), math.sin(o2r - diff)
        angle[rid] = (cos, sin, (-dist * cos, -dist * sin))

    paths, ends_at = {}, {}
    for lid, (a, b) in ends.items():  # LGraphCanvas.renderAllLinkSegments
        pts = [a] + [tuple(r["pos"]) for r in chains[lid]] + [b]
        segs, start_ctrl = [], None
        for j, r in enumerate(chains[lid]):
            p0, p1 = pts[j], pts[j + 1]
            c0 = (
                (p0[0] + math.dist(p0, p1) * 0.25, p0[1])
                if start_ctrl is None
                else (p0[0] + start_ctrl[0], p0[1] + start_ctrl[1])
            )
            cp = angle[r["id"]][2]
            segs.append(bezier(p0, c0, (p1[0] + cp[0], p1[1] + cp[1]), p1, samples))
            nxt = pts[j + 2]
            d = min(REROUTE_MAX_OFFSET, math.dist(p1, nxt) * 0.25)
            start_ctrl = (d * angle[r["id"]][0], d * angle[r["id"]][1])
        p0 = pts[-2]
        d = math.dist(p0, b) * 0.25
        c0 = (p0[0] + d, p0[1]) if start_ctrl is None else (p0[0] + start_ctrl[0], p0[1] + start_ctrl[1])
        segs.append(bezier(p0, c0, (b[0] - d, b[1]), b, samples))
        paths[lid] = segs
        ends_at[lid] = [r["id"] for r in chains[lid]] + [None]
    return (paths, ends_at) if with_reroutes else paths


def title_fits(n, char_px=7.5):
    """Whether the node's title fits its width (the frontend widens a node for a longer title: about 7.3 px per
    character of its 14 px font and 40 px of title bar padding). A rough check that leaves the padding out; the
    browser test checks every node against the width its frontend computes."""
    title = n.get("title") or ""
    return len(title) * char_px <= n["size"][0]


def group_box(g):
    x, y, w, h = g["bounding"]
    return [x, y, x + w, y + h]


def inside(p, box, margin=0.0):
    return box[0] - margin < p[0] < box[2] + margin and box[1] - margin < p[1] < box[3] + margin


def overlap(a, b, gap=0.0):
    return a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap


def contains(outer, inner):
    return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


GROUP_TITLE_H = 34.0  # LGraphGroup title bar: font_size 24 x 1.4


def layout_problems(wf, node_gap=10.0, wire_margin=3.0):
    """What a person would see wrong: overlapping nodes, nodes half in a group or under its title, wires
    across a group neither end is in, wires under a node neither end is."""
    out = []
    nodes = {n["id"]: n for n in wf["nodes"]}
    boxes = {i: node_box(n) for i, n in nodes.items()}
    name = lambda i: f"#{i} {nodes[i].get('title') or nodes[i]['type']}"
    ids = sorted(boxes)
    for k, i in enumerate(ids):
        for j in ids[k + 1 :]:
            if overlap(boxes[i], boxes[j], node_gap):
                out.append(f"nodes {name(i)} and {name(j)} overlap or are closer than {node_gap:g} px")
    groups = wf.get("groups") or []
    member = {}
    for g in groups:
        gb = group_box(g)
        body = [gb[0], gb[1] + GROUP_TITLE_H, gb[2], gb[3]]
        member[g["title"]] = set()
        for i, b in boxes.items():
            if contains(body, b):
                member[g["title"]].add(i)
            elif overlap(gb, b):
                out.append(f"node {name(i)} is partly in group {g['title']!r} or under its title")
    for k, g in enumerate(groups):
        for h in groups[k + 1 :]:
            if overlap(group_box(g), group_box(h)):
                out.append(f"groups {g['title']!r} and {h['title']!r} overlap")
    links = {l[0]: l for l in wf["links"]}
    for lid, segs in link_paths(wf).items():
        _, src, _, dst, _, _ = links[lid]
        pts = [p for s in segs for p in s]
        for g in groups:
            if src in member[g["title"]] or dst in member[g["title"]]:
                continue
            bad = [p for p in pts if inside(p, group_box(g), wire_margin)]
            if bad:
                out.append(
                    f"wire {lid} {name(src)} -> {name(dst)} crosses group {g['title']!r} at "
                    f"({bad[0][0]:.0f}, {bad[0][1]:.0f})"
                )
        for i, b in boxes.items():
            if i in (src, dst):
                continue
            bad = [p for p in pts if inside(p, b, wire_margin)]
            if bad:
                out.append(
                    f"wire {lid} {name(src)} -> {name(dst)} passes under {name(i)} at "
                    f"({bad[0][0]:.0f}, {bad[0][1]:.0f})"
                )
    for r in (wf.get("extra") or {}).get("reroutes") or []:
        for i, b in boxes.items():
            if inside(r["pos"], b, 12.0):
                out.append(f"reroute {r['id']} is under {name(i)}")
    return out
