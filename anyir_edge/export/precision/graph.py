"""ONNX graph plumbing shared by the FP16 and INT8 paths: node names, metadata stamps, order."""
from __future__ import annotations




def _ensure_names(model) -> None:
    seen = set()
    for i, n in enumerate(model.graph.node):
        if not n.name or n.name in seen:
            n.name = f"{n.op_type}_{i}"
        seen.add(n.name)


def _stamp(model, meta: dict[str, str]) -> None:
    props = {p.key: p.value for p in model.metadata_props}
    props.update(meta)
    del model.metadata_props[:]
    for k, v in props.items():
        model.metadata_props.add(key=k, value=str(v))


def topo_sort(model) -> None:
    """Sort the graph's nodes topologically (the converter appends its casts out of order;
    ``onnx.checker`` and other runtimes want them sorted)."""
    g = model.graph
    ready = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    pending = list(g.node)
    out = []
    while pending:
        rest = []
        for n in pending:
            if all(t in ready for t in n.input):
                out.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):  # a cycle or a dangling input: leave the remainder in order
            out.extend(rest)
            break
        pending = rest
    del g.node[:]
    g.node.extend(out)


def drop_cast_pairs(model) -> int:
    """Remove the FP32 -> FP16 -> FP32 round trips the converter leaves between two blocked nodes
    (it casts every blocked node's inputs up and outputs down), so a chain of FP32 nodes really
    stays FP32 (values above 65504 survive).  Returns the number of Cast pairs bypassed."""
    from onnx import TensorProto

    g = model.graph
    producers = {o: n for n in g.node for o in n.output}
    outputs = {o.name for o in g.output}
    rename, dead = {}, set()
    for n in g.node:
        if n.op_type != "Cast" or n.output[0] in outputs:
            continue
        to = next((a.i for a in n.attribute if a.name == "to"), None)
        up = producers.get(n.input[0])
        if to != TensorProto.FLOAT or up is None or up.op_type != "Cast":
            continue
        if next((a.i for a in up.attribute if a.name == "to"), None) != TensorProto.FLOAT16:
            continue
        src = producers.get(up.input[0])
        if src is not None and src.op_type == "Cast":  # only bypass to a tensor computed in FP32
            continue
        rename[n.output[0]] = up.input[0]
        dead.add(id(n))
    if not rename:
        return 0
    for n in g.node:
        for i, t in enumerate(n.input):
            if t in rename:
                n.input[i] = rename[t]
    used = {t for n in g.node if id(n) not in dead for t in n.input} | outputs
    keep = [n for n in g.node if id(n) not in dead and not (n.op_type == "Cast" and n.output[0] not in used)]
    del g.node[:]
    g.node.extend(keep)
    return len(rename)
