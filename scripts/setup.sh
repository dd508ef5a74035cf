#!/usr/bin/env bash
# Installs what bai-agent needs to build, run and test, idempotently:
# Debian packages, a Go toolchain on PATH check, and a running Docker
# engine (started here if none answers). Safe to run again and again.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 && SUDO="sudo" || { echo "setup: run as root (or install sudo)" >&2; exit 1; }
fi

PKGS=(libzmq3-dev pkg-config make busybox-static libjs-xterm node-xterm python3-zmq python3-msgpack python3-redis e2fsprogs mount ca-certificates docker-registry redis-server redis-sentinel etcd-server etcd-client prometheus)
# --test adds what only the tests use: OpenSSH's client (ssh/sftp into a
# kernel), headless Chromium (the web terminal in a real browser), the
# sandbox runtimes, and Debian's ipykernel and jupyter_client (query mode
# through a Jupyter kernel, and the message codec checked against
# jupyter_client).
if [ "${1:-}" = "--test" ]; then
  # crun and runsc: the sandbox runtimes' tests register them with a test
  # engine of their own (the machine's dockerd config is never changed).
  # python3-notebook, -matplotlib and -websocket: the notebook app test
  # (testutil.NotebookImage is made of them; the peer drives the kernel
  # websocket) and the Jupyter image's inline plots.
  PKGS+=(openssh-client chromium crun runsc python3-ipykernel python3-jupyter-client
    python3-notebook python3-matplotlib python3-websocket)
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

export PATH="/usr/local/go/bin:$PATH"
if ! command -v go >/dev/null 2>&1; then
  echo "setup: no Go toolchain found (expected /usr/local/go/bin/go, Go >= 1.26)" >&2
  exit 1
fi

docker_answers() {
  command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1
}

if ! docker_answers; then
  if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    echo "setup: installing docker.io"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq docker.io >/dev/null
  fi
  if ! docker_answers; then
    echo "setup: starting dockerd (log: /var/log/bai-dockerd.log)"
    $SUDO sh -c 'nohup dockerd >/var/log/bai-dockerd.log 2>&1 &'
    for _ in $(seq 1 60); do
      docker_answers && break
      sleep 1
    done
  fi
  docker_answers || { echo "setup: the Docker engine does not answer; see /var/log/bai-dockerd.log" >&2; exit 1; }
fi
echo "setup: ready (go $(go env GOVERSION), docker $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
