#!/usr/bin/python3
"""Plays the Backend.AI manager's side of the orphan-kernel and abuse-report
keys against bai-agent, with python3-redis, restating the manager's writers
and readers (ValkeyScheduleClient, ValkeyStatClient) at Backend.AI main
2026-08 (c0032c4):

  sweep ADDR DB AGENT_ID[@OFFSET] [KERNEL_ID[@OFFSET] ...]
      check_kernel_presence_status_batch(kernel_ids, agent_ids={AGENT_ID})
      as the stale-kernel sweep calls it: current_time = Redis TIME (whole
      seconds), then per kernel HSET kernel:presence:{id} last_check
      str(time), EXPIRE 300, HGETALL, and last SET agent:last_check:{agent}
      str(time) EX 1200, in one non-transactional pipeline. An @OFFSET
      (seconds, negative for the past) shifts that one value from the same
      TIME reading, standing for a sweep that ran that long ago, so that
      several sweeps are played with exact distances between them. AGENT_ID
      "-" stamps no agent. Prints the TIME reading.

  abuse ADDR DB KERNEL_ID ...
      get_abuse_report(kernel_id) for each kernel: HGET abuse_report
      {kernel_id}, decoded as UTF-8. Prints a JSON object id -> value|null.
"""
import json
import sys

import redis

KERNEL_HEALTH_TTL_SEC = 300
AGENT_LAST_CHECK_TTL_SEC = 1200


def client(addr, db):
    host, port = addr.rsplit(":", 1)
    return redis.Redis(host=host, port=int(port), db=int(db))


def spec(arg, base):
    name, _, off = arg.partition("@")
    return name, str(base + int(off or "0"))


def sweep(addr, db, agent_spec, kernel_specs):
    r = client(addr, db)
    seconds, _ = r.time()
    base = int(seconds)
    p = r.pipeline(transaction=False)
    for arg in kernel_specs:
        kid, at = spec(arg, base)
        key = f"kernel:presence:{kid}"
        p.hset(key, mapping={"last_check": at})
        p.expire(key, KERNEL_HEALTH_TTL_SEC)
        p.hgetall(key)
    agent_id, at = spec(agent_spec, base)
    if agent_id != "-":
        p.set(f"agent:last_check:{agent_id}", at, ex=AGENT_LAST_CHECK_TTL_SEC)
    p.execute()
    print(base)


def abuse(addr, db, kernel_ids):
    r = client(addr, db)
    out = {}
    for kid in kernel_ids:
        v = r.hget("abuse_report", kid)
        out[kid] = None if v is None else v.decode("utf-8")
    print(json.dumps(out))


def main(argv):
    cmd = argv[1]
    if cmd == "sweep":
        sweep(argv[2], argv[3], argv[4], argv[5:])
    elif cmd == "abuse":
        abuse(argv[2], argv[3], argv[4:])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
