#!/usr/bin/python3
"""The Python baseline for the RPC benchmark: a pyzmq ROUTER that answers
PING with PONG and a Callosum `ping` call with its argument, doing the same
decoding and encoding work per call as a Callosum server (header and body
msgpack, nested payload), on one thread like callosum's loop.

    echo_router.py tcp://127.0.0.1:PORT [SERVER_SECRET_CERT CLIENT_PUBLIC_CERT]

Prints "ready" once bound. With certificates it is a CURVE server that
admits only the given client key (through pyzmq's own ThreadAuthenticator).
"""
import sys

import msgpack
import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator


def main():
    addr = sys.argv[1]
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 100)
    if len(sys.argv) > 3:
        auth = ThreadAuthenticator(ctx)
        auth.start()
        import os
        import shutil
        import tempfile
        d = tempfile.mkdtemp()
        shutil.copy(sys.argv[3], os.path.join(d, "client.key"))
        auth.configure_curve(domain="local", location=d)
        pub, sec = zmq.auth.load_certificate(sys.argv[2])
        sock.zap_domain = b"local"
        sock.curve_server = True
        sock.curve_secretkey = sec
        sock.curve_publickey = pub
    sock.bind(addr)
    print("ready", flush=True)
    empty_array = msgpack.packb([])
    while True:
        frames = sock.recv_multipart()
        *pre, kind, header, body = frames
        if kind == b"PING":
            sock.send_multipart([*pre, b"PONG", header, body])
            continue
        if kind != b"UPPER":
            continue
        h = msgpack.unpackb(header, raw=False)
        b = msgpack.unpackb(body, raw=False)
        req = msgpack.unpackb(b["body"], raw=False)
        result = req["args"][0]
        h["type"] = 2
        sock.send_multipart([*pre, b"UPPER", msgpack.packb(h, use_bin_type=True),
                             msgpack.packb({"meta": empty_array, "body": msgpack.packb(result, use_bin_type=True)}, use_bin_type=True)])


if __name__ == "__main__":
    main()
