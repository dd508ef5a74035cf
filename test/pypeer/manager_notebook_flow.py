#!/usr/bin/python3
"""The notebook app end to end, as a manager and the app proxy reach it:

  - check_and_pull of a Backend.AI python image already on the node,
    image_pull_finished;
  - create_kernels as the manager sends it: a vfolder mounted rw at
    /home/work/data1, uid/gid of the user, the session's key pair in
    internal_data.ssh_keypair; kernel_started and its "jupyter" service
    port (container 8080, from the image's service-ports label);
  - start_service("jupyter"), then Jupyter's own REST API and kernel
    websocket through the host port, as the app proxy forwards them:
    start a notebook kernel, run a cell (execute_request -> execute_reply
    ok, with its stream output), save a notebook into the vfolder
    (PUT /api/contents/data1/...), which appears on the host owned by the
    kernel's uid;
  - headless Chromium loads the tree and the notebook page (screenshots);
  - destroy_kernel, kernel_terminated.

    manager_notebook_flow.py RPC_ADDR REDIS_ADDR AGENT_ID IMAGE VFOLDER_DIR CHROMIUM SHOT_DIR

Prints one line per check; exits 0 when every check passed.
"""
import http.cookiejar
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import websocket  # python3-websocket

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import manager_flow as mf  # noqa: E402
import manager_peer as mp  # noqa: E402
from manager_peer import RESULT, check, g  # noqa: E402

UID = 1541


# A browser's session: Jupyter sets its _xsrf cookie on the first page
# and wants it back in X-XSRFToken on every request that changes state.
JAR = http.cookiejar.CookieJar()
OPENER = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(JAR))


def xsrf():
    return next((c.value for c in JAR if c.name == "_xsrf"), "")


def call(method, url, body=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", "X-XSRFToken": xsrf()})
    with OPENER.open(req, timeout=timeout) as resp:
        return resp.status, json.loads(resp.read() or b"null")


def keypair():
    d = tempfile.mkdtemp()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(d, "k")], check=True)
    return open(os.path.join(d, "k.pub")).read(), open(os.path.join(d, "k")).read()


def run_cell(base_ws, kernel_id, code, deadline_s=60):
    ws = websocket.create_connection(f"{base_ws}/api/kernels/{kernel_id}/channels", timeout=deadline_s, cookie=f"_xsrf={xsrf()}")
    try:
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": "bai", "session": uuid.uuid4().hex, "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        }))
        out, reply = "", None
        deadline = time.time() + deadline_s
        while time.time() < deadline and reply is None:
            m = json.loads(ws.recv())
            if m.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if m["msg_type"] == "stream":
                out += m["content"]["text"]
            elif m["msg_type"] == "execute_reply":
                reply = m["content"]
        return reply, out
    finally:
        ws.close()


def chromium(binary, url, *args):
    base = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--user-data-dir=" + tempfile.mkdtemp(), "--window-size=1200,800", "--virtual-time-budget=15000"]
    r = subprocess.run([binary, *base, *args, url], capture_output=True, text=True, timeout=90)
    check(r.returncode == 0, f"chromium {args} {url} exits 0 ({r.stderr[-300:] if r.returncode else ''})")
    return r.stdout


def main():
    rpc_addr, redis_addr, agent_id, image, vfdir, chromium_bin, shot_dir = sys.argv[1:8]
    rhost, rport = redis_addr.rsplit(":", 1)
    ev = mf.Events(rhost, int(rport))
    p = mp.Peer(rpc_addr)
    check(p.handshake(), "PING/PONG handshake")

    project, name, tag = mf.split_name(image)
    canonical = f"local/{project}/{name}:{tag}"
    ic = mf.image_config(canonical, project, "local", "http://localhost", True, "sha256:" + "0" * 64, g.AutoPullBehavior.DIGEST)
    t, ids = p.invoke("check_and_pull", [{canonical: ic}])
    check(t == RESULT and set(ids) == {canonical}, f"check_and_pull {canonical}")
    ev.read(lambda s: ev.find("image_pull_finished", image=canonical), what="image_pull_finished")

    sid, kid = uuid.uuid4(), uuid.uuid4()
    ref = g.ImageRef(name=name, project=project, tag=tag, registry="local", architecture=mf.ARCH, is_local=True)
    cfg = mf.session_config(kid, sid, ic, ref, vfdir, slots={"cpu": "1", "mem": str(1 << 30)})
    cfg["uid"], cfg["main_gid"] = UID, UID
    cfg["mounts"][0]["mount_perm"] = g.MountPermission.READ_WRITE
    # A vfolder as the storage proxy leaves it: owned by the user's uid.
    os.chown(vfdir, UID, UID)
    pub, priv = keypair()
    cfg["internal_data"] = {"ssh_keypair": {"public_key": pub, "private_key": priv}}
    cluster = dict(mf.CLUSTER, ssh_keypair={"public_key": pub, "private_key": priv})
    t, res = p.invoke("create_kernels", [str(sid), [str(kid)], [cfg], cluster, {kid: ref}], {"agent_id": agent_id})
    check(t == RESULT and res[0]["id"] == str(kid), f"create_kernels ({res if t != RESULT else 'ok'})")
    started = ev.read(lambda s: ev.find("kernel_started", kernel_id=str(kid)), what="kernel_started")
    ci = started["payload"]["creation_info"]
    sps = {sp["name"]: sp for sp in ci["service_ports"]}
    check("jupyter" in sps and sps["jupyter"]["protocol"] == "http" and sps["jupyter"]["container_ports"] == [8080],
          f"the image's jupyter:http:8080 is a service port ({sorted(sps)})")
    host, port = ci["kernel_host"], sps["jupyter"]["host_ports"][0]
    check(port < 32768, f"the jupyter host port {port} is below the ephemeral range")

    try:
        t, r = p.invoke("start_service", [str(kid), "jupyter", {}])
        check(t == RESULT and r.get("status") == "started", f"start_service jupyter ({r})")
        base = f"http://{host}:{port}"
        deadline, ver = time.time() + 90, None
        while time.time() < deadline and ver is None:
            try:
                _, ver = call("GET", base + "/api")
            except (OSError, urllib.error.URLError):
                time.sleep(0.3)
        check(ver is not None and "version" in ver, f"Jupyter answers on the host port ({base}/api: {ver})")
        # No token: upstream's settings; the app proxy is what authenticates.
        with OPENER.open(base + "/tree", timeout=10) as resp:
            check(resp.status == 200 and xsrf(), "the tree page answers without a token and sets _xsrf")
        st, kinfo = call("POST", base + "/api/kernels", {"name": "python3"})
        check(st == 201 and kinfo["id"], f"POST /api/kernels starts a notebook kernel ({kinfo})")
        code = "import os, matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nprint(6 * 7, os.getuid(), os.getcwd())"
        reply, out = run_cell(f"ws://{host}:{port}", kinfo["id"], code)
        check(reply is not None and reply["status"] == "ok", f"execute_reply ok ({reply})")
        check(out.split() == ["42", str(UID), "/home/work"], f"the cell's output ({out!r}): the kernel user, in /home/work")
        nb = {"type": "notebook", "format": "json", "content": {
            "nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "cells": [{"cell_type": "code", "id": "c1", "metadata": {}, "execution_count": 1, "source": "print(6 * 7)",
                       "outputs": [{"output_type": "stream", "name": "stdout", "text": "42\n"}]}]}}
        st, saved = call("PUT", base + "/api/contents/data1/bai-notebook.ipynb", nb)
        check(st in (200, 201) and saved["path"] == "data1/bai-notebook.ipynb", f"PUT /api/contents saves into the vfolder ({st})")
        host_file = os.path.join(vfdir, "bai-notebook.ipynb")
        fst = os.stat(host_file)
        check(fst.st_uid == UID and fst.st_gid == UID, f"{host_file} exists on the host, owned by {fst.st_uid}:{fst.st_gid}")
        src = json.load(open(host_file))["cells"][0]["source"]
        check("".join(src) == "print(6 * 7)", f"the saved notebook is the one sent ({src!r})")
        st, listing = call("GET", base + "/api/contents/data1")
        check(any(e["name"] == "bai-notebook.ipynb" for e in listing["content"]), "the vfolder listing shows the notebook")

        dom = chromium(chromium_bin, base + "/tree/data1", "--dump-dom")
        check("bai-notebook.ipynb" in dom, "Chromium renders the tree with the notebook in it")
        tree_shot = os.path.join(shot_dir, "bai-notebook-tree.png")
        chromium(chromium_bin, base + "/tree/data1", "--screenshot=" + tree_shot)
        nb_shot = os.path.join(shot_dir, "bai-notebook-page.png")
        dom = chromium(chromium_bin, base + "/notebooks/data1/bai-notebook.ipynb", "--dump-dom")
        check("notebook_panel" in dom or "notebook-container" in dom, "Chromium renders the notebook page")
        chromium(chromium_bin, base + "/notebooks/data1/bai-notebook.ipynb", "--screenshot=" + nb_shot)
        for shot in (tree_shot, nb_shot):
            check(os.path.getsize(shot) > 1000, f"screenshot {shot} ({os.path.getsize(shot)} bytes)")
        call("DELETE", base + f"/api/kernels/{kinfo['id']}")
    finally:
        t, _ = p.invoke("destroy_kernel", [str(kid), str(sid), "user-requested"], {"suppress_events": False})
    check(t == RESULT, "destroy_kernel")
    ev.read(lambda s: ev.find("kernel_terminated", kernel_id=str(kid)), what="kernel_terminated")
    print("notebook flow: all checks passed", flush=True)


if __name__ == "__main__":
    try:
        main()
    except mp.CheckFailed as e:
        print("FAILED:", e, flush=True)
        sys.exit(1)
