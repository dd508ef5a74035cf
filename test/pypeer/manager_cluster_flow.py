#!/usr/bin/python3
"""Plays a Backend.AI manager's multi-node session against two bai-agents
(two processes, two ids, two RPC ports: two nodes), the way the manager's
launcher does it (sokovan/scheduler/launcher/launcher.py):

  - the overlay network is made by the manager's overlay plugin (here by
    the Go test, on the swarm engine both agents use) and handed over in
    cluster_info.network_config {mode: overlay, network_name, network_id};
  - one create_kernels per agent with the same cluster_info, including the
    session's ssh_keypair, and the BACKENDAI_CLUSTER_* environment;
  - execute on main1: "ssh sub1 hostname" reaches the kernel on the other
    agent by its cluster hostname, with the session key and no prompt;
    OMPI_MCA_btl_tcp_if_exclude names the swarm's gateway bridge; and back
    from sub1 to main1;
  - destroy_kernel on each agent, kernel_terminated for both.

    manager_cluster_flow.py RPC_A RPC_B REDIS_ADDR AGENT_A AGENT_B LOCAL_IMAGE VF_A VF_B \
        NETWORK_NAME NETWORK_ID GWBRIDGE_SUBNET PRIVATE_KEY_FILE PUBLIC_KEY_FILE
"""
import sys
import uuid

import manager_flow as mf
import manager_peer as mp
from manager_peer import RESULT, check, g


def run(p, sid, kid, code, agent_id):
    """execute a query and follow "continue" until it finishes."""
    t, r = p.invoke("execute", [str(sid), str(kid), 3, "q-" + uuid.uuid4().hex[:6], "query", code, {}, 30.0], {"agent_id": agent_id})
    check(t == RESULT, f"execute {code!r} ({r if t != RESULT else 'ok'})")
    out = "".join(c[1] for c in r["console"] if c[0] == "stdout")
    while r["status"] == "continued":
        t, r = p.invoke("execute", [str(sid), str(kid), 3, r["runId"], "continue", "", {}, 30.0], {"agent_id": agent_id})
        out += "".join(c[1] for c in r["console"] if c[0] == "stdout")
    return r, out


def main():
    (rpc_a, rpc_b, redis_addr, agent_a, agent_b, local_image, vf_a, vf_b,
     net_name, net_id, gw_subnet, priv_file, pub_file) = sys.argv[1:14]
    rhost, rport = redis_addr.rsplit(":", 1)
    ev = mf.Events(rhost, int(rport))
    pa, pb = mp.Peer(rpc_a), mp.Peer(rpc_b)
    check(pa.handshake() and pb.handshake(), "PING/PONG handshake with both agents")

    project, name, tag = mf.split_name(local_image)
    canonical = f"local/{project}/{name}:{tag}"
    ic = mf.image_config(canonical, project, "local", "http://localhost", True, "sha256:" + "0" * 64, g.AutoPullBehavior.DIGEST)
    ref = g.ImageRef(name=name, project=project, tag=tag, registry="local", architecture=mf.ARCH, is_local=True)

    sid = uuid.uuid4()
    kernels = [("main", 1, uuid.uuid4(), pa, agent_a, vf_a), ("sub", 1, uuid.uuid4(), pb, agent_b, vf_b)]
    hosts = ",".join(f"{role}{idx}" for role, idx, *_ in kernels)
    cluster = {
        "mode": g.ClusterMode.MULTI_NODE, "size": 2, "replicas": {"main": 1, "sub": 1},
        "network_config": {"mode": "overlay", "network_name": net_name, "network_id": net_id},
        "ssh_keypair": {"public_key": open(pub_file).read(), "private_key": open(priv_file).read()},
        "cluster_ssh_port_mapping": None,
    }
    for rank, (role, idx, kid, p, agent_id, vf) in enumerate(kernels):
        cfg = mf.session_config(kid, sid, ic, ref, vf)
        cfg.update(cluster_mode=g.ClusterMode.MULTI_NODE, cluster_role=role, cluster_idx=idx,
                   cluster_hostname=f"{role}{idx}", local_rank=rank)
        cfg["environ"].update({
            "BACKENDAI_CLUSTER_SIZE": "2", "BACKENDAI_CLUSTER_REPLICAS": "main:1,sub:1", "BACKENDAI_CLUSTER_HOSTS": hosts,
            "BACKENDAI_CLUSTER_ROLE": role, "BACKENDAI_CLUSTER_IDX": str(idx),
            "BACKENDAI_CLUSTER_LOCAL_RANK": str(rank), "BACKENDAI_CLUSTER_HOST": f"{role}{idx}",
        })
        t, res = p.invoke("create_kernels", [str(sid), [str(kid)], [cfg], cluster, {kid: ref}], {"agent_id": agent_id})
        check(t == RESULT and res[0]["id"] == str(kid), f"create_kernels {role}{idx} on {agent_id} ({res if t != RESULT else 'ok'})")
        ev.read(lambda s, k=kid: ev.find("kernel_started", kernel_id=str(k)), what=f"kernel_started {role}{idx}")

    (_, _, main_kid, _, _, _), (_, _, sub_kid, _, _, _) = kernels
    r, out = run(pa, sid, main_kid, "ssh sub1 'hostname; echo $BACKENDAI_CLUSTER_ROLE'", agent_a)
    check(r["exitCode"] == 0 and out == "sub1\nsub\n", f"main1 runs 'ssh sub1 hostname' across agents ({out!r}, {r['console']})")
    r, out = run(pa, sid, main_kid, "echo $OMPI_MCA_btl_tcp_if_exclude", agent_a)
    check(out == f"127.0.0.1/32,{gw_subnet}\n", f"OMPI_MCA_btl_tcp_if_exclude names the swarm's gateway bridge ({out!r})")
    r, out = run(pb, sid, sub_kid, "ssh main1 hostname", agent_b)
    check(out == "main1\n", f"sub1 reaches main1 ({out!r})")

    for role, idx, kid, p, agent_id, _ in kernels:
        t, _ = p.invoke("destroy_kernel", [str(kid), str(sid), "user-requested"], {"suppress_events": False, "agent_id": agent_id})
        check(t == RESULT, f"destroy_kernel {role}{idx}")
        ev.read(lambda s, k=kid: ev.find("kernel_terminated", kernel_id=str(k)), what=f"kernel_terminated {role}{idx}")
    print("manager cluster flow: all checks passed", flush=True)


if __name__ == "__main__":
    try:
        main()
    except mp.CheckFailed as e:
        print("FAILED:", e, flush=True)
        sys.exit(1)
