#!/usr/bin/env bash
# A simulated cluster on one machine: network namespaces as hosts on a bridge, links shaped
# with tc, and an rsh agent so a plain OpenMPI mpirun launches ranks inside them over TCP.
#
#   scripts/simcluster.sh up N [--bandwidth 10gbit] [--delay 50us]   hosts umdh1..umdhN
#   scripts/simcluster.sh mpirun-args                                the flags mpirun needs
#   scripts/simcluster.sh kill-host NAME                             SIGKILL every process of a host
#   scripts/simcluster.sh down                                       remove everything
#
# Host i is namespace umdh<i> with address 10.77.0.<i>/24 (the machine itself is 10.77.0.254
# on bridge umdbr0); the hostfile lists the addresses (1 slot each) and the agent maps an
# address back to its namespace. Needs root (CAP_NET_ADMIN), iproute2 and tc; --delay needs
# the netem qdisc, which some kernels lack (then it is refused, not ignored). The state
# (hostfile, agent) lives in ${UMD_SIMCLUSTER_DIR:-/tmp/umd-simcluster}.
set -euo pipefail
STATE=${UMD_SIMCLUSTER_DIR:-/tmp/umd-simcluster}
BRIDGE=umdbr0

need_root() {
  if [ "$(id -u)" -ne 0 ]; then echo "simcluster: needs root (CAP_NET_ADMIN) to create network namespaces" >&2; exit 77; fi
  command -v ip > /dev/null && command -v tc > /dev/null \
    || { echo "simcluster: needs ip and tc (apt-get install iproute2)" >&2; exit 77; }
}

hosts() { ip netns list 2> /dev/null | awk '{print $1}' | grep -E '^umdh[0-9]+$' | sort -V || true; }

down() {
  for h in $(hosts); do
    ip netns pids "$h" 2> /dev/null | xargs -r kill -9 2> /dev/null || true
    ip netns del "$h" 2> /dev/null || true
  done
  ip link del "$BRIDGE" 2> /dev/null || true
  for v in $(ip -o link show 2> /dev/null | awk -F': ' '{print $2}' | grep -E '^umdv[0-9]+' | cut -d@ -f1); do
    ip link del "$v" 2> /dev/null || true
  done
  rm -rf "$STATE"
}

up() {
  local n=$1; shift
  local bandwidth="" delay=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --bandwidth) bandwidth=$2; shift 2 ;;
      --delay) delay=$2; shift 2 ;;
      *) echo "simcluster: unknown option $1" >&2; exit 2 ;;
    esac
  done
  down
  mkdir -p "$STATE"
  ip link add "$BRIDGE" type bridge
  ip addr add 10.77.0.254/24 dev "$BRIDGE"
  ip link set "$BRIDGE" up
  : > "$STATE/hostfile"
  for i in $(seq 1 "$n"); do
    local h=umdh$i
    ip netns add "$h"
    ip link add "umdv$i" type veth peer name eth0 netns "$h"
    ip link set "umdv$i" master "$BRIDGE" up
    ip netns exec "$h" ip addr add "10.77.0.$i/24" dev eth0
    ip netns exec "$h" ip link set eth0 up
    ip netns exec "$h" ip link set lo up
    if [ -n "$delay" ]; then
      local rate=()
      [ -n "$bandwidth" ] && rate=(rate "$bandwidth")
      ip netns exec "$h" tc qdisc add dev eth0 root netem delay "$delay" "${rate[@]}" 2> /dev/null \
        || { echo "simcluster: this kernel has no netem qdisc, so --delay cannot be simulated; drop it" >&2; down; exit 3; }
    elif [ -n "$bandwidth" ]; then
      ip netns exec "$h" tc qdisc add dev eth0 root tbf rate "$bandwidth" burst 1mb latency 50ms
    fi
    echo "10.77.0.$i slots=1" >> "$STATE/hostfile"
  done
  # OpenMPI calls `agent HOST COMMAND…`; the command runs inside HOST's namespace.
  cat > "$STATE/agent" <<'AGENT'
#!/usr/bin/env bash
host=$1; shift
while [[ "$host" == -* ]]; do host=$1; shift; done
i=${host##*.}
# Its own hostname too (a UTS namespace), so MPI's processor name says which host a rank is on.
# The agent itself stays outside, like ssh on a real cluster, so it can say when its host
# was lost (OpenMPI's own message on a dead daemon does not name the host).
ip netns exec "umdh$i" unshare --uts /bin/sh -c "hostname umdh$i; $*"
status=$?
if [ "$status" -ge 128 ]; then
  echo "simcluster: host umdh$i (10.77.0.$i) lost: its processes were killed (signal $((status - 128)))" >&2
fi
exit "$status"
AGENT
  chmod +x "$STATE/agent"
  echo "simcluster: $n host(s) up (umdh1..umdh$n, 10.77.0.1-$n)${bandwidth:+, links $bandwidth}${delay:+, delay $delay}"
  echo "simcluster: mpirun $(mpirun_args) -np $n …"
}

mpirun_args() {
  # --bind-to none: every simulated host binds from core 0 of the same machine otherwise.
  echo "--hostfile $STATE/hostfile --mca plm_rsh_agent $STATE/agent --mca btl tcp,self --bind-to none" \
       "--mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24"
}

kill_host() {
  local h=$1
  ip netns pids "$h" | xargs -r kill -9
  echo "simcluster: killed every process of $h"
}

case "${1:-}" in
  up) need_root; shift; up "$@" ;;
  down) need_root; down; echo "simcluster: removed" ;;
  kill-host) need_root; kill_host "$2" ;;
  mpirun-args) mpirun_args ;;
  hosts) hosts ;;
  *) sed -n '2,16p' "$0"; exit 2 ;;
esac
