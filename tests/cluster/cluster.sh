#!/usr/bin/env bash
# A 3-node corosync cluster in network namespaces, for the clustered-log tests and bench.
#
#   cluster.sh up DIR          three netns (ulogd-n1..3) on a bridge in ulogd-br, a corosync
#                              in each, and wait until all three votes are in
#   cluster.sh down DIR        stop every corosync and delete the namespaces
#   cluster.sh partition N     cut node N off the bridge;  cluster.sh heal N  reconnects it
#   cluster.sh stop-corosync DIR N   kill -9 node N's corosync; start-corosync DIR N  restarts it
#   cluster.sh conf DIR ADDRESS...   print a corosync.conf for nodes at these addresses
#                              (the real-kernel suite's one-node cluster uses it too)
#
# Each corosync gets a private /run (its pid file path is fixed in corosync 3.1) and its own
# state directory under DIR; nothing outside DIR and the namespaces is touched. Needs root,
# iproute2 and corosync (../shared/reference/corosync-netns.md has the recipe and its pitfalls).
set -euo pipefail

NODES=(1 2 3)
ns() { echo "ulogd-n$1"; }
BRIDGE_NS=ulogd-br

config() { # DIR ADDRESS...: a corosync.conf whose nodes 1, 2, ... are at these addresses,
           # logging and keeping its state in DIR
    local d=$1 i=0 address
    shift
    cat <<CONF
totem {
    version: 2
    cluster_name: dm-ulogd-test
    transport: knet
    crypto_cipher: none
    crypto_hash: none
    token: 1000
}
nodelist {
$(for address in "$@"; do i=$((i + 1)); printf '    node {\n        nodeid: %s\n        ring0_addr: %s\n    }\n' "$i" "$address"; done)
}
quorum {
    provider: corosync_votequorum
}
logging {
    to_logfile: yes
    logfile: $d/corosync.log
    to_syslog: no
    to_stderr: no
    timestamp: hires
}
system {
    state_dir: $d/state
    move_to_root_cgroup: no
}
CONF
}

start_corosync() { # DIR N
    local d=$1/n$2
    mkdir -p "$d/run" "$d/state"
    config "$d" "${NODES[@]/#/10.98.0.}" > "$d/corosync.conf"
    ip netns exec "$(ns "$2")" sh -c "mount --bind $d/run /run && exec corosync -f -c $d/corosync.conf" \
        > "$d/corosync.out" 2>&1 &
    echo $! > "$d/corosync.pid"
    until ip netns exec "$(ns "$2")" corosync-cfgtool -s > /dev/null 2>&1; do sleep 0.1; done
}

stop_corosync() { # DIR N SIGNAL
    local pidfile=$1/n$2/corosync.pid
    [[ -f $pidfile ]] || return 0
    local pid; pid=$(cat "$pidfile")
    kill "-$3" "$pid" 2> /dev/null || true
    while kill -0 "$pid" 2> /dev/null; do sleep 0.1; done
    rm -f "$pidfile"
    rm -rf /dev/shm/qb-"$pid"-* /dev/shm/qb-corosync-"$pid"-*
}

votes() { # N
    ip netns exec "$(ns "$1")" corosync-quorumtool -s 2> /dev/null | awk '/Total votes:/ {print $3}'
}

case ${1:-} in
up)
    dir=$2
    "$0" down "$dir" 2> /dev/null || true
    ip netns add $BRIDGE_NS
    ip -n $BRIDGE_NS link add br0 type bridge
    ip -n $BRIDGE_NS link set lo up
    ip -n $BRIDGE_NS link set br0 up
    for i in "${NODES[@]}"; do
        ip netns add "$(ns "$i")"
        ip -n $BRIDGE_NS link add "v$i" type veth peer name eth0 netns "$(ns "$i")"
        ip -n $BRIDGE_NS link set "v$i" master br0
        ip -n $BRIDGE_NS link set "v$i" up
        ip -n "$(ns "$i")" link set lo up
        ip -n "$(ns "$i")" addr add "10.98.0.$i/24" dev eth0
        ip -n "$(ns "$i")" link set eth0 up
    done
    for i in "${NODES[@]}"; do start_corosync "$dir" "$i"; done
    until [[ $(votes 1) == 3 ]]; do sleep 0.1; done
    ;;
down)
    dir=$2
    for i in "${NODES[@]}"; do stop_corosync "$dir" "$i" TERM; done
    for i in "${NODES[@]}"; do ip netns del "$(ns "$i")" 2> /dev/null || true; done
    ip netns del $BRIDGE_NS 2> /dev/null || true
    ;;
partition) ip -n $BRIDGE_NS link set "v$2" down ;;
heal) ip -n $BRIDGE_NS link set "v$2" up ;;
stop-corosync) stop_corosync "$2" "$3" KILL ;;
start-corosync) start_corosync "$2" "$3" ;;
votes) votes "$2" ;;
conf) shift; config "$@" ;;
*)
    echo "usage: $0 up DIR | down DIR | partition N | heal N | stop-corosync DIR N | start-corosync DIR N | votes N | conf DIR ADDRESS..." >&2
    exit 2
    ;;
esac
