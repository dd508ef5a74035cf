#!/usr/bin/python3
"""Drives bai-agent with the real callosum client library (not part of the
test suite: callosum is not a Debian package; run it by hand with a checkout).

    CALLOSUM_SRC=/path/to/callosum/src /usr/bin/python3 test/pypeer/callosum_client.py tcp://127.0.0.1:6011 \
        [AGENT_PUBLIC_CERT MANAGER_SECRET_CERT]

Needs python3-zmq, python3-msgpack, python3-attr, python3-dateutil, python3-yarl.
"""
import asyncio
import os
import sys

import tempfile  # noqa: E402

sys.path.insert(0, os.environ["CALLOSUM_SRC"])
# A source checkout has no installed metadata, which callosum/__init__.py
# reads for its version: provide a minimal one.
_meta = tempfile.mkdtemp()
os.makedirs(os.path.join(_meta, "callosum-0.0.0.dist-info"))
with open(os.path.join(_meta, "callosum-0.0.0.dist-info", "METADATA"), "w") as f:
    f.write("Metadata-Version: 2.1\nName: callosum\nVersion: 0.0.0\n")
sys.path.insert(0, _meta)

import msgpack  # noqa: E402
import zmq.auth  # noqa: E402
from callosum.auth import AbstractClientAuthenticator, Identity  # noqa: E402
from callosum.lower.zeromq import ZeroMQAddress, ZeroMQRPCTransport  # noqa: E402
from callosum.rpc import Peer  # noqa: E402
from callosum.exceptions import CallosumError  # noqa: E402


class ManagerAuth(AbstractClientAuthenticator):
    """What Backend.AI's ManagerAuthHandler provides."""

    def __init__(self, server_pub, pub, sec):
        self.server_pub, self.pub, self.sec = server_pub, pub, sec

    async def server_public_key(self):
        return self.server_pub

    async def client_identity(self):
        return Identity("local", self.sec)

    async def client_public_key(self):
        return self.pub


def packb(v):
    return msgpack.packb(v, use_bin_type=True)


def unpackb(b):
    return msgpack.unpackb(b, raw=False, strict_map_key=False)


async def main():
    addr = sys.argv[1]
    auth = None
    if len(sys.argv) > 3:
        spub, _ = zmq.auth.load_certificate(sys.argv[2])
        mpub, msec = zmq.auth.load_certificate(sys.argv[3])
        auth = ManagerAuth(spub, mpub, msec)
    async with Peer(connect=ZeroMQAddress(addr), transport=ZeroMQRPCTransport, serializer=packb, deserializer=unpackb,
                    authenticator=auth, invoke_timeout=30) as peer:
        for okey in (None, ""):
            r = await peer.invoke("ping", {"args": ("hello",), "kwargs": {}}, order_key=okey)
            assert r == "hello", r
            print("ok: ping with order_key", repr(okey))
        hw = await peer.invoke("gather_hwinfo", {"args": (), "kwargs": {}})
        assert "cpu" in hw, hw
        print("ok: gather_hwinfo", sorted(hw))
        try:
            await peer.invoke("no_such_method", {"args": (), "kwargs": {}})
            raise SystemExit("unknown method did not fail")
        except CallosumError as e:
            print("ok: unknown method ->", type(e).__name__, e)
        try:
            await peer.invoke("ping", {"args": (), "kwargs": {}})
            raise SystemExit("missing argument did not fail")
        except CallosumError as e:
            print("ok: missing argument ->", type(e).__name__, e)
        r = await peer.invoke("ping", {"args": ("still",), "kwargs": {}})
        assert r == "still"
        print("ok: still answering")


asyncio.run(main())
