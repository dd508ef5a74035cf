#!/usr/bin/python3
"""Checks the agent's CurveZMQ gate the way the manager connects.

    curve_peer.py ADDR AGENT_PUBLIC_CERT MANAGER_SECRET_CERT OTHER_SECRET_CERT

With the manager's keys the PING gets a PONG and calls work; with another
client key, and with no keys at all, the agent answers nothing (the manager
sees that as AuthenticationError after its 5 s handshake timeout).
"""
import sys

import msgpack
import zmq
import zmq.auth


def check(cond, what):
    if not cond:
        print("FAILED:", what, flush=True)
        sys.exit(1)
    print("ok:", what, flush=True)


def connect(ctx, addr, server_pub=None, client_cert=None):
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if client_cert:
        pub, sec = zmq.auth.load_certificate(client_cert)
        s.curve_serverkey = server_pub
        s.curve_publickey = pub
        s.curve_secretkey = sec
    s.connect(addr)
    return s


def handshake(s, timeout_ms):
    s.send_multipart([b"PING", b"", b""])
    return bool(s.poll(timeout_ms)) and s.recv_multipart()[0] == b"PONG"


def main():
    addr, agent_pub_file, manager_sec, other_sec = sys.argv[1:5]
    agent_pub, _ = zmq.auth.load_certificate(agent_pub_file)
    ctx = zmq.Context()
    good = connect(ctx, addr, agent_pub, manager_sec)
    check(handshake(good, 5000), "manager keys: PONG")
    hdr = msgpack.packb({"type": 1, "meth": "ping", "okey": b"", "seq": 0, "zip": False}, use_bin_type=True)
    body = msgpack.packb({"meta": b"", "body": msgpack.packb({"args": ["sec"], "kwargs": {}}, use_bin_type=True)}, use_bin_type=True)
    good.send_multipart([b"UPPER", hdr, body])
    check(good.poll(5000) and msgpack.unpackb(msgpack.unpackb(good.recv_multipart()[-1])["body"]) == "sec", "manager keys: ping answered")
    check(not handshake(connect(ctx, addr, agent_pub, other_sec), 2000), "another client key: no answer")
    check(not handshake(connect(ctx, addr), 2000), "no keys (NULL mechanism): no answer")
    good.send_multipart([b"PING", b"", b""])
    check(good.poll(5000) and good.recv_multipart()[0] == b"PONG", "manager connection still served")


if __name__ == "__main__":
    main()
