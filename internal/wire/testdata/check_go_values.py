#!/usr/bin/python3
"""Reads msgpack written by Go (internal/wire TestPythonUnpicklesGoValues)
and checks that Python's msgpack + pickle, with Backend.AI's stand-in
classes, get back the intended objects. Exit 0 means all matched."""
import os
import pickle
import sys
import uuid
from decimal import Decimal

import msgpack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_golden as g  # noqa: E402


def ext_hook(code, data):
    if code == 1:
        return uuid.UUID(bytes=data)
    if code in (3, 6, 7, 8, 9, 16):
        return pickle.loads(data)
    return msgpack.ExtType(code, data)


def main(path):
    with open(path, "rb") as f:
        v = msgpack.unpackb(f.read(), raw=False, ext_hook=ext_hook, strict_map_key=False)
    failures = []

    def expect(key, want):
        got = v[key]
        if type(got) is not type(want) or got != want:
            failures.append(f"{key}: got {got!r} ({type(got).__name__}), want {want!r}")

    expect("decimal", Decimal("1.5"))
    expect("enum", g.SessionTypes.BATCH)
    expect("binarysize", g.BinarySize(64 * 2**20))
    expect("slotname", g.SlotName("cuda.device"))
    if v["slotname"]._parsed is not False:
        failures.append("slotname slots not restored")
    rs = v["resourceslot"]
    if type(rs) is not g.ResourceSlot or dict(rs.data) != {"cpu": Decimal("2"), "mem": Decimal("1073741824")}:
        failures.append(f"resourceslot: {rs!r}")
    ir = v["imageref"]
    if type(ir) is not g.ImageRef or (ir.name, ir.project, ir.tag, ir.registry, ir.architecture, ir.is_local) != ("python", "stable", "3.9", "cr.backend.ai", "x86_64", False):
        failures.append(f"imageref: {ir!r}")
    if pickle.dumps(Decimal("1.5"), protocol=5) != v["decimal_bytes"]:
        failures.append("Decimal pickle bytes differ from CPython's")
    if failures:
        print("\n".join(failures))
        sys.exit(1)
    print("all values matched")


if __name__ == "__main__":
    main(sys.argv[1])
