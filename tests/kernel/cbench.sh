# The clustered-log bench's guest side (tests/kernel/cbench; issue #14), sourced by guest.sh
# in its `cbench` mode, so it has guest.sh's helpers (create, remove, same_dev, daemon_start,
# corosync_start ...). Not a test: no verdicts, one BENCH line per measurement.
#
# In one guest boot, on a one-node corosync, interleaved round by round so drift hits all
# alike, the mirror's log is one of:
#   Kc Kd   the kernel's own `core` and `disk` logs: the ceiling, no daemon involved
#   Uc Ud   dm-ulogd `clustered-core` and `clustered-disk`
#   Ui      dm-ulogd `clustered-disk` + integrated_flush (cmirrord has no such mode)
#   Mc Md   LVM2's cmirrord, `clustered-core` and `clustered-disk`
#   Us      dm-ulogd single-host `core`, beside the same corosync: the userspace hop alone
# Only one daemon listens on the connector at a time: both would answer every request.
#
# Per variant and round:
#   BENCH seq1m|seq64k <v> <round> <MB/s> writes=<n> mcasts=<n>   32 MiB of random data,
#       `dd oflag=direct` through a 16 MiB `nosync` mirror of brd legs, 512 KiB regions;
#       mcasts: the CPG multicasts the daemon sent meanwhile (corosync's IPC request count
#       for its connections), writes: dd's writes; cpu_corosync, cpu_daemon: the CPU time
#       (ms) corosync and the daemon used meanwhile; for dm-ulogd also the requests it got by
#       type and s_<type>, the seconds from their arrival to their reply (its metrics, as in
#       guest.sh's bench_metrics). The legs are compared afterwards.
#   BENCH susres <v> <round> <ms>      `dmsetup suspend` + `dmsetup resume` of that mirror
#   BENCH create8 <v> <round> <ms>     `dmsetup create` of 8 mirrors (16 MiB, `nosync`)
#   BENCH resync <v> <round> <ms>      a 64 MiB mirror created `sync` (legs: dm linear over
#       4 brd disks each, leg a random, leg b zeros) until `dmsetup status` says N/N; the
#       legs are compared afterwards.
# and once, at the end: BENCH cpgfloor - - <p50 µs> p99_us=<µs>, a bare CPG round trip.
CB_RS=1024                  # 512 KiB regions
CB_SECT=32768               # 16 MiB: a whole brd RAM disk per leg
CB_PASSES=2                 # 32 MiB written per measurement
CB_VARIANTS=${KTEST_CB_VARIANTS:-Kc Kd Us Uc Ud Ui Mc Md}
CB_CMIRRORD=${KTEST_CMIRRORD:-}
CB_FLOOR=${KTEST_CPG_FLOOR:-}

cb_log() { # <variant> <uuid> <log device> <sync|nosync>: the mirror table's log part
    case $1 in
    Kc) echo "core 2 $CB_RS $4" ;;
    Kd) echo "disk 3 $3 $CB_RS $4" ;;
    Us) echo "userspace 4 $2 core $CB_RS $4" ;;
    Uc | Mc) echo "userspace 4 $2 clustered-core $CB_RS $4" ;;
    Ud | Md) echo "userspace 5 $2 clustered-disk $3 $CB_RS $4" ;;
    Ui) echo "userspace 6 $2 integrated_flush clustered-disk $3 $CB_RS $4" ;;
    esac
}
cb_table() { # <variant> <uuid> <sectors> <leg a> <leg b> <log device> <sync|nosync>
    echo "0 $3 mirror $(cb_log "$1" "$2" "$6" "$7") 2 $4 0 $5 0"
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# --- which daemon listens --------------------------------------------------------------------
cmirrord_pid() { cat "$KT/cmirrord.pid" 2>/dev/null; }
cmirrord_listening() { # its connector socket is bound (Eth 11 = NETLINK_CONNECTOR)
    awk -v pid="$(cmirrord_pid)" '$2 == 11 && $3 == pid { found = 1 } END { exit !found }' /proc/net/netlink
}
cmirrord_start() {
    local i
    setsid "$CB_CMIRRORD" -f </dev/null >>"$SHARE/cmirrord.log" 2>&1 &
    echo $! >"$KT/cmirrord.pid"
    for i in $(seq 100); do
        cmirrord_listening && { echo "cmirrord started: pid $(cmirrord_pid)"; return 0; }
        sleep 0.1
    done
    why "cmirrord did not bind its connector socket: $(tail -n 3 "$SHARE/cmirrord.log" | tr '\n' ' ')"
}
cmirrord_stop() { # it exits on SIGTERM only once it serves no log
    local pid
    pid=$(cmirrord_pid) || return 0
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null
    while running "$pid"; do sleep 0.1; done
    rm -f "$KT/cmirrord.pid"
}
cb_listener() { # <variant>: the daemon it needs, alone on the connector
    case $1 in
    U?)
        cmirrord_stop
        daemon_alive || DAEMON_FLAGS="--corosync --metrics-listen $BENCH_PORT" daemon_start || return 1
        ;;
    M?)
        if daemon_alive; then
            [ "$(daemon_term)" = 0 ] || { why "dm-ulogd did not exit 0 on SIGTERM"; return 1; }
        fi
        [ -n "$(cmirrord_pid)" ] || cmirrord_start || return 1
        ;;
    esac
}
cb_procname() { case $1 in U?) echo dm-ulogd ;; M?) echo cmirrord ;; *) echo none ;; esac; }
cb_daemon_pid() { case $1 in U?) daemon_pid ;; M?) cmirrord_pid ;; esac; }
cpu_ms() { # <pid>: the CPU time its threads used so far, in ms (schedstat: ns, exact)
    [ -n "$1" ] || { echo 0; return; }
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ ns += $1 } END { printf "%.1f", ns / 1e6 }'
}
cpg_requests() { # <procname>: IPC requests its live corosync connections made (a multicast is one)
    corosync-cmapctl -m stats stats.ipcs. 2>/dev/null | awk -v want="$1" '
        { key = $1; sub(/\.[a-z_]+$/, "", key); field = $1; sub(/.*\./, "", field) }
        field == "procname" && $NF == want { mine[key] = 1 }
        field == "requests" { requests[key] = $NF }
        END { for (k in mine) sum += requests[k]; print sum + 0 }'
}

# --- the measurements ------------------------------------------------------------------------
cb_write() { # <workload> <bs> <count per pass> <variant> <round>: through kt-cb
    local wl=$1 bs=$2 count=$3 v=$4 r=$5 p out bytes=0 secs=0 before after metrics=""
    [[ $v != U? ]] || metrics=$(bench_metrics)
    local corosync daemon cpu_c cpu_d
    corosync=$(cat "$KT/corosync.pid") daemon=$(cb_daemon_pid "$v")
    cpu_c=$(cpu_ms "$corosync") cpu_d=$(cpu_ms "$daemon")
    before=$(cpg_requests "$(cb_procname "$v")")
    for ((p = 0; p < CB_PASSES; p++)); do
        out=$(dd if="$KT/cbrand" of=/dev/mapper/kt-cb bs="$bs" count="$count" oflag=direct 2>&1) ||
            { why "dd $bs to $v failed: $out"; return 1; }
        read -r bytes secs <<<"$(echo "$out" | sed -n 's/^\([0-9]*\) bytes.* copied, \([0-9.e+-]*\) s, .*/\1 \2/p' |
            awk -v b="$bytes" -v s="$secs" '{ printf "%d %.6f", b + $1, s + $2 }')"
    done
    after=$(cpg_requests "$(cb_procname "$v")")
    cpu_c=$(awk -v a="$cpu_c" -v b="$(cpu_ms "$corosync")" 'BEGIN { printf "%.1f", b - a }')
    cpu_d=$(awk -v a="$cpu_d" -v b="$(cpu_ms "$daemon")" 'BEGIN { printf "%.1f", b - a }')
    if [ -n "$metrics" ]; then # dm-ulogd's own view: requests by type, seconds spent on them
        metrics=$(awk 'NR == FNR { was[$1] = $2; next } $2 - was[$1] > 0 { printf " %s=%s", $1, $2 - was[$1] }' \
            <(echo "$metrics") <(bench_metrics))
    fi
    same_dev /dev/ram0 /dev/ram1 $((CB_SECT * 512)) || { why "$v $wl: the legs differ"; return 1; }
    emit "BENCH $wl $v $r $(awk -v b="$bytes" -v s="$secs" 'BEGIN { printf "%.2f", b / s / 1e6 }') writes=$((CB_PASSES * count)) mcasts=$((after - before)) cpu_corosync=$cpu_c cpu_daemon=$cpu_d$metrics"
}
cb_mirror() { # <variant> <round>: writes at 1 MiB and 64 KiB, then suspend + resume
    local v=$1 r=$2 t0
    zero_dev /dev/ram2 || return 1
    create kt-cb "$(cb_table "$v" "CB-$v-$r" $CB_SECT /dev/ram0 /dev/ram1 /dev/ram2 nosync)" || return 1
    cb_write seq1m 1M 16 "$v" "$r" || return 1
    cb_write seq64k 64K 256 "$v" "$r" || return 1
    t0=$(now_ms)
    must dmsetup suspend kt-cb && must dmsetup resume kt-cb || return 1
    emit "BENCH susres $v $r $(($(now_ms) - t0))"
    remove kt-cb
}
cb_create8() { # <variant> <round>: legs ram16..ram31, disk logs ram32..ram39
    local v=$1 r=$2 i t0 ms
    for i in $(seq 0 7); do zero_dev "/dev/ram$((32 + i))" || return 1; done
    t0=$(now_ms)
    for i in $(seq 0 7); do
        create "kt-cb8-$i" "$(cb_table "$v" "CB8-$v-$r-$i" $CB_SECT "/dev/ram$((16 + 2 * i))" \
            "/dev/ram$((17 + 2 * i))" "/dev/ram$((32 + i))" nosync)" || return 1
    done
    ms=$(($(now_ms) - t0))
    for i in $(seq 0 7); do remove "kt-cb8-$i" || return 1; done
    emit "BENCH create8 $v $r $ms"
}
cb_resync() { # <variant> <round>: a 64 MiB mirror over kt-cba/kt-cbb, log ram3
    local v=$1 r=$2 t0 ms
    dd if="$KT/cbrand64" of=/dev/mapper/kt-cba bs=1M oflag=direct status=none || return 1
    zero_dev /dev/mapper/kt-cbb 64 && zero_dev /dev/ram3 || return 1
    t0=$(now_ms)
    create kt-cbr "$(cb_table "$v" "CBR-$v-$r" $((4 * CB_SECT)) /dev/mapper/kt-cba /dev/mapper/kt-cbb /dev/ram3 sync)" ||
        return 1
    until [[ $(sync_ratio kt-cbr) =~ ^([0-9]+)/([0-9]+)$ ]] && [ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ]; do
        [ $(($(now_ms) - t0)) -lt 300000 ] || { why "$v: no full resync in 300 s: $(status_words kt-cbr)"; return 1; }
        sleep 0.05
    done
    ms=$(($(now_ms) - t0))
    remove kt-cbr || return 1
    same_dev /dev/mapper/kt-cba /dev/mapper/kt-cbb $((4 * CB_SECT * 512)) || { why "$v resync: the legs differ"; return 1; }
    emit "BENCH resync $v $r $ms"
}
cb_legs64() { # kt-cba = ram8..ram11, kt-cbb = ram12..ram15, concatenated
    local leg first i table
    for leg in a b; do
        first=$([ $leg = a ] && echo 8 || echo 12)
        table=""
        for i in 0 1 2 3; do
            table+="$((i * CB_SECT)) $CB_SECT linear /dev/ram$((first + i)) 0"$'\n'
        done
        create "kt-cb$leg" "$table" || return 1
    done
}

cbench() { # <rounds>
    local r v
    [ -x "$CB_CMIRRORD" ] || { why "no cmirrord binary (KTEST_CMIRRORD=$CB_CMIRRORD)"; return 1; }
    corosync_start || return 1
    head -c $((CB_SECT * 512)) /dev/urandom >"$KT/cbrand"
    head -c $((4 * CB_SECT * 512)) /dev/urandom >"$KT/cbrand64"
    cb_legs64 || return 1
    for ((r = 1; r <= $1; r++)); do
        for v in $CB_VARIANTS; do
            cb_listener "$v" || return 1
            cb_mirror "$v" "$r" && cb_create8 "$v" "$r" && cb_resync "$v" "$r" || return 1
        done
    done
    cmirrord_stop
    if [ -x "$CB_FLOOR" ]; then
        read -r _ p50 p99 _ <<<"$("$CB_FLOOR" 2000)"
        emit "BENCH cpgfloor - - ${p50#p50_us=} p99_us=${p99#p99_us=}"
    fi
    remove kt-cba && remove kt-cbb
}
