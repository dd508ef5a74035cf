#!/usr/bin/python3
"""Calls every RPC method of the agent that needs no kernel runner, with the
manager's argument shapes, and checks the real return shapes.

    surface_peer.py ADDR IMAGE VFOLDER_DIR COMMIT_DIR REGISTRY(host:port or "")

Exits 0 when every check passed.
"""
import io
import json
import os
import sys
import tarfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import manager_peer as mp  # noqa: E402
from manager_peer import FAILURE, RESULT, check, g  # noqa: E402


def main():
    addr, image, vfdir, commit_dir, registry = sys.argv[1:6]
    p = mp.Peer(addr)
    check(p.handshake(), "handshake")

    t, h = p.invoke("health_v2", [], {"req": {}, "agent_id": None})
    check(t == RESULT and h["status"] in ("ok", "degraded") and h["connectivity"]["connectivity_checks"], "health_v2")
    t, hw = p.invoke("gather_hwinfo_v2", [], {"req": {}, "agent_id": None})
    check(t == RESULT and {d["device_name"] for d in hw["devices"]} >= {"cpu", "mem"}, "gather_hwinfo_v2")

    # check_and_pull on a present image completes at once.
    ref, cfg = mp.kernel_config(uuid.uuid4(), uuid.uuid4(), image, vfdir)
    t, ids = p.invoke("check_and_pull", [{image: cfg["image"]}])
    check(t == RESULT and len(ids[image]) == 32 and all(c in "0123456789abcdef" for c in ids[image]), f"check_and_pull returns a 32-hex task id ({ids})")
    for _ in range(50):
        t, pulling = p.invoke("check_pulling", [image])
        if pulling is False:
            break
        time.sleep(0.1)
    check(pulling is False, "check_pulling is false once the check finished")

    sid, kid = uuid.uuid4(), uuid.uuid4()
    ref, cfg = mp.kernel_config(kid, sid, image, vfdir)
    cluster = {"mode": g.ClusterMode.SINGLE_NODE, "size": 1, "replicas": {"main": 1},
               "network_config": {"mode": "bridge", "network_name": None}}
    t, res = p.invoke("create_kernels", [str(sid), [str(kid)], [cfg], cluster, {kid: ref}])
    check(t == RESULT, f"create_kernels ({res})")
    k = str(kid)
    t, creating = p.invoke("check_creating", [k])
    check(t == RESULT and creating is True, "check_creating")

    # Files: upload, list (on a busybox image: no Python inside), download.
    check(p.invoke("upload_file", [k, "sub/hello.txt", b"hello world"]) == (RESULT, None), "upload_file into a new subdir")
    t, meta = p.invoke("upload_file", [k, "../../etc/evil", b"x"])
    check(t == FAILURE and meta[0] == "PermissionError", f"upload_file escape refused ({meta[1]})")
    t, meta = p.invoke("upload_file", [k, "/etc/passwd", b"x"])
    check(t == FAILURE and meta[0] == "PermissionError", "upload_file absolute path outside /home/work refused")
    t, meta = p.invoke("upload_file", [k, "data1/x", b"x"])
    check(t == FAILURE and meta[0] == "PermissionError", "upload_file into a read-only vfolder refused")
    t, lf = p.invoke("list_files", [k, "sub"])
    files = json.loads(lf["files"])
    check(t == RESULT and isinstance(lf["files"], str) and lf["abspath"] == "sub", "list_files returns a JSON string")
    check([f["filename"] for f in files] == ["hello.txt"] and files[0]["size"] == 11 and files[0]["mode"] == "-rw-r--r--", f"list_files entry {files}")
    check(all(isinstance(files[0][x], float) for x in ("ctime", "mtime", "atime")), "list_files times are floats")
    t, meta = p.invoke("list_files", [k, "../.."])
    check(t == FAILURE and meta[0] == "PermissionError", "list_files outside /home/work refused")
    t, tarbytes = p.invoke("download_file", [k, "sub"])
    check(t == RESULT and isinstance(tarbytes, bytes), "download_file returns bytes")
    with tarfile.open(fileobj=io.BytesIO(tarbytes)) as tf:
        names = tf.getnames()
        content = tf.extractfile("sub/hello.txt").read()
    check("sub/hello.txt" in names and content == b"hello world", f"download_file tar members {names}")
    t, single = p.invoke("download_single", [k, "sub/hello.txt"])
    check(t == RESULT and single == b"hello world", "download_single returns the content")
    check(p.invoke("upload_file", [k, "big.bin", b"\0" * (1024 * 1024 + 10)]) == (RESULT, None), "upload 1 MiB + 10 bytes")
    t, meta = p.invoke("download_single", [k, "big.bin"])
    check(t == FAILURE and meta[0] == "ValueError", f"download_single over 1 MiB refused ({meta[1]})")
    t, meta = p.invoke("download_file", [k, "."])
    check(t == FAILURE and meta[0] == "ValueError", "download_file over 1 MiB refused")
    t, logs = p.invoke("get_logs", [k])
    check(t == RESULT and "Kernel runner:" in logs["logs"], "get_logs has the container output (the runner's banner)")

    # Commit with export.
    t, cm = p.invoke("commit", [k, "user@example.com"], {"canonical": None, "filename": "snap.tar.gz", "extra_labels": {"ai.backend.test": "yes"}})
    check(t == RESULT and cm["kernel"] == k and cm["path"] == "user@example.com/snap.tar.gz" and len(cm["bgtask_id"]) == 36, f"commit result {cm}")
    status = None
    for _ in range(300):
        t, st = p.invoke("get_commit_status", [k, "user@example.com"])
        status = st["status"]
        if status == "ready":
            break
        time.sleep(0.1)
    check(status == "ready", "get_commit_status becomes ready")
    out = os.path.join(commit_dir, "user@example.com", "snap.tar.gz")
    check(os.path.exists(out) and os.path.getsize(out) > 1000, "exported image written")
    t, meta = p.invoke("commit", [k, "../escape"], {"filename": "x"})
    check(t == FAILURE and meta[0] == "PermissionError", "commit subdir escape refused")

    # Commit to a tag, push it to the local registry, purge it.
    if registry:
        tag = f"{registry}/bai-test/pushed:{uuid.uuid4().hex[:8]}"
        t, cm = p.invoke("commit", [k, "push"], {"canonical": tag})
        check(t == RESULT, f"commit to {tag}")
        for _ in range(300):
            _, st = p.invoke("get_commit_status", [k, "push"])
            if st["status"] == "ready":
                break
            time.sleep(0.1)
        name, _, tg = tag.rpartition(":")
        reg_host, _, path = name.partition("/")
        project, _, img = path.partition("/")
        push_ref = g.ImageRef(name=img, project=project, tag=tg, registry=reg_host, architecture="x86_64", is_local=False)
        t, pr = p.invoke("push_image", [push_ref, {"name": reg_host, "url": "http://" + reg_host, "username": None, "password": None}])
        check(t == RESULT and pr["canonical"] == tag and len(pr["bgtask_id"]) == 36, f"push_image result {pr}")
        import urllib.request
        ok = False
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://{reg_host}/v2/{project}/{img}/tags/list", timeout=2) as r:
                    ok = tg in json.load(r).get("tags", [])
            except Exception:
                ok = False
            if ok:
                break
            time.sleep(0.2)
        check(ok, "the pushed tag is in the registry")
        t, pu = p.invoke("purge_images", [[tag, "bai-test/nosuch:1"], False, False])
        resp = {r["image"]: r["error"] for r in pu["responses"]}
        check(t == RESULT and resp[tag] is None and resp["bai-test/nosuch:1"], f"purge_images responses {pu}")

    # Networks and ports.
    net = f"bai-singlenode-{uuid.uuid4()}"
    check(p.invoke("create_local_network", [net]) == (RESULT, None), "create_local_network")
    check(p.invoke("create_local_network", [net]) == (RESULT, None), "create_local_network again is a no-op")
    check(p.invoke("destroy_local_network", [net]) == (RESULT, None), "destroy_local_network")
    check(p.invoke("destroy_local_network", [net]) == (RESULT, None), "destroying a missing network is fine")
    t, port = p.invoke("assign_port", [])
    check(t == RESULT and isinstance(port, int), f"assign_port {port}")
    check(p.invoke("release_port", [port]) == (RESULT, None), "release_port")
    check(p.invoke("scan_gpu_alloc_map", []) == (RESULT, {}), "scan_gpu_alloc_map is empty without GPUs")
    # The kernel runner's methods (the test image's runtime is "app").
    t, r = p.invoke("execute", [str(sid), k, 2, "r1", "query", "print(1)", {}, 10.0])
    check(t == RESULT and r["status"] == "finished" and r["exitCode"] == 127, f"execute answers through the runner ({r})")
    check(p.invoke("interrupt_kernel", [k]) == (RESULT, {"status": "finished"}), "interrupt_kernel")
    t, r = p.invoke("get_completions", [k, "pri", {}])
    check(t == RESULT and r["result"]["status"] == "finished", f"get_completions {r}")
    t, r = p.invoke("ping_kernel", [k])
    check(t == RESULT and isinstance(r["started_at"], float), f"ping_kernel {r}")
    t, meta = p.invoke("execute", [str(sid), k, 2, "r1", "sideways", "", {}, 1.0])
    check(t == FAILURE and "sideways" in meta[1], f"an unknown execute mode is refused ({meta})")
    t, r = p.invoke("start_service", [k, "jupyter", {}])
    check(t == RESULT and r == {"status": "failed", "error": "unsupported service: jupyter"}, f"start_service of a service the image cannot run ({r})")
    t, r = p.invoke("start_service", [k, "no-such-app", {}])
    check(t == RESULT and r == {"status": "failed", "error": "invalid service name"}, f"start_service of an unknown name ({r})")
    # shutdown_service never raises (the Python agent logs and returns None).
    check(p.invoke("shutdown_service", [k, "jupyter"]) == (RESULT, None), "shutdown_service returns None")
    t, none = p.invoke("sync_kernel_registry", [[(k, str(sid))]])
    check(t == RESULT and none is None, "sync_kernel_registry keeps a known kernel")
    t, running = p.invoke("check_running", [k])
    check(running is True, "kernel still running after sync")
    t, none = p.invoke("sync_kernel_registry", [[]])
    t, running = p.invoke("check_running", [k])
    check(running is False, "sync_kernel_registry destroys a kernel the manager does not know")
    check(p.invoke("shutdown_agent", [False]) == (RESULT, None), "shutdown_agent is a no-op")
    check(p.invoke("ping", ["end"]) == (RESULT, "end"), "ping at the end")


if __name__ == "__main__":
    try:
        main()
    except mp.CheckFailed as e:
        print("FAILED:", e, flush=True)
        sys.exit(1)
