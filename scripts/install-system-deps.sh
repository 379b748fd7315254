#!/usr/bin/env bash
# System packages the test suite uses: redis-server (distributed-cache tests) and npm (brings helm
# and kubectl); with the argument `e2e`, what the images and the local cluster need (buildah,
# debootstrap, etcd, containerd, runc, the CNI plugins, iptables). Installs what is missing with
# apt when run as root; otherwise says what to install and goes on (those tests then skip with
# their reason).
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ "${1:-}" = e2e ]; then
  for pair in buildah:buildah debootstrap:debootstrap etcd:etcd-server containerd:containerd runc:runc \
              iptables:iptables conntrack:conntrack gcc:gcc; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "not installed: ${missing[*]} (their tests will skip); install them with your package manager" >&2
fi
