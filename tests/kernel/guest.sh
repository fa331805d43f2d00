#!/bin/bash
# The guest side of the real-kernel suite (see tests/kernel/run and tests/kernel/README.md).
#
# Runs inside the QEMU guest, chrooted into the host's root (mounted read-only over 9p), as
# root, with the guest kernel's dm-mod, dm-mirror, dm-log-userspace and brd loaded: the host's
# dm-ulogd (netlink transport) serves the `userspace` mirror log of the *real* kernel, driven
# by the host's dmsetup.
#
#   guest.sh main <dm-ulogd> <share> <sentinel> <case>...   the suite (called by /init)
#   guest.sh case <n> <dm-ulogd> <share>                    one case (called by main)
#   guest.sh cleanup <dm-ulogd> <share>                     tidy up after a case
#   guest.sh bench <dm-ulogd> <share> <sentinel> <rounds> [<daemon args>]
#                                                           the benchmark, not a test (see bench())
#   guest.sh cbench <dm-ulogd> <share> <sentinel> <rounds>   the clustered-log bench (cbench.sh)
#   guest.sh powercut-write|powercut-check <dm-ulogd> <share> <sentinel> <write boot's share>
#                                                           case 13's two boots (see there)
#
# Each case runs in its own bash under `timeout` and prints `PASS <name>` or
# `FAIL <name>: <why>` per (sub)case; main appends the sentinel when every case has run. All
# lines also go to <share>/results.txt. The daemon's log goes to <share>/ulogd.log, the
# commands each case ran to <share>/cases.log, the kernel log to <share>/dmesg.txt.
#
# Devices: brd RAM disks of 16 MiB (/dev/ram0 .. /dev/ram95, loaded by /init):
#   ram0 ram1 legs, ram2 log          cases 1, 2, 3, 7
#   ram3 ram4 legs, ram5 log          case 4 (the legs through dm linear devices kt-l0/kt-l1)
#   ram6 ram7 legs, ram5 log          case 5
#   ram0 ram1 legs, ram2 log (under kt-l9), and ram3 ram4 legs, ram5 log   case 9
#   ram88 .. ram95 legs (64 KiB slices), ram87 logs (4 KiB linear slices)   case 10
#   ram0 ram1 legs (under kt-l11a/b), ram2 log          case 11
#   ram8 .. ram71 legs, ram72 .. ram87 logs    cases 6 and 14
#   ram8 .. ram25 legs, ram72 .. ram75 logs, a dm-delay device over ram23    case 15
#   loop devices over files in $KT (dm-log-writes, its recording, the replays)    case 12
#   /dev/vda, a virtio disk backed by a host file (case 13's two boots)
# Every wait is bounded. A dm request to a dead daemon blocks in the kernel for good (the
# kernel retries every 2 s), so the cases themselves are bounded by `timeout` from main, and
# the whole guest by the host's `timeout` around QEMU.

set -u
export DM_DISABLE_UDEV=1 NO_COLOR=1 LC_ALL=C
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

MODE=$1
KT=/tmp/kt                        # scratch (tmpfs)
MIB=$((1024 * 1024))
SECT=16384                        # 8 MiB legs (TCG is slow: keep the data small)
LEGB=$((SECT * 512))
RS=512                            # 256 KiB regions: 32 of them
REGB=$((RS * 512))
NREG=$((SECT / RS))

# --- output --------------------------------------------------------------------------------

emit() { # a result line: to the console and to results.txt
    echo "$*"
    echo "$*" >>"$RESULTS"
}
why() { # records why the current (sub)case fails; returns 1 so callers can `|| return 1`
    echo "$*" >"$KT/why"
    echo "WHY: $*"
    return 1
}
note() { # an INFO line for the console/results (not a verdict)
    emit "INFO $*"
}
must() { # runs a command, logs it; on failure records why (with its last output lines)
    local out rc
    out=$("$@" 2>&1)
    rc=$?
    echo "+ [$(date +%T.%N | cut -c1-12)] $* (rc=$rc)"
    [ -z "$out" ] || echo "$out"
    [ "$rc" -eq 0 ] || why "'$*' failed rc=$rc: $(echo "$out" | tail -n 2 | tr '\n' ' ')"
}
subcase() { # subcase <name> <function> [args...]: one PASS/FAIL line
    local name=$1 start=$SECONDS
    shift
    rm -f "$KT/why"
    echo "=== [$(date +%T)] $name ===" >>"$ULOG"
    echo "=== [$(date +%T)] $name ===" >>"$CASELOG"
    if "$@" >>"$CASELOG" 2>&1; then
        emit "PASS $name ($((SECONDS - start)) s)"
    else
        emit "FAIL $name: $(cat "$KT/why" 2>/dev/null || echo 'no reason recorded')"
    fi
    cleanup >>"$CASELOG" 2>&1
}

# --- the daemon ----------------------------------------------------------------------------

serving_count() { # how many times a daemon said it is serving (the log is appended to)
    [ -f "$ULOG" ] || { echo 0; return; }
    grep -c 'serving' "$ULOG" || true
}
daemon_pid() { cat "$KT/ulogd.pid" 2>/dev/null; }
daemon_alive() {
    local pid state
    pid=$(daemon_pid) || return 1
    [ -n "$pid" ] || return 1
    state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}
daemon_start() { # in its own session, so a case's `timeout` never takes it down
    local before i
    before=$(serving_count)
    rm -f "$KT/ulogd.pid" "$KT/ulogd.rc"
    # $DAEMON_FLAGS: more options: case 8's --corosync, the bench's metrics endpoint.
    setsid bash -c '"$1" --transport netlink --log-level info --single-node-clustered $5 \
            >>"$2" 2>&1 </dev/null &
        echo $! >"$3"; wait $!; echo $? >"$4"' \
        ulogd "$BIN" "$ULOG" "$KT/ulogd.pid" "$KT/ulogd.rc" "${DAEMON_FLAGS:-}" </dev/null >/dev/null 2>&1 &
    for i in $(seq 150); do # 15 s
        if [ -s "$KT/ulogd.pid" ] && [ "$(serving_count)" -gt "$before" ]; then
            echo "daemon started: pid $(daemon_pid)"
            return 0
        fi
        [ -s "$KT/ulogd.rc" ] && break
        sleep 0.1
    done
    why "dm-ulogd did not start (rc $(cat "$KT/ulogd.rc" 2>/dev/null || echo none)): $(tail -n 3 "$ULOG" | tr '\n' ' ')"
}
daemon_kill9() {
    local pid i
    pid=$(daemon_pid)
    echo "kill -9 daemon $pid"
    kill -9 "$pid" || return 1
    for i in $(seq 50); do
        daemon_alive || return 0
        sleep 0.1
    done
    why "dm-ulogd $pid still alive 5 s after kill -9"
}
daemon_term() { # SIGTERM; prints the exit status
    local pid i
    pid=$(daemon_pid)
    kill -TERM "$pid" || return 1
    for i in $(seq 300); do # 30 s
        if [ -s "$KT/ulogd.rc" ]; then
            cat "$KT/ulogd.rc"
            return 0
        fi
        sleep 0.1
    done
    why "dm-ulogd $pid did not exit within 30 s of SIGTERM"
}
running() { # a live (not zombie) process
    local state
    state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) && [ -n "$state" ] && [ "$state" != Z ]
}
kmark() { # a marker in the kernel log; ksince prints what the kernel logged after it
    KMARK="ktest-mark-$RANDOM$RANDOM"
    echo "$KMARK" >/dev/kmsg
}
ksince() { dmesg | sed -n "/$KMARK/,\$p"; }
check_daemon() {
    daemon_alive || why "dm-ulogd died (rc $(cat "$KT/ulogd.rc" 2>/dev/null)): $(tail -n 3 "$ULOG" | tr '\n' ' ')"
}

# --- devices and data ----------------------------------------------------------------------

devnum() { # major:minor in decimal, as dm prints devices
    local t
    t=$(stat -L -c '%t %T' "$1") || return 1
    set -- $t
    echo "$((16#$1)):$((16#$2))"
}
zero_dev() { # dev [MiB, default 1]
    dd if=/dev/zero of="$1" bs=1M count="${2:-1}" oflag=direct status=none
}
put() { # put <file> <dev> <offset bytes> <length bytes> [<file offset bytes>]: direct write
    dd if="$1" of="$2" bs=1M iflag=skip_bytes,count_bytes oflag=seek_bytes,direct \
        skip="${5:-$3}" seek="$3" count="$4" status=none
}
get() { # get <dev> <offset bytes> <length bytes>: direct read to stdout
    dd if="$1" bs=1M iflag=direct,skip_bytes,count_bytes skip="$2" count="$3" status=none
}
md5() { md5sum | cut -d' ' -f1; }
file_md5() { # file offset length
    dd if="$1" bs=1M iflag=skip_bytes,count_bytes skip="$2" count="$3" status=none | md5
}
same_dev() { # same_dev <dev a> <dev b> <bytes>: compares direct reads, prints the first difference
    cmp <(get "$1" 0 "$3") <(get "$2" 0 "$3")
}
pattern() { # pattern <file>: 8 MiB of random data, a different window of $KT/rand each call
    local i
    i=$(($(cat "$KT/patidx" 2>/dev/null || echo 0) + 1))
    echo $i >"$KT/patidx"
    dd if="$KT/rand" of="$1" bs=1M skip=$((i % 24)) count=8 status=none
}

region_sums() { # <dev> <bytes> <region bytes>: one md5 per region, in order (one pass: TCG is slow)
    local dir
    dir=$(mktemp -d "$KT/sums.XXXXXX")
    get "$1" 0 "$2" | split -a 4 -d -b "$3" - "$dir/r"
    (cd "$dir" && md5sum r* | cut -d' ' -f1)
    rm -rf "$dir"
}
diff_regions() { # <dev a> <dev b> <bytes> <region bytes>: the regions whose bytes differ
    paste -d' ' <(region_sums "$1" "$3" "$4") <(region_sums "$2" "$3" "$4") |
        awk '$1 != $2 { printf "%s%d", sep, NR - 1; sep = " " }'
}

# --- mirrors -------------------------------------------------------------------------------

# dmsetup status of a 2-leg mirror: 0 <len> mirror 2 <dev> <dev> <in sync>/<regions> 1 <AA> <log...>
status_words() { timeout 60 dmsetup status "$1"; }
sync_ratio() { local f; read -r -a f <<<"$(status_words "$1")"; echo "${f[6]:-?}"; }
STALL=60 # a resync that makes no progress for this long has stalled
wait_sync() { # wait_sync <name> <seconds>: until N/N; fails at the deadline or on a stall
    local name=$1 deadline=$((SECONDS + $2)) s f last="" since=$SECONDS
    while :; do
        s=$(status_words "$name")
        read -r -a f <<<"$s"
        if [[ ${f[6]:-} =~ ^([0-9]+)/([0-9]+)$ ]] && [ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ]; then
            echo "[$(date +%T.%N | cut -c1-12)] in sync: $s"
            return 0
        fi
        [ "${f[6]:-}" = "$last" ] || { last=${f[6]:-}; since=$SECONDS; }
        if [ $((SECONDS - since)) -ge $STALL ]; then
            why "$name resync stalled at ${last} for $STALL s: $s"
            return 1
        fi
        [ "$SECONDS" -lt "$deadline" ] || break
        sleep 0.5
    done
    why "$name not in sync after $2 s: $s"
}
create() { # create <name> <table>
    must dmsetup create "$1" --table "$2" || return 1
    [ -b "/dev/mapper/$1" ] || why "/dev/mapper/$1 missing after create"
}
remove() { # remove <name>, retried while it is briefly busy
    local i out
    for i in $(seq 20); do
        if out=$(timeout 120 dmsetup remove "$1" 2>&1); then
            echo "+ dmsetup remove $1"
            return 0
        fi
        sleep 0.5
    done
    why "dmsetup remove $1 failed: $out"
}
wait_pids() { # wait_pids <seconds> <pid>...: every pid must exit 0 within the time
    local deadline=$((SECONDS + $1)) pid rc
    shift
    for pid in "$@"; do
        while running "$pid"; do
            [ "$SECONDS" -lt "$deadline" ] || { why "writer $pid still running after the deadline"; return 1; }
            sleep 0.2
        done
        wait "$pid"
        rc=$?
        [ "$rc" -eq 0 ] || { why "writer $pid exited $rc"; return 1; }
    done
}

# --- disk-log images -----------------------------------------------------------------------

# The kernel's disk log format (dm-log.c): header magic "MiRr" (LE 0x4D695272), version 2,
# nr_regions (LE u64) at bytes 0..16; the clean bitmap at byte 1024, region i = bit i%8 of
# byte 1024 + i/8; 1 = clean/in sync, 0 = dirty.
log_header() { get "$1" 0 65536 | od -An -v -tx1 -N16 | tr -s ' \n' ' ' | sed 's/^ //; s/ $//'; }
log_bitmap_hex() { # dev regions: the bitmap's bytes (whole u32 words) in hex
    get "$1" 0 65536 | od -An -v -tx1 -j1024 -N$((($2 + 31) / 32 * 4)) | tr -s ' \n' ' ' | sed 's/^ //; s/ $//'
}
log_dirty() { # dev regions: the dirty regions, space separated, from the on-disk bitmap
    local bytes i b out=""
    read -r -a bytes <<<"$(get "$1" 0 65536 | od -An -v -tu1 -j1024 -N$((($2 + 7) / 8)))"
    for ((i = 0; i < $2; i++)); do
        b=${bytes[$((i / 8))]}
        (((b >> (i % 8)) & 1)) || out+="$i "
    done
    echo "${out% }"
}
header_for() { # the header a v2 log of <regions> regions must have: magic, version, LE u64
    local out="72 52 69 4d 02 00 00 00" i
    for ((i = 0; i < 8; i++)); do out+=" $(printf %02x $((($1 >> (8 * i)) & 255)))"; done
    echo "$out"
}

# ===========================================================================================
# Case 1: every log type (core, disk; with and without integrated_flush; clustered-core and
# clustered-disk served single-node): create, resync, write a pattern, read it back, compare
# each leg (read directly) with the pattern, full sync in status, suspend/resume, remove.
# ===========================================================================================
c1_variant() { # c1_variant <uuid> <log type> <integrated_flush 0|1>
    local uuid=$1 type=$2 flush=$3 logpart args rs=$RS nreg=$NREG f exp_log st
    case $type in
    *disk) args="$type /dev/ram2 $rs" ;;
    *) args="$type $rs" ;;
    esac
    [ "$flush" = 1 ] && args="integrated_flush $args"
    set -- $args
    logpart="userspace $(($# + 1)) $uuid $args"
    [[ $type == *disk ]] && { zero_dev /dev/ram2 || return 1; }
    pattern "$KT/pat"
    create kt-m1 "0 $SECT mirror $logpart 2 /dev/ram0 0 /dev/ram1 0" || return 1
    wait_sync kt-m1 120 || return 1
    must put "$KT/pat" /dev/mapper/kt-m1 0 $LEGB || return 1
    local want got
    want=$(md5 <"$KT/pat")
    got=$(get /dev/mapper/kt-m1 0 $LEGB | md5)
    [ "$got" = "$want" ] || why "read-back through the mirror differs from the pattern"
    for leg in /dev/ram0 /dev/ram1; do
        got=$(get $leg 0 $LEGB | md5)
        [ "$got" = "$want" ] || { why "leg $leg differs from the pattern written"; return 1; }
    done
    st=$(status_words kt-m1)
    echo "status: $st"
    read -r -a f <<<"$st"
    [ "${f[6]}" = "$nreg/$nreg" ] || { why "status not fully in sync: $st"; return 1; }
    [ "${f[8]}" = AA ] || { why "leg health not AA: $st"; return 1; }
    if [[ $type == *disk ]]; then
        exp_log="3 $type $(devnum /dev/ram2) A"
        # The CTR reply named the log device: the kernel made it a dependency of the table.
        local deps
        deps=$(dmsetup deps kt-m1)
        echo "deps: $deps"
        local mm=$(devnum /dev/ram2)
        [[ $deps == *"(${mm%:*}, ${mm#*:})"* ]] || { why "log device $mm not in 'dmsetup deps': $deps"; return 1; }
    else
        exp_log="1 $type"
    fi
    [ "${f[*]:9}" = "$exp_log" ] || { why "log status '${f[*]:9}', expected '$exp_log'"; return 1; }
    must dmsetup suspend kt-m1 || return 1
    dmsetup info kt-m1 | grep -q SUSPENDED || { why "not suspended after dmsetup suspend"; return 1; }
    must dmsetup resume kt-m1 || return 1
    # A write after the resume, read back.
    must put "$KT/pat" /dev/mapper/kt-m1 $((3 * MIB)) $MIB $((5 * MIB)) || return 1
    [ "$(get /dev/mapper/kt-m1 $((3 * MIB)) $MIB | md5)" = "$(file_md5 "$KT/pat" $((5 * MIB)) $MIB)" ] ||
        { why "write after resume did not read back"; return 1; }
    wait_sync kt-m1 30 || return 1
    same_dev /dev/ram0 /dev/ram1 $LEGB || { why "legs differ after the resume and write"; return 1; }
    remove kt-m1 || return 1
    [ ! -e /dev/mapper/kt-m1 ] || { why "/dev/mapper/kt-m1 still there after remove"; return 1; }
    if [[ $type == *disk ]]; then
        # A clean shutdown leaves a valid header and every region clean on the log device.
        local hdr dirty
        hdr=$(log_header /dev/ram2)
        [ "$hdr" = "$(header_for $nreg)" ] || { why "log header after remove: $hdr, expected $(header_for $nreg)"; return 1; }
        dirty=$(log_dirty /dev/ram2 $nreg)
        [ -z "$dirty" ] || { why "regions dirty on the log device after a clean remove: $dirty"; return 1; }
    fi
    check_daemon
}
case_1() {
    subcase 1-core c1_variant KT1-core core 0
    subcase 1-core-integrated_flush c1_variant KT1-corei core 1
    subcase 1-disk c1_variant KT1-disk disk 0
    subcase 1-disk-integrated_flush c1_variant KT1-diski disk 1
    subcase 1-clustered-core c1_variant KT1-ccore clustered-core 0
    subcase 1-clustered-disk c1_variant KT1-cdisk clustered-disk 0
    subcase 1-clustered-disk-integrated_flush c1_variant KT1-cdiski clustered-disk 1
}

# ===========================================================================================
# Case 2: resync. The legs start different (leg 0 pattern A, leg 1 zeros); a mirror created
# without nosync copies leg 0 to leg 1 while writers write pattern B through the mirror. Small
# regions (32 KiB, 256 of them) make the resync long enough to overlap the writes. Afterwards:
# N/N, the legs identical, and the content = A with B where it was written.
# ===========================================================================================
c2_variant() { # <uuid> <log args...>
    local uuid=$1 rs=64 nreg=$((SECT / 64)) first pids=()
    shift
    local logpart="userspace $(($# + 1)) $uuid $*"
    pattern "$KT/patA"
    pattern "$KT/patB"
    must put "$KT/patA" /dev/ram0 0 $LEGB || return 1
    must zero_dev /dev/ram1 8 || return 1
    [[ $* == *disk* ]] && { zero_dev /dev/ram2 || return 1; }
    cp "$KT/patA" "$KT/expect"
    create kt-m2 "0 $SECT mirror $logpart 2 /dev/ram0 0 /dev/ram1 0" || return 1
    # Writers: 2..4 MiB in 32 KiB writes, 6..7 MiB in 4 KiB writes, one 4 KiB at 7.5 MiB + 4 KiB.
    dd if="$KT/patB" of=/dev/mapper/kt-m2 bs=32K skip=64 seek=64 count=64 oflag=direct status=none &
    pids+=($!)
    dd if="$KT/patB" of=/dev/mapper/kt-m2 bs=4K skip=1536 seek=1536 count=256 oflag=direct status=none &
    pids+=($!)
    dd if="$KT/patB" of=/dev/mapper/kt-m2 bs=4K skip=1921 seek=1921 count=1 oflag=direct status=none &
    pids+=($!)
    first=$(sync_ratio kt-m2)
    dd if="$KT/patB" of="$KT/expect" bs=32K skip=64 seek=64 count=64 conv=notrunc status=none
    dd if="$KT/patB" of="$KT/expect" bs=4K skip=1536 seek=1536 count=256 conv=notrunc status=none
    dd if="$KT/patB" of="$KT/expect" bs=4K skip=1921 seek=1921 count=1 conv=notrunc status=none
    wait_pids 180 "${pids[@]}" || return 1
    local mid
    mid=$(sync_ratio kt-m2)
    note "$CUR: sync progress seen: ${first} just after create, ${mid} when the writers were done (of $nreg regions)"
    wait_sync kt-m2 240 || return 1
    same_dev /dev/ram0 /dev/ram1 $LEGB || { why "legs differ after the resync"; return 1; }
    [ "$(get /dev/mapper/kt-m2 0 $LEGB | md5)" = "$(md5 <"$KT/expect")" ] ||
        { why "mirror content is not pattern A overlaid with the writes of pattern B"; return 1; }
    remove kt-m2 || return 1
    check_daemon
}
case_2() {
    CUR=2-resync-core subcase 2-resync-core c2_variant KT2-core core 64
    CUR=2-resync-disk subcase 2-resync-disk c2_variant KT2-disk disk /dev/ram2 64
}

# ===========================================================================================
# Case 3: kill -9 of the daemon. (a) During writes: the kernel's request times out (15 s), is
# re-sent to the restarted daemon, which does not know the log and answers -ESRCH; the kernel
# reconnects (CTR + RESUME, dmesg "Reconnected") and retries; the writes complete. (b) While
# idle: the first request after the restart takes the same path. Expected afterwards: the
# mirror reaches N/N by itself, the legs are identical and hold the data.
# Two failure modes are told apart in the FAIL line (see README.md, "Findings"):
#   - the legs differ while the status says N/N (a write went to leg 0 only);
#   - the resync stalls below N/N after the reconnect. The case then also tries a
#     suspend/resume (the kernel's own resume path, which restarts the resync) and reports
#     whether the legs end identical after it.
# ===========================================================================================
kernel_complaints() { # what dm-log-userspace said since the mark, other than the expected
    ksince | grep -E 'Insufficient space|Error trying|Incomplete message' | sed 's/^\[[ 0-9.]*\] //' |
        sort | uniq -c | sed 's/^ *//' | tr '\n' ';'
}
after_reconnect() { # <mirror> <what>: N/N by itself and identical legs (ram0/ram1)
    local name=$1 what=$2 msg differ STALL=20
    if wait_sync "$name" 240; then
        differ=$(diff_regions /dev/ram0 /dev/ram1 $LEGB $REGB)
        [ -z "$differ" ] && return 0
        why "after $what the status says $(sync_ratio "$name") but the legs differ in $((REGB / 1024)) KiB region(s) $differ; kernel: $(kernel_complaints)"
        return 1
    fi
    msg="$(cat "$KT/why") after $what; kernel: $(kernel_complaints)"
    # The kernel's own resume path restarts the resync: does it repair the mirror?
    if must dmsetup suspend "$name" && must dmsetup resume "$name" && wait_sync "$name" 120; then
        differ=$(diff_regions /dev/ram0 /dev/ram1 $LEGB $REGB)
        if [ -n "$differ" ]; then
            msg+=" -- a suspend/resume then took it to $(sync_ratio "$name"), but the legs differ in region(s) $differ"
        else
            msg+=" -- a suspend/resume then resynced it to $(sync_ratio "$name"), legs identical"
        fi
    else
        msg+=" -- a suspend/resume did not repair it either: $(cat "$KT/why")"
    fi
    why "$msg"
}
c3_during_writes() { # <uuid> <log args...>
    local uuid=$1 writer alive_before alive_after i
    shift
    local logpart="userspace $(($# + 1)) $uuid $*"
    [[ $* == *disk* ]] && { zero_dev /dev/ram2 || return 1; }
    pattern "$KT/pat"
    kmark
    create kt-m3 "0 $SECT mirror $logpart 2 /dev/ram0 0 /dev/ram1 0" || return 1
    wait_sync kt-m3 60 || return 1
    # 8 MiB in 8 KiB direct writes: long enough under TCG to be cut by the kill.
    dd if="$KT/pat" of=/dev/mapper/kt-m3 bs=8K oflag=direct status=none &
    writer=$!
    sleep 1
    if [[ $* == *disk* ]]; then
        # Kill while a region is dirty on disk (the writer's current one), so that the new
        # daemon has something to resync.
        for i in $(seq 50); do
            [ -n "$(log_dirty /dev/ram2 $NREG)" ] && break
            sleep 0.1
        done
    fi
    running $writer && alive_before=yes || alive_before=no
    daemon_kill9 || return 1
    [[ $* == *disk* ]] && echo "on-disk dirty regions after the kill: $(log_dirty /dev/ram2 $NREG)"
    sleep 4 # the kernel retries every 2 s: let it find the server gone
    running $writer && alive_after=yes || alive_after=no
    note "$CUR: writer running at the kill: $alive_before, 4 s later: $alive_after"
    daemon_start || return 1
    if [ $alive_before = no ]; then
        # Nothing was in flight: provoke a request so the kernel meets the new daemon.
        must put "$KT/pat" /dev/mapper/kt-m3 0 $MIB || return 1
    fi
    for i in $(seq 80); do # a request in flight at the kill is re-sent after 15 s
        ksince | grep -q 'Reconnected' && break
        sleep 0.5
    done
    ksince | grep -E 'userspace' | tail -n 6
    ksince | grep -q 'Reconnected' || { why "no 'Reconnected' in dmesg 40 s after the restart: $(ksince | tail -n 3 | tr '\n' ' ')"; return 1; }
    wait_pids 240 $writer || return 1
    [ "$(get /dev/mapper/kt-m3 0 $LEGB | md5)" = "$(md5 <"$KT/pat")" ] ||
        { why "mirror content differs from the pattern written across the crash"; return 1; }
    after_reconnect kt-m3 "the kill -9 during writes and the reconnect" || return 1
    remove kt-m3 || return 1
    check_daemon
}
c3_idle() { # <uuid> <log args...>
    local uuid=$1
    shift
    local logpart="userspace $(($# + 1)) $uuid $*"
    [[ $* == *disk* ]] && { zero_dev /dev/ram2 || return 1; }
    pattern "$KT/pat"
    create kt-m3 "0 $SECT mirror $logpart 2 /dev/ram0 0 /dev/ram1 0" || return 1
    wait_sync kt-m3 120 || return 1
    kmark
    daemon_kill9 || return 1
    daemon_start || return 1
    # The new daemon does not know the log: its -ESRCH reply must trigger the reconnect.
    must timeout 60 dd if="$KT/pat" of=/dev/mapper/kt-m3 bs=1M count=2 oflag=direct status=none || return 1
    ksince | grep -E 'userspace' | tail -n 6
    ksince | grep -q 'Reconnected' || { why "no 'Reconnected' in dmesg after a request to the restarted daemon: $(ksince | tail -n 3 | tr '\n' ' ')"; return 1; }
    [ "$(get /dev/mapper/kt-m3 0 $((2 * MIB)) | md5)" = "$(file_md5 "$KT/pat" 0 $((2 * MIB)))" ] ||
        { why "write after the reconnect did not read back"; return 1; }
    after_reconnect kt-m3 "a kill -9 while idle, a restart and a 2 MiB write" || return 1
    remove kt-m3 || return 1
    check_daemon
}
case_3() {
    CUR=3-kill9-idle-disk subcase 3-kill9-idle-disk c3_idle KT3-idle disk /dev/ram2 $RS
    CUR=3-kill9-writes-core subcase 3-kill9-writes-core c3_during_writes KT3-core core $RS
    CUR=3-kill9-writes-disk subcase 3-kill9-writes-disk c3_during_writes KT3-disk disk /dev/ram2 $RS
    CUR=3-kill9-writes-clustered-disk-integrated_flush subcase 3-kill9-writes-clustered-disk-integrated_flush c3_during_writes KT3-cdiski integrated_flush clustered-disk /dev/ram2 $RS
}

# ===========================================================================================
# Case 4: disk-log persistence, and the on-disk format shared with the kernel's `disk` log.
#
# A crash is made deterministic: the legs are dm linear devices kt-l0 / kt-l1 over ram3 / ram4.
# With kt-l1 suspended, writes of pattern B to regions D = {3, 7, 12} through the mirror are
# marked dirty on the log device (MARK + FLUSH come before the data is dispatched), land on
# leg 0 and hang on leg 1. That is exactly the state a power cut leaves after torn mirror
# writes: the regions are dirty on disk and the legs differ in them. We then
#   - kill -9 the daemon (writer = dm-ulogd), and check that a *new* daemon, reconnected by the
#     kernel, keeps the kernel's view (N/N: only the daemon died, leg 1's halves are still to
#     come) and keeps those 3 regions dirty on the log device when its RESUME rewrites it;
#   - take the "crash image": the bytes of the log device and of both legs at that instant;
#   - let the live system finish (resume kt-l1, resync, clean remove);
#   - put the crash image back on the devices (as if the machine had died at that instant and
#     rebooted: no clean suspend ever reached the log), and also make the legs differ in one
#     region C = 20 that is clean on disk (a region that must NOT be resynced);
#   - recreate the mirror on the same log device with the reader's log (dm-ulogd or the
#     kernel's own `disk` log) and wait for N/N.
# The reader honoured the on-disk bitmap iff the regions in D were resynced (legs identical
# there, holding B) and region C was not (legs still differ there). A reader that ignored the
# log (full resync) fails on C; one that lost the dirty bits fails on D. C is then rewritten
# through the mirror and the legs must end identical.
# Every writer/reader pair runs: ulogd->ulogd (persistence across a crash), ulogd->kernel,
# kernel->ulogd, and kernel->kernel (the control that validates the method). The crash images
# written by dm-ulogd and by the kernel are also compared byte for byte (header + bitmap).
# ===========================================================================================
C4_D="3 7 12"
C4_C=20
C4_RS=$RS
C4_REG=$REGB
c4_table() { # <writer|reader kind> <uuid>
    local legs="2 /dev/mapper/kt-l0 0 /dev/mapper/kt-l1 0"
    case $1 in
    ulogd) echo "0 $SECT mirror userspace 4 $2 disk /dev/ram5 $C4_RS $legs" ;;
    kernel) echo "0 $SECT mirror disk 2 /dev/ram5 $C4_RS $legs" ;;
    esac
}
c4_pair() { # <writer: ulogd|kernel> <reader: ulogd|kernel>
    local writer=$1 reader=$2 nreg=$((SECT / C4_RS)) pids=() r i dirty
    pattern "$KT/patA"
    pattern "$KT/patB"
    zero_dev /dev/ram5 || return 1
    must put "$KT/patA" /dev/ram3 0 $LEGB || return 1
    must put "$KT/patA" /dev/ram4 0 $LEGB || return 1
    create kt-l0 "0 $SECT linear /dev/ram3 0" || return 1
    create kt-l1 "0 $SECT linear /dev/ram4 0" || return 1
    create kt-m4 "$(c4_table "$writer" KT4-w-$writer-$reader)" || return 1
    wait_sync kt-m4 120 || return 1
    [ -z "$(log_dirty /dev/ram5 $nreg)" ] || { why "writer log not all clean after the initial sync: $(log_dirty /dev/ram5 $nreg)"; return 1; }

    # Torn writes: leg 1 stalls, the regions D go dirty on disk. One 64 KiB write (a single
    # bio) at the start of each region: dm-raid1 sends it to both legs at once, so leg 0's
    # half lands while leg 1's waits.
    cp "$KT/patA" "$KT/expect"
    must dmsetup suspend kt-l1 || return 1
    for r in $C4_D; do
        local k=$((r * C4_REG / 65536))
        dd if="$KT/patB" of=/dev/mapper/kt-m4 bs=64K skip=$k seek=$k count=1 oflag=direct status=none &
        pids+=($!)
        dd if="$KT/patB" of="$KT/expect" bs=64K skip=$k seek=$k count=1 conv=notrunc status=none
    done
    for i in $(seq 100); do
        dirty=$(log_dirty /dev/ram5 $nreg)
        [ "$dirty" = "$C4_D" ] && break
        sleep 0.2
    done
    [ "$dirty" = "$C4_D" ] || { why "on-disk dirty regions are '$dirty' with writes pending on $C4_D (writer $writer)"; return 1; }
    for i in $(seq 100); do # leg 0's half of the writes has landed
        local ok=1
        for r in $C4_D; do
            [ "$(get /dev/ram3 $((r * C4_REG)) 65536 | md5)" = "$(file_md5 "$KT/patB" $((r * C4_REG)) 65536)" ] || ok=0
        done
        [ $ok = 1 ] && break
        sleep 0.2
    done
    [ $ok = 1 ] || { why "the writes never reached leg 0"; return 1; }

    # The crash.
    [ "$writer" = ulogd ] && { daemon_kill9 || return 1; }
    get /dev/ram5 0 65536 >"$KT/crash.log"
    get /dev/ram3 0 $LEGB >"$KT/crash.leg0"
    get /dev/ram4 0 $LEGB >"$KT/crash.leg1"
    cp "$KT/crash.log" "$KT/crash.log.$writer"
    if [ "$writer" = ulogd ]; then
        # The new daemon takes the kernel's view back from its shadow (README.md, finding B):
        # only the daemon died, so every region is still in sync. The first status makes the
        # kernel reconnect: GET_SYNC_COUNT -> -ESRCH -> CTR + RESUME -> retry.
        kmark
        daemon_start || return 1
        local st f
        st=$(status_words kt-m4)
        echo "status after the restart: $st"
        ksince | grep -q Reconnected || { why "no 'Reconnected' in dmesg after the restart"; return 1; }
        read -r -a f <<<"$st"
        [ "${f[6]}" = "$nreg/$nreg" ] ||
            { why "restarted daemon reports ${f[6]} in sync, expected $nreg/$nreg (the kernel's view, kept in the shadow)"; return 1; }
        # Its RESUME rewrote the whole log: the torn writes' marks must still be there.
        dirty=$(log_dirty /dev/ram5 $nreg)
        [ "$dirty" = "$C4_D" ] ||
            { why "after the reconnect the log device shows '$dirty' dirty, expected '$C4_D' (writes still pending)"; return 1; }
    fi

    # The live system finishes cleanly.
    must dmsetup resume kt-l1 || return 1
    wait_pids 120 "${pids[@]}" || return 1
    wait_sync kt-m4 120 || return 1
    remove kt-m4 || return 1

    # Back to the crash instant, plus a difference in a clean region.
    must put "$KT/crash.log" /dev/ram5 0 65536 || return 1
    must put "$KT/crash.leg0" /dev/ram3 0 $LEGB || return 1
    must put "$KT/crash.leg1" /dev/ram4 0 $LEGB || return 1
    must put "$KT/patB" /dev/ram4 $((C4_C * C4_REG)) $C4_REG || return 1
    local hdr
    hdr=$(log_header /dev/ram5)
    [ "$hdr" = "$(header_for $nreg)" ] || { why "crash image header '$hdr', expected '$(header_for $nreg)' (writer $writer)"; return 1; }
    echo "crash image bitmap ($writer): $(log_bitmap_hex /dev/ram5 $nreg)"

    # The reader loads it.
    create kt-m4 "$(c4_table "$reader" KT4-r-$writer-$reader)" || return 1
    echo "status at load: $(status_words kt-m4)"
    wait_sync kt-m4 120 || return 1
    local differ
    differ=$(diff_regions /dev/ram3 /dev/ram4 $LEGB $C4_REG)
    echo "regions that differ after the reader's resync: '$differ'"
    [ "$differ" = "$C4_C" ] || {
        why "after the reader's ($reader) resync the legs differ in regions '$differ', expected only '$C4_C' (clean on disk, made to differ; dirty on disk: $C4_D)"
        return 1
    }
    for r in $C4_D; do
        [ "$(get /dev/ram4 $((r * C4_REG)) $C4_REG | md5)" = "$(file_md5 "$KT/expect" $((r * C4_REG)) $C4_REG)" ] ||
            { why "leg 1's region $r does not hold the data written before the crash"; return 1; }
    done
    must put "$KT/patA" /dev/mapper/kt-m4 $((C4_C * C4_REG)) $C4_REG || return 1
    wait_sync kt-m4 60 || return 1
    same_dev /dev/ram3 /dev/ram4 $LEGB || { why "legs differ at the end"; return 1; }
    [ "$(get /dev/mapper/kt-m4 0 $LEGB | md5)" = "$(md5 <"$KT/expect")" ] ||
        { why "the mirror does not hold pattern A with the writes of pattern B"; return 1; }
    remove kt-m4 || return 1
    [ -z "$(log_dirty /dev/ram5 $nreg)" ] || { why "reader $reader left dirty regions after a clean remove: $(log_dirty /dev/ram5 $nreg)"; return 1; }
    remove kt-l0 && remove kt-l1 || return 1
    check_daemon
}
c4_images() { # the crash images of both writers, byte for byte in the header and bitmap
    local a=$KT/crash.log.ulogd b=$KT/crash.log.kernel ha hb ba bb
    [ -f "$a" ] && [ -f "$b" ] || { why "a crash image is missing (an earlier 4-* subcase failed)"; return 1; }
    ha=$(od -An -v -tx1 -N16 "$a" | tr -s ' \n' ' ')
    hb=$(od -An -v -tx1 -N16 "$b" | tr -s ' \n' ' ')
    ba=$(od -An -v -tx1 -j1024 -N4 "$a" | tr -s ' \n' ' ')
    bb=$(od -An -v -tx1 -j1024 -N4 "$b" | tr -s ' \n' ' ')
    echo "dm-ulogd: header$ha bitmap$ba"
    echo "kernel:   header$hb bitmap$bb"
    [ "$ha" = "$hb" ] || { why "headers differ: dm-ulogd$ha / kernel$hb"; return 1; }
    [ "$ba" = "$bb" ] || { why "bitmaps differ: dm-ulogd$ba / kernel$bb"; return 1; }
}
case_4() {
    rm -f "$KT"/crash.log.*
    subcase 4-crash-ulogd-to-ulogd c4_pair ulogd ulogd
    subcase 4-crash-ulogd-to-kernel c4_pair ulogd kernel
    subcase 4-crash-kernel-to-ulogd c4_pair kernel ulogd
    subcase 4-crash-kernel-to-kernel-control c4_pair kernel kernel
    subcase 4-crash-images-identical c4_images
}

# ===========================================================================================
# Case 5: `dmsetup status` and `dmsetup table` of a userspace log next to the kernel's own log
# with the same parameters, on the same legs and log device. What must match:
#   status: every field; the log's part is `1 <type>` (core) or `3 <type> <maj:min> <A|D|F>`
#     (disk), with <type> = the kernel's name, or `clustered-` + it for the clustered types.
#     All of the log's part comes from dm-ulogd (STATUS_INFO); the rest from dm-mirror.
#   table: the kernel builds it without asking the daemon: `userspace <#args> <uuid>
#     [integrated_flush] <log args as given>` in place of `<type> <#args> <args>`. So: start,
#     length, target, and the legs part must be equal; the userspace args must be the ones
#     given; the type, region size and sync flag must equal the kernel's; the log device is
#     printed as given by the userspace table (a path here) and as maj:min by the kernel's.
# ===========================================================================================
c5_compare() { # <kernel log part> <userspace log type> [integrated_flush|-] [log dev as given]
    local klog=$1 utype=$2 flush=${3:-} udev=${4:-/dev/ram5} kst ktab ust utab kf uf uargs
    [ "$flush" = - ] && flush=""
    set -- $klog
    local ktype=$1 kargs=("${@:3}")
    # the userspace args: the kernel's args, with the log device as a path
    uargs="$utype ${kargs[*]}"
    [[ $ktype == disk ]] && uargs="$utype $udev ${kargs[*]:1}"
    [ -n "$flush" ] && uargs="integrated_flush $uargs"
    set -- $uargs
    local ulog="userspace $(($# + 1)) KT5-$utype $uargs"
    local legs="2 /dev/ram6 0 /dev/ram7 0"
    zero_dev /dev/ram5 || return 1
    create kt-m5 "0 $SECT mirror $klog $legs" || return 1
    wait_sync kt-m5 120 || return 1
    kst=$(dmsetup status kt-m5) && ktab=$(dmsetup table kt-m5) || { why "status/table of the kernel log failed"; return 1; }
    remove kt-m5 || return 1
    zero_dev /dev/ram5 || return 1
    create kt-m5 "0 $SECT mirror $ulog $legs" || return 1
    wait_sync kt-m5 120 || return 1
    ust=$(dmsetup status kt-m5) && utab=$(dmsetup table kt-m5) || { why "status/table of the userspace log failed"; return 1; }
    remove kt-m5 || return 1
    echo "kernel    status: $kst"
    echo "userspace status: $ust"
    echo "kernel    table:  $ktab"
    echo "userspace table:  $utab"
    note "$CUR: kernel    status '$kst' table '$ktab'"
    note "$CUR: userspace status '$ust' table '$utab'"

    # status, field for field
    read -r -a kf <<<"$kst"
    read -r -a uf <<<"$ust"
    local exp_type=$ktype
    [[ $utype == clustered-* ]] && exp_type="clustered-$ktype"
    [ "${#kf[@]}" = "${#uf[@]}" ] || { why "status has ${#uf[@]} fields, the kernel's ${#kf[@]}: '$ust' vs '$kst'"; return 1; }
    local i
    for ((i = 0; i < ${#kf[@]}; i++)); do
        if [ "$i" = 10 ]; then # the log type name
            [ "${uf[$i]}" = "$exp_type" ] || { why "status field $((i + 1)) (log type) '${uf[$i]}', expected '$exp_type'"; return 1; }
        else
            [ "${uf[$i]}" = "${kf[$i]}" ] || { why "status field $((i + 1)) '${uf[$i]}' differs from the kernel's '${kf[$i]}': '$ust' vs '$kst'"; return 1; }
        fi
    done
    [[ $ktype == disk ]] && [ "${uf[11]}" != "$(devnum /dev/ram5)" ] && { why "status names the log device ${uf[11]}, expected $(devnum /dev/ram5)"; return 1; }

    # table: <start> <len> mirror <log part> <legs part>
    read -r -a kf <<<"$ktab"
    read -r -a uf <<<"$utab"
    [ "${kf[*]:0:3}" = "${uf[*]:0:3}" ] || { why "table prefix '${uf[*]:0:3}' vs kernel '${kf[*]:0:3}'"; return 1; }
    local kn=${kf[4]} un=${uf[4]}
    [ "${kf[3]}" = "$ktype" ] && [ "${uf[3]}" = userspace ] || { why "table log types: '${uf[3]}' / '${kf[3]}'"; return 1; }
    local klegs="${kf[*]:$((5 + kn))}" ulegs="${uf[*]:$((5 + un))}"
    [ "$klegs" = "$ulegs" ] || { why "table legs part '$ulegs' vs kernel '$klegs'"; return 1; }
    local ugot="${uf[*]:5:$un}" uwant="KT5-$utype $uargs"
    [ "$ugot" = "$uwant" ] || { why "userspace table args '$ugot', expected the args given '$uwant'"; return 1; }
    local karg="${kf[*]:5:$kn}" want_k="${kargs[*]}"
    [[ $ktype == disk ]] && want_k="$(devnum /dev/ram5) ${kargs[*]:1}"
    [ "$karg" = "$want_k" ] || { why "kernel table args '$karg', expected '$want_k' (test assumption)"; return 1; }
    check_daemon
}
case_5() {
    local mm
    CUR=5-core subcase 5-core c5_compare "core 1 $RS" core
    CUR=5-core-nosync subcase 5-core-nosync c5_compare "core 2 $RS nosync" core
    CUR=5-core-sync subcase 5-core-sync c5_compare "core 2 $RS sync" core
    CUR=5-core-integrated_flush subcase 5-core-integrated_flush c5_compare "core 1 $RS" core integrated_flush
    CUR=5-clustered-core subcase 5-clustered-core c5_compare "core 1 $RS" clustered-core
    CUR=5-disk subcase 5-disk c5_compare "disk 2 /dev/ram5 $RS" disk
    CUR=5-disk-nosync subcase 5-disk-nosync c5_compare "disk 3 /dev/ram5 $RS nosync" disk
    CUR=5-clustered-disk subcase 5-clustered-disk c5_compare "disk 2 /dev/ram5 $RS" clustered-disk
    mm=$(devnum /dev/ram5)
    CUR=5-disk-majmin subcase 5-disk-majmin c5_compare "disk 2 $mm $RS" disk - "$mm"
}

# ===========================================================================================
# Case 6: 32 mirrors at once (a mix of core, disk, integrated_flush, clustered-core,
# clustered-disk), created without nosync so they all resync while 32 writers (one per
# mirror, in the background) write 2 MiB each (32 KiB writes; 64 KiB regions). At the end: all N/N, every pair of legs
# identical, every mirror holding its data.
# ===========================================================================================
case_6() { subcase 6-32-mirrors c6_run; }
c6_run() {
    local n=32 len=4096 rs=128 i pids=() names=() a b log args t0=$SECONDS nlog=0 spec=""
    pattern "$KT/pat"
    for ((i = 0; i < n; i++)); do
        a=/dev/ram$((8 + 2 * i))
        b=/dev/ram$((9 + 2 * i))
        log=/dev/ram$((72 + nlog))
        case $((i % 6)) in
        0) args="core $rs" ;;
        1) args="disk $log $rs" ;;
        2) args="integrated_flush clustered-core $rs" ;;
        3) args="clustered-disk $log $rs" ;;
        4) args="integrated_flush disk $log $rs" ;;
        5) args="clustered-core $rs" ;;
        esac
        case $((i % 6)) in 1 | 3 | 4) zero_dev $log || return 1; nlog=$((nlog + 1)) ;; esac
        set -- $args
        # dmsetup create --concise: <name>,<uuid>,<minor>,<flags>,<table>[;...]
        spec+="${spec:+;}kt-b$i,,,rw,0 $len mirror userspace $(($# + 1)) KT6-$i $args 2 $a 0 $b 0"
        names+=(kt-b$i)
    done
    # One dmsetup for all 32: under TCG a process costs a lot; the kernel work is the same.
    must dmsetup create --concise "$spec" || return 1
    echo "created $n mirrors in $((SECONDS - t0)) s"
    for ((i = 0; i < n; i++)); do
        dd if="$KT/pat" of=/dev/mapper/kt-b$i bs=32K skip=$(((i % 4) * 64)) count=64 oflag=direct status=none &
        pids+=($!)
    done
    wait_pids 400 "${pids[@]}" || return 1
    echo "writers done at $((SECONDS - t0)) s"
    local deadline=$((SECONDS + 300)) behind
    while :; do # every mirror N/N, from one `dmsetup status` of all devices
        behind=$(timeout 120 dmsetup status | awk '/^kt-b/ { split($8, r, "/"); if (r[1] != r[2] || r[2] == "") print $1, $8 }')
        [ -n "$behind" ] || break
        [ "$SECONDS" -lt "$deadline" ] || { why "not in sync after 300 s: $(echo $behind)"; return 1; }
        sleep 1
    done
    [ "$(timeout 120 dmsetup status | grep -c '^kt-b')" = "$n" ] || { why "not all $n mirrors are listed by dmsetup status"; return 1; }
    echo "all in sync at $((SECONDS - t0)) s"
    local want=() sa sb bad=""
    for ((i = 0; i < 4; i++)); do want+=("$(file_md5 "$KT/pat" $((i * 2 * MIB)) $((2 * MIB)))"); done
    for ((i = 0; i < n; i++)); do # each leg read directly must hold the data written
        a=/dev/ram$((8 + 2 * i))
        b=/dev/ram$((9 + 2 * i))
        sa=$(get $a 0 $((2 * MIB)) | md5)
        sb=$(get $b 0 $((2 * MIB)) | md5)
        [ "$sa" = "$sb" ] && [ "$sa" = "${want[$((i % 4))]}" ] || bad+=" kt-b$i($([ "$sa" = "$sb" ] && echo "legs same, wrong data" || echo "legs differ"))"
    done
    [ -z "$bad" ] || { why "mirrors with bad legs:$bad"; return 1; }
    must timeout 300 dmsetup remove "${names[@]}" || return 1
    echo "done at $((SECONDS - t0)) s"
    check_daemon
}

# ===========================================================================================
# Case 7: SIGTERM with a live disk log: the daemon commits and exits 0; a new daemon then
# serves the live mirror again (the kernel reconnects) from the committed log.
# ===========================================================================================
case_7() { subcase 7-sigterm c7_run; }
c7_run() {
    local rc st
    zero_dev /dev/ram2 || return 1
    create kt-m7 "0 $SECT mirror userspace 4 KT7 disk /dev/ram2 $RS 2 /dev/ram0 0 /dev/ram1 0" || return 1
    wait_sync kt-m7 120 || return 1
    pattern "$KT/pat"
    must put "$KT/pat" /dev/mapper/kt-m7 0 $((4 * MIB)) || return 1
    rc=$(daemon_term) || return 1
    echo "exit status after SIGTERM: $rc"
    [ "$rc" = 0 ] || { why "dm-ulogd exited $rc on SIGTERM: $(tail -n 3 "$ULOG" | tr '\n' ' ')"; return 1; }
    [ -z "$(log_dirty /dev/ram2 $NREG)" ] || { why "dirty regions on disk after the SIGTERM commit: $(log_dirty /dev/ram2 $NREG)"; return 1; }
    kmark
    daemon_start || return 1
    st=$(status_words kt-m7)
    echo "status after the restart: $st"
    ksince | grep -q Reconnected || { why "no reconnect after the restart"; return 1; }
    wait_sync kt-m7 60 || return 1
    [ "$(get /dev/mapper/kt-m7 0 $((4 * MIB)) | md5)" = "$(file_md5 "$KT/pat" 0 $((4 * MIB)))" ] ||
        { why "data lost across the SIGTERM/restart"; return 1; }
    remove kt-m7 || return 1
    check_daemon
}

# ===========================================================================================
# Case 8: the clustered types through a real corosync. A one-node corosync runs in the guest
# (knet on 127.0.0.1, votequorum: quorate with its one vote); the daemon is restarted with
# --corosync, so clustered-core and clustered-disk go through CPG: every state change is a
# multicast delivered back to the daemon before the kernel gets its answer. Then case 1's
# checks for each: resync, a pattern written and read back, both legs compared, status,
# suspend/resume, remove. Afterwards the daemon is restarted as the other cases want it.
# ===========================================================================================
corosync_start() {
    local d=$KT/corosync i
    mkdir -p "$d/state" /dev/shm
    mountpoint -q /dev/shm || mount -t tmpfs tmpfs /dev/shm # libqb's IPC rings
    ip link set lo up
    "$(dirname "$0")/../cluster/cluster.sh" conf "$d" 127.0.0.1 >"$d/corosync.conf"
    setsid corosync -f -c "$d/corosync.conf" </dev/null >>"$d/out" 2>&1 &
    echo $! >"$KT/corosync.pid"
    for i in $(seq 300); do # 30 s
        corosync-quorumtool -s 2>/dev/null | grep -q 'Quorate: *Yes' && return 0
        sleep 0.1
    done
    why "corosync not quorate after 30 s: $(tail -n 3 "$d/corosync.log" 2>/dev/null | tr '\n' ' ')"
}
corosync_stop() {
    local pid
    pid=$(cat "$KT/corosync.pid" 2>/dev/null) || return 0
    kill -TERM "$pid" 2>/dev/null
    while running "$pid"; do sleep 0.1; done
}
daemon_restart() { # daemon_restart [flags]: SIGTERM the daemon, start it with these flags
    local rc
    rc=$(daemon_term) || return 1
    [ "$rc" = 0 ] || { why "dm-ulogd exited $rc on SIGTERM"; return 1; }
    DAEMON_FLAGS=$1 daemon_start
}
c8_up() {
    corosync_start || return 1
    daemon_restart --corosync || return 1
    grep -q 'cluster quorum quorate=true' "$ULOG" || { why "the daemon did not see the quorum"; return 1; }
}
c8_through_cpg() { # the answers came through the log's CPG group, not a single-host log
    grep -q 'joined the log.s group' "$ULOG" && grep -q 'log state installed' "$ULOG" ||
        { why "the daemon's log shows no CPG group joined"; return 1; }
}
case_8() {
    subcase 8-corosync-up c8_up
    subcase 8-clustered-core c1_variant KT8-ccore clustered-core 0
    subcase 8-clustered-disk c1_variant KT8-cdisk clustered-disk 0
    subcase 8-clustered-disk-integrated_flush c1_variant KT8-cdiski clustered-disk 1
    subcase 8-through-cpg c8_through_cpg
    daemon_restart "" >>"$CASELOG" 2>&1
    corosync_stop
}

# ===========================================================================================
# Case 9: log-device failure. The log device is a dm linear device over ram2 (kt-l9) whose
# table is switched to `error` while the mirror writes: every write of the log fails. The
# same steps run for the kernel's own `disk` log (the control) and for dm-ulogd's `disk` log,
# and what the mirror does is recorded for both (INFO lines): the log's health letter, whether
# its writes complete, what the kernel logged. dm-ulogd must say D or F, answer the FLUSHes
# with -EIO (its log says so), write what completed to both legs as the kernel's log does,
# and keep serving another mirror (kt-m9o, its own log on ram5) at its throughput. Then the
# device comes back (linear again) and the mirror is suspended and resumed: dm-ulogd's log
# must be A with a valid header, the mirror N/N with identical legs, and a new write must
# read back.
# ===========================================================================================
case_9() {
    subcase 9-log-device-failure-kernel-disk c9_run kernel
    subcase 9-log-device-failure-ulogd-disk c9_run ulogd
}
c9_rate() { # <dev> <offset MiB>: a 2 MiB direct write of the pattern; prints dd's rate
    dd if="$KT/pat" of="$1" bs=64K count=32 skip=$(($2 * 16)) seek=$(($2 * 16)) oflag=direct 2>&1 | awk '/copied/ { print $(NF - 1), $NF }'
}
c9_kernel_said() { # <when>: what the kernel logged about mirrors and the log since the mark
    note "9 $1, the kernel said: $(ksince | grep -E 'raid1|dm-log|dirty|Buffer I/O' | sed 's/^\[[^]]*\] //; s/logical block [0-9]*/logical block N/' | sort | uniq -c | tr -s ' \n' ' ')"
}
c9_switch() { # <target line>: kt-l9's new table, loaded and swapped in
    must dmsetup load kt-l9 --table "0 32768 $1" && must dmsetup suspend kt-l9 && must dmsetup resume kt-l9
}
c9_run() {
    local kind=$1 logpart st f rc letter before during failures want
    zero_dev /dev/ram2 16 || return 1
    must dmsetup create kt-l9 --table "0 32768 linear /dev/ram2 0" || return 1
    case $kind in
    kernel) logpart="disk 2 /dev/mapper/kt-l9 $RS" ;;
    ulogd) logpart="userspace 4 KT9 disk /dev/mapper/kt-l9 $RS" ;;
    esac
    create kt-m9 "0 $SECT mirror $logpart 2 /dev/ram0 0 /dev/ram1 0" || return 1
    wait_sync kt-m9 120 || return 1
    zero_dev /dev/ram5 || return 1
    create kt-m9o "0 $SECT mirror userspace 4 KT9O disk /dev/ram5 $RS 2 /dev/ram3 0 /dev/ram4 0" || return 1
    wait_sync kt-m9o 120 || return 1
    pattern "$KT/pat"
    before=$(c9_rate /dev/mapper/kt-m9o 0)
    kmark
    failures=$(grep -c 'log device failed.*uuid=KT9 ' "$ULOG")
    c9_switch error || return 1
    # Writes to regions the mirror has not marked yet: each needs a mark the log cannot keep.
    timeout 120 dd if="$KT/pat" of=/dev/mapper/kt-m9 bs=64K count=64 oflag=direct status=none
    rc=$?
    st=$(status_words kt-m9)
    read -r -a f <<<"$st"
    letter=${f[12]:-?}
    note "9 $kind: with the log device failing: write rc $rc, status: $st"
    c9_kernel_said "$kind: with the log device failing"
    echo "$rc $letter" >"$KT/c9-$kind"
    during=$(c9_rate /dev/mapper/kt-m9o 2)
    note "9 $kind: the other mirror's 2 MiB writes: $before before, $during during the failure"
    [ "$(get /dev/mapper/kt-m9o 0 $((4 * MIB)) | md5)" = "$(file_md5 "$KT/pat" 0 $((4 * MIB)))" ] ||
        { why "the other mirror's writes did not read back during the failure"; return 1; }
    if [ "$kind" = ulogd ]; then
        [[ $letter == [DF] ]] || { why "log health '$letter' with its device failing, expected D or F: $st"; return 1; }
        [ "$(grep -c 'log device failed.*uuid=KT9 ' "$ULOG")" -gt "$failures" ] ||
            { why "the daemon logged no failed commit (FLUSH -EIO) for KT9"; return 1; }
        read -r want _ <"$KT/c9-kernel" 2>/dev/null || want=?
        [ "$rc" = "$want" ] || { why "the write's outcome (rc $rc) is not the kernel disk log's (rc $want)"; return 1; }
        if [ "$rc" = 0 ]; then
            [ "$(get /dev/mapper/kt-m9 0 $((4 * MIB)) | md5)" = "$(file_md5 "$KT/pat" 0 $((4 * MIB)))" ] ||
                { why "the write completed but does not read back"; return 1; }
        fi
    fi
    # The device is back; a suspend and resume of the mirror takes it up again.
    c9_switch "linear /dev/ram2 0" || return 1
    must dmsetup suspend kt-m9 && must dmsetup resume kt-m9 || return 1
    wait_sync kt-m9 120 || return 1
    st=$(status_words kt-m9)
    read -r -a f <<<"$st"
    note "9 $kind: after the device came back and a resume: $st"
    c9_kernel_said "$kind: until the repair"
    if [ "$kind" = ulogd ]; then
        [ "${f[12]:-?}" = A ] || { why "log health '${f[12]:-?}' after the device came back and a resume: $st"; return 1; }
        [ "$(log_header /dev/ram2)" = "$(header_for $NREG)" ] || { why "log header after the repair: $(log_header /dev/ram2)"; return 1; }
    fi
    same_dev /dev/ram0 /dev/ram1 $LEGB || { why "legs differ after the log device came back"; return 1; }
    must put "$KT/pat" /dev/mapper/kt-m9 $((5 * MIB)) $MIB $((6 * MIB)) || return 1
    [ "$(get /dev/mapper/kt-m9 $((5 * MIB)) $MIB | md5)" = "$(file_md5 "$KT/pat" $((6 * MIB)) $MIB)" ] ||
        { why "a write after the repair did not read back"; return 1; }
    remove kt-m9 && remove kt-m9o || return 1
    must dmsetup remove kt-l9 || return 1
    check_daemon
}

# ===========================================================================================
# Case 10: 1,000 mirrors served at once. 64 KiB mirrors of 16 KiB regions (4 each), created
# `nosync`, their legs at offsets of ram88 .. ram95, half with a disk log (500 dm linear slices
# of ram87, 4 KiB each) and half with a core log. 100 of them are written (writer.py,
# O_DIRECT, 32 threads); then, during writes to those 100, the daemon is killed (-9) and restarted:
# every write must complete, every mirror must reconnect (the kernel replays CTR and RESUME
# at its next request: a `dmsetup status` of all 1,000 makes one for each), and both legs of
# the 100 must hold the last pass. (The kernel waits 2 s before each reconnect, so the
# statuses are asked 50 at a time.) INFO lines report the creation time, the daemon's
# resident memory and descriptors, the time from the restart until all 1,000 had
# reconnected, and (KTEST_COMPARE=1) the same 1,000 mirrors with the kernel's own logs.
# ===========================================================================================
C10_N=1000
C10_SECT=128                      # 64 KiB a mirror
C10_RS=32                         # 16 KiB regions
case_10() { subcase 10-1000-mirrors c10_run; }
c10_legs() { # <i>: the two legs of mirror i, as a mirror table names them
    local a=$((2 * $1)) b=$((2 * $1 + 1))
    echo "/dev/ram$((88 + a / 256)) $(((a % 256) * C10_SECT)) /dev/ram$((88 + b / 256)) $(((b % 256) * C10_SECT))"
}
c10_log() { # <ulogd|kernel> <i>: mirror i's log, as its table names it
    local j=$(($2 / 2))
    case $1:$(($2 % 2)) in
    ulogd:0) echo "userspace 5 KT10-$2 disk /dev/mapper/kt-l10-$j $C10_RS nosync" ;;
    ulogd:1) echo "userspace 4 KT10-$2 core $C10_RS nosync" ;;
    kernel:0) echo "disk 3 /dev/mapper/kt-l10-$j $C10_RS nosync" ;;
    kernel:1) echo "core 2 $C10_RS nosync" ;;
    esac
}
c10_create() { # <ulogd|kernel>: the 1,000 mirrors, 250 to a dmsetup
    local i spec=""
    for ((i = 0; i < C10_N; i++)); do
        spec+="${spec:+;}kt-m10-$i,,,rw,0 $C10_SECT mirror $(c10_log "$1" $i) 2 $(c10_legs $i)"
        if (((i + 1) % 250 == 0)); then
            must timeout 600 dmsetup create --concise "$spec" || return 1
            spec=""
        fi
    done
}
c10_mirrors() { # <from> <to>: the mirrors' device paths
    local i
    for ((i = $1; i < $2; i++)); do echo /dev/mapper/kt-m10-$i; done
}
c10_serve() { # <ulogd|kernel> <what>: the 1,000 created, then 100 of them written, timed
    local t0=$SECONDS
    c10_create "$1" || return 1
    note "10: created $C10_N mirrors $2 in $((SECONDS - t0)) s"
    t0=$SECONDS
    must timeout 600 python3 "$(dirname "$0")/writer.py" write 1 65536 $(c10_mirrors 0 100) || return 1
    note "10: a 64 KiB write to each of 100 of them $2: $((SECONDS - t0)) s"
}
c10_remove() {
    must timeout 600 dmsetup remove $(for ((i = 0; i < C10_N; i++)); do echo kt-m10-$i; done)
}
c10_run() {
    local i j spec="" t0 pid writer pids places=() reconnected
    zero_dev /dev/ram87 2 || return 1
    for ((i = 0; i < C10_N / 2; i++)); do spec+="${spec:+;}kt-l10-$i,,,rw,0 8 linear /dev/ram87 $((i * 8))"; done
    must timeout 600 dmsetup create --concise "$spec" || return 1
    c10_serve ulogd "served by dm-ulogd" || return 1
    pid=$(daemon_pid)
    note "10: dm-ulogd with $C10_N logs: $(awk '/VmRSS/ { print $2 " KiB resident" }' /proc/$pid/status), $(ls /proc/$pid/fd | wc -l) descriptors, $(ls /proc/$pid/task | wc -l) threads"
    # kill -9 during writes to 100 of them (50 disk logs, 50 core).
    python3 "$(dirname "$0")/writer.py" write 20 65536 $(c10_mirrors 0 100) &
    writer=$!
    sleep 2
    daemon_kill9 || return 1
    daemon_start || return 1
    t0=$SECONDS
    wait_pids 600 $writer || return 1
    note "10: the writes to the 100 completed $((SECONDS - t0)) s after the restart"
    # The kernel sleeps 2 s before each reconnect: 50 dmsetups of 20 mirrors each, at once.
    pids=()
    for ((i = 0; i < C10_N; i += 20)); do
        timeout 600 dmsetup status $(for ((j = i; j < i + 20; j++)); do echo kt-m10-$j; done) >/dev/null &
        pids+=($!)
    done
    wait_pids 600 "${pids[@]}" || return 1
    # Each reconnect is a CTR the new daemon logs: count them after its "serving" line.
    reconnected=$(awk '/serving/ { n = 0 } /log created/ { n++ } END { print n + 0 }' "$ULOG")
    note "10: $reconnected of $C10_N logs reconnected within $((SECONDS - t0)) s of the restart"
    [ "$reconnected" -ge "$C10_N" ] || { why "only $reconnected of $C10_N logs reconnected"; return 1; }
    for ((i = 0; i < 100; i++)); do places+=($(c10_legs $i | awk '{ print $1 ":" $2 * 512, $3 ":" $4 * 512 }')); done
    must python3 "$(dirname "$0")/writer.py" check 20 65536 "${places[@]}" || { why "a leg of the 100 does not hold the last pass"; return 1; }
    local behind
    behind=$(timeout 300 dmsetup status | awk '/^kt-m10-/ { split($8, r, "/"); if (r[1] != r[2]) n++ } END { print n + 0 }')
    [ "$behind" = 0 ] || { why "$behind mirrors not in sync after the restart"; return 1; }
    pid=$(daemon_pid)
    note "10: after the restart: $(awk '/VmRSS/ { print $2 " KiB resident" }' /proc/$pid/status), $(ls /proc/$pid/fd | wc -l) descriptors"
    c10_remove || return 1
    # The same with the kernel's own logs, for the figures only (about 100 s under TCG).
    if [ "${KTEST_COMPARE:-0}" = 1 ]; then
        c10_serve kernel "with the kernel's own logs" || return 1
        c10_remove || return 1
    fi
    must timeout 600 dmsetup remove $(for ((i = 0; i < C10_N / 2; i++)); do echo kt-l10-$i; done) || return 1
    check_daemon
}

# ===========================================================================================
# Case 11: a leg that fails mid-write, and its replacement. The legs are dm linear devices
# (kt-l11a over ram0, kt-l11b over ram1); the log is a disk log on ram2, the kernel's own
# (the control) or dm-ulogd's. Leg b's table turns to `error`, and writes go on: the kernel
# fails the leg (`AD`) and marks the regions it wrote out of sync through the log
# (SET_REGION_SYNC 0). dm-ulogd must show them out of sync as the kernel's log does (the same
# sync ratio), and keep them unclean on the log device. Then leg b is replaced (its table
# linear again) and the mirror's table reloaded and resumed: the resync must reach N/N with
# the legs identical, and the data written meanwhile must read back.
# ===========================================================================================
case_11() {
    subcase 11-leg-failure-kernel-disk c11_run kernel
    subcase 11-leg-failure-ulogd-disk c11_run ulogd
}
c11_table() { # <kernel|ulogd>
    local legs="2 /dev/mapper/kt-l11a 0 /dev/mapper/kt-l11b 0"
    case $1 in
    kernel) echo "0 $SECT mirror disk 2 /dev/ram2 $RS $legs" ;;
    ulogd) echo "0 $SECT mirror userspace 4 KT11 disk /dev/ram2 $RS $legs" ;;
    esac
}
c11_run() {
    local kind=$1 st f ratio want dirty
    zero_dev /dev/ram2 || return 1
    create kt-l11a "0 $SECT linear /dev/ram0 0" || return 1
    create kt-l11b "0 $SECT linear /dev/ram1 0" || return 1
    create kt-m11 "$(c11_table "$kind")" || return 1
    wait_sync kt-m11 120 || return 1
    pattern "$KT/pat"
    must dmsetup load kt-l11b --table "0 $SECT error" && must dmsetup suspend kt-l11b && must dmsetup resume kt-l11b || return 1
    # Writes to the first 4 regions, with leg b failing.
    must put "$KT/pat" /dev/mapper/kt-m11 0 $((4 * REGB)) || return 1
    st=$(status_words kt-m11)
    read -r -a f <<<"$st"
    ratio=${f[6]:-?}
    note "11 $kind: with leg b failing: $st"
    echo "$ratio ${f[8]:-?}" >"$KT/c11-$kind"
    [ "${f[8]:-?}" = AD ] || { why "leg health '${f[8]:-?}' with leg b failing, expected AD: $st"; return 1; }
    [ "${ratio%/*}" -lt "$NREG" ] || { why "no region out of sync after the leg failed: $st"; return 1; }
    if [ "$kind" = ulogd ]; then
        read -r want _ <"$KT/c11-kernel" 2>/dev/null || want=?
        [ "$ratio" = "$want" ] || { why "sync ratio $ratio with leg b failing; the kernel's disk log said $want"; return 1; }
        dirty=$(log_dirty /dev/ram2 $NREG)
        note "11 $kind: unclean on the log device: $dirty"
        [ -n "$dirty" ] || { why "no region unclean on the log device while out of sync"; return 1; }
    else
        note "11 $kind: unclean on the log device: $(log_dirty /dev/ram2 $NREG)"
    fi
    # The leg is replaced: linear again, the mirror's table reloaded, resumed.
    must dmsetup load kt-l11b --table "0 $SECT linear /dev/ram1 0" && must dmsetup suspend kt-l11b && must dmsetup resume kt-l11b || return 1
    must dmsetup load kt-m11 --table "$(c11_table "$kind")" && must dmsetup suspend kt-m11 && must dmsetup resume kt-m11 || return 1
    wait_sync kt-m11 120 || return 1
    st=$(status_words kt-m11)
    note "11 $kind: after the replacement and the resync: $st"
    read -r -a f <<<"$st"
    [ "${f[8]:-?}" = AA ] || { why "leg health '${f[8]:-?}' after the replacement: $st"; return 1; }
    same_dev /dev/ram0 /dev/ram1 $LEGB || { why "legs differ after the resync"; return 1; }
    [ "$(get /dev/mapper/kt-m11 0 $((4 * REGB)) | md5)" = "$(file_md5 "$KT/pat" 0 $((4 * REGB)))" ] ||
        { why "the data written with leg b failing does not read back"; return 1; }
    remove kt-m11 && remove kt-l11a && remove kt-l11b || return 1
    check_daemon
}

# ===========================================================================================
# Case 12: power cuts, by replaying a recording of every write (tests/kernel/README.md, "Power
# cuts", says what this proves and what the QEMU kill in tests/kernel/powercut proves). The
# legs, the log and the writer's journal are linear slices of one dm-log-writes device over a
# loop file, so the recording holds every write of the three in one order, FLUSH and FUA
# included: one disk with a volatile cache. The mirror is created `nosync` on zeros and
# tests/kernel/powercut.py writes batches to it, each made durable (fdatasync) before its
# acknowledgement goes to the journal with FUA. Then, for 10 cut points (half just after a
# FLUSH or FUA, half anywhere), the first entries of the recording are replayed onto a file of
# zeros, the machine "reboots" into that image: the same table is created on it (a fresh
# CTR: no shadow, as after a real power cut), the log's unclean regions are read off the
# device first, the kernel resyncs what the log says, and then the legs must be identical and
# every acknowledged batch must read back. The same for the kernel's own `disk` log (the
# control), dm-ulogd `disk`, `disk` + integrated_flush and `clustered-disk` on a one-node
# corosync; and, for the kernel's log and dm-ulogd's `disk`, a cut while leg b is failed
# (its slice turned to `error` mid-write), before any repair: after the reboot every region
# an acknowledged batch wrote meanwhile must be unclean, and be resynced.
# ===========================================================================================
PC=$(dirname "$0")/powercut.py
PCS=4096                          # 2 MiB legs
PC_RS=64                          # 32 KiB regions: 64 of them
PC_NREG=$((PCS / PC_RS))
PC_IMG=$((2 * PCS + 4096))        # legs, a 1 MiB log, a 1 MiB journal
PC_CUTS=10
case_12() {
    local kind
    for kind in kernel-disk ulogd-disk ulogd-disk-if; do
        subcase "12-power-cut-$kind" c12_run "$kind" ""
    done
    subcase 12-power-cut-leg-failed-kernel-disk c12_run kernel-disk leg-failed
    subcase 12-power-cut-leg-failed-ulogd-disk c12_run ulogd-disk leg-failed
    subcase 12-corosync-up c8_up
    subcase 12-power-cut-ulogd-clustered-disk c12_run ulogd-clustered-disk ""
    daemon_restart "" >>"$CASELOG" 2>&1
    corosync_stop
}
c12_table() { # <kind> <tag> [nosync]: the mirror's table. The recording creates the mirror
    # `nosync` on zeros; the reboot leaves the flag out, as an existing mirror is activated:
    # with `sync` or `nosync` the kernel's disk log (read_header) ignores what the device holds.
    local t=$2 legs log args
    legs="2 /dev/mapper/kt-l${t}a 0 /dev/mapper/kt-l${t}b 0" log=/dev/mapper/kt-l${t}g
    case $1 in
    kernel-disk) args="disk $log $PC_RS ${3:-}" ;;
    ulogd-disk) args="KT$t-d disk $log $PC_RS ${3:-}" ;;
    ulogd-disk-if) args="KT$t-di integrated_flush disk $log $PC_RS ${3:-}" ;;
    ulogd-clustered-disk) args="KT$t-c clustered-disk $log $PC_RS ${3:-}" ;;
    esac
    set -- $args
    if [ "$1" = disk ]; then
        shift
        echo "0 $PCS mirror disk $# $* $legs"
    else
        echo "0 $PCS mirror userspace $# $* $legs"
    fi
}
c12_slices() { # <device> [<tag> <offset>]: legs a and b, the log (g) and the journal (j), linear slices of it
    local t=${2:-12} o=${3:-0}
    create kt-l${t}a "0 $PCS linear $1 $o" && create kt-l${t}b "0 $PCS linear $1 $((o + PCS))" &&
        create kt-l${t}g "0 2048 linear $1 $((o + 2 * PCS))" &&
        create kt-l${t}j "0 2048 linear $1 $((o + 2 * PCS + 2048))"
}
c12_unslice() { # [<tag>]
    local t=${1:-12}
    remove kt-l${t}a && remove kt-l${t}b && remove kt-l${t}g && remove kt-l${t}j
}
c12_loop() { # <file> <bytes>: a fresh sparse file of zeros on a loop device; prints the device
    rm -f "$1" && truncate -s "$2" "$1" && losetup -f --show "$1"
}
c12_record() { # <kind> <leg-failed|"">: the workload, recorded between the marks start and stop
    local kind=$1 base rec writer
    base=$(c12_loop "$KT/pc.base" $((PC_IMG * 512))) && rec=$(c12_loop "$KT/pc.rec" 256M) ||
        { why "losetup failed"; return 1; }
    create kt-w12 "0 $PC_IMG log-writes $base $rec" || return 1
    c12_slices /dev/mapper/kt-w12 || return 1
    create kt-m12 "$(c12_table "$kind" 12 nosync)" || return 1
    rm -f "$KT/pc.failed"
    must dmsetup message kt-w12 0 mark start || return 1
    python3 "$PC" write /dev/mapper/kt-m12 /dev/mapper/kt-l12j 3 "$SEED" "$KT/pc.batches" "$KT/pc.failed" &
    writer=$!
    if [ -n "$2" ]; then
        sleep 1
        must dmsetup load kt-l12b --table "0 $PCS error" && must dmsetup suspend kt-l12b &&
            must dmsetup resume kt-l12b || return 1
        touch "$KT/pc.failed"
    fi
    wait_pids 120 $writer || return 1
    must dmsetup message kt-w12 0 mark stop || return 1
    note "12 $kind${2:+ ($2)}: recorded $(wc -l <"$KT/pc.batches") batches; status $(status_words kt-m12)"
    remove kt-m12 && c12_unslice && remove kt-w12 || return 1
    losetup -d "$base" "$rec"
}
c12_run() { # <kind> <leg-failed|"">
    local kind=$1 cuts dev out rc line
    SEED=$RANDOM
    note "12 $kind${2:+ ($2)}: seed $SEED"
    c12_record "$kind" "$2" || return 1
    if [ -n "$2" ]; then
        # One cut at the end of the recording: after the failure, before any repair.
        cuts=$(python3 "$PC" end "$KT/pc.rec") || { why "no end: $cuts"; return 1; }
    else
        cuts=$(python3 "$PC" cuts "$KT/pc.rec" $PC_CUTS "$SEED") || { why "no cut points: $cuts"; return 1; }
    fi
    # The slices stay on the loop device across the cuts: the replays rewrite the file under
    # them, and powercut.py drops the log slice's page cache (dm-ulogd reads it buffered).
    dev=$(c12_loop "$KT/pc.img" $((PC_IMG * 512))) || { why "losetup failed"; return 1; }
    c12_slices "$dev" || return 1
    out=$(python3 "$PC" reboot kt-m12 "$(c12_table "$kind" 12)" /dev/mapper/kt-l12 \
        "$KT/pc.batches" $((PC_RS * 512)) "$KT/pc.rec" "$KT/pc.img" $cuts 2>>"$CASELOG")
    rc=$?
    while IFS= read -r line; do
        note "12 $kind${2:+ ($2)}: $line"
    done <<<"$out"
    [ "$rc" -eq 0 ] || { why "$(tail -n 1 <<<"$out")"; return 1; }
    c12_unslice && losetup -d "$dev" || return 1
    check_daemon
}

# ===========================================================================================
# Case 13 (two boots, driven by tests/kernel/run): a real power cut. The legs, logs and
# journals of four mirrors (the kernel's `disk` log, dm-ulogd `disk`, `disk` +
# integrated_flush, and `clustered-disk` served single-node) are slices of a virtio disk
# backed by a file on the host. The first boot (powercut-write) starts case 12's writer on
# each and says `INFO powercut: writing`; the host then kills QEMU with SIGKILL at a random
# moment. The batches files are on that boot's 9p share, which is the host's file system.
# The second boot (powercut-check) starts a fresh daemon (an empty state_dir), creates the
# same tables on the same disk and checks each mirror as case 12 checks a cut.
# ===========================================================================================
PC13_KINDS="kernel-disk ulogd-disk ulogd-disk-if ulogd-clustered-disk"
c13_each() { # <function> [args...]: the function for each kind, with its kind, tag and offset
    local i=0 kind
    for kind in $PC13_KINDS; do
        "$@" "$kind" "13$i" $((i * PC_IMG)) || return 1
        i=$((i + 1))
    done
}
c13_start() { # <kind> <tag> <offset>: the mirror on its slices of the virtio disk, and its writer
    c12_slices /dev/vda "$2" "$3" && create "kt-m$2" "$(c12_table "$1" "$2" nosync)" || return 1
    setsid python3 "$PC" write "/dev/mapper/kt-m$2" "/dev/mapper/kt-l$2j" 600 "$RANDOM" \
        "$SHARE/pc-$2.batches" </dev/null >>"$CASELOG" 2>&1 &
}
c13_writing() { # <kind> <tag> <offset>: until its writer has started a batch (60 s)
    local i
    for i in $(seq 600); do
        [ -s "$SHARE/pc-$2.batches" ] && return 0
        sleep 0.1
    done
    why "the $1 writer started no batch within 60 s"
}
powercut_write() { # the host waits for the INFO line on the console
    c13_each c13_start >>"$CASELOG" 2>&1 && c13_each c13_writing >>"$CASELOG" 2>&1 || return 1
    note "powercut: writing"
    sleep 600
    why "still running 600 s after the writers started: the host did not cut the power"
}
c13_check() { # <kind> <tag> <offset>
    local kind=$1 t=$2 out rc
    [ -s "$PCW_SHARE/pc-$t.batches" ] || { why "no batches from the first boot: did it write?"; return 1; }
    c12_slices /dev/vda "$t" "$3" || return 1
    out=$(python3 "$PC" reboot "kt-m$t" "$(c12_table "$kind" "$t")" "/dev/mapper/kt-l$t" \
        "$PCW_SHARE/pc-$t.batches" $((PC_RS * 512)) 2>>"$CASELOG")
    rc=$?
    note "13 $kind: $(wc -l <"$PCW_SHARE/pc-$t.batches") batches started; $out"
    [ "$rc" -eq 0 ] || { why "$out"; return 1; }
    c12_unslice "$t"
}
c13_subcase() { subcase "13-qemu-killed-$1" c13_check "$@"; }
powercut_check() { c13_each c13_subcase; }

# ===========================================================================================
# Case 14: restarts under I/O. The daemon runs under fdstore.py (systemd's fd store and
# restart, by systemd's protocol: the guest has no systemd). 32 mirrors (core, disk,
# single-node clustered-core and integrated_flush disk, in turn), a writer on each (4 KiB
# O_DIRECT writes one region apart, five a second: every write costs its log a mark and a
# clear, and the guest's two vCPUs keep some room for the processes a restart starts), and the
# longest write each writer sees across each restart measured (INFO lines, from writer.py's
# records), beside the same for a stretch with no restart:
#   - upgrade: `dm-ulogd upgrade`, an exec of the binary in the same process;
#   - systemd: SIGTERM (systemctl restart), the socket stored, the next instance given it;
#   - plain, last: the service stopped (the fd store flushed, the socket closed) and a daemon
#     started afresh, as every restart was before handovers: the kernel's reconnect, measured
#     for comparison, and asserted only to end with every log served again.
# After the upgrade and the systemd restart the kernel must not have noticed: no "Userspace log
# server not found", no request timed out, no reconnect in its log, every log taken back, and
# every mirror still N/N (no region fell out of sync). At the end every writer has seen no I/O
# error, and each mirror's legs are identical. The mirrors, the writer and fdstore.py outlive
# each subcase (their names escape the subcases' cleanup); c14_teardown ends them after the case.
# ===========================================================================================
C14_N=32
C14_LEN=4096                      # 2 MiB mirrors
C14_RS=128                        # 64 KiB regions: 32 per mirror
case_14() {
    subcase 14-create c14_create || return 1
    subcase 14-upgrade c14_upgrade
    subcase 14-systemd-restart c14_systemd
    subcase 14-plain-restart c14_plain
    subcase 14-legs-identical c14_finish
    true # the verdicts are the subcases'
}
c14_devs() { local i; for ((i = 0; i < C14_N; i++)); do echo /dev/mapper/kt14-r$i; done; }
c14_create() {
    local i a b log spec="" nlog=0 args rc before
    # Into fdstore.py's care while no mirror waits on the daemon.
    rc=$(daemon_term) || return 1
    [ "$rc" = 0 ] || { why "dm-ulogd exited $rc on SIGTERM"; return 1; }
    before=$(serving_count)
    rm -f "$KT/ulogd.pid" "$KT/ulogd.rc"
    setsid python3 "$(dirname "$0")/fdstore.py" "$KT/notify.sock" "$KT/ulogd.pid" "$KT/ulogd.rc" "$ULOG" \
        "$BIN" --transport netlink --log-level info --single-node-clustered </dev/null >>"$CASELOG" 2>&1 &
    echo $! >"$KT/fdstore.pid"
    c14_serving_again "$before" || return 1
    for ((i = 0; i < C14_N; i++)); do
        a=/dev/ram$((8 + 2 * i))
        b=/dev/ram$((9 + 2 * i))
        log=/dev/ram$((72 + nlog))
        case $((i % 4)) in
        0) args="core $C14_RS" ;;
        1) args="disk $log $C14_RS" ;;
        2) args="clustered-core $C14_RS" ;;
        3) args="integrated_flush disk $log $C14_RS" ;;
        esac
        case $((i % 4)) in 1 | 3) zero_dev $log || return 1; nlog=$((nlog + 1)) ;; esac
        set -- $args
        spec+="${spec:+;}kt14-r$i,,,rw,0 $C14_LEN mirror userspace $(($# + 1)) KT14-$i $args 2 $a 0 $b 0"
    done
    must dmsetup create --concise "$spec" || return 1
    c14_all_in_sync 300 || return 1
    rm -f "$KT/c14.stop"
    setsid python3 "$(dirname "$0")/writer.py" latency "$KT/c14.stop" "$KT/c14.records" "$KT/c14.progress" \
        $((C14_RS * 512)) $((C14_LEN * 512)) 0.2 $(c14_devs) </dev/null >"$KT/c14.writer" 2>&1 &
    echo $! >"$KT/c14.writer.pid"
    c14_flowing "0 $(printf '0 %.0s' $(seq $C14_N))" 120 || return 1
    c14_window none sleep 2 || return 1
    C14_NONE=$WINDOW
    note "14 under this load a process costs: /bin/true $(c14_ms /bin/true) ms, dm-ulogd --version $(c14_ms "$BIN" --version) ms"
}
c14_ms() { # <command...>: its wall time in ms
    local t0
    t0=$(date +%s%N)
    "$@" >/dev/null 2>&1
    echo $((($(date +%s%N) - t0) / 1000000))
}
c14_all_in_sync() { # <seconds>: every kt14-r mirror N/N, from one `dmsetup status`
    local deadline=$((SECONDS + $1)) behind
    while :; do
        behind=$(timeout 120 dmsetup status | awk '/^kt14-r/ { split($8, r, "/"); if (r[1] != r[2] || r[2] == "") print $1, $8 }')
        [ -n "$behind" ] || return 0
        [ "$SECONDS" -lt "$deadline" ] || { why "not in sync after $1 s: $(echo $behind | head -c 300)"; return 1; }
        sleep 1
    done
}
c14_still_in_sync() { # right after a restart: no mirror below N/N
    local behind
    behind=$(timeout 120 dmsetup status | awk '/^kt14-r/ { split($8, r, "/"); if (r[1] != r[2]) print $1, $8 }')
    [ -z "$behind" ] || { why "regions fell out of sync across the $1: $(echo $behind | head -c 300)"; return 1; }
}
c14_flowing() { # <progress line> <seconds>: every writer completed two writes since that line
    local base now deadline=$((SECONDS + $2)) i ok
    read -r -a base <<<"$1"
    while :; do
        read -r -a now 2>/dev/null <"$KT/c14.progress" || now=()
        ok=1
        for ((i = 1; i <= C14_N; i++)); do
            [ "${now[$i]:-0}" -ge $((${base[$i]:-0} + 2)) ] || { ok=0; break; }
        done
        [ "$ok" = 1 ] && return 0
        [ "$SECONDS" -lt "$deadline" ] || { why "writer $i made no progress within $2 s: $(cat "$KT/c14.writer")"; return 1; }
        sleep 0.2
    done
}
c14_window() { # <name> <command...>: runs it under I/O; WINDOW="from to" (wall clock)
    local name=$1 base from
    shift
    sleep 2 # writes in full flow before
    base=$(cat "$KT/c14.progress")
    from=$(date +%s.%N)
    "$@" || return 1
    c14_flowing "$base" 120 || return 1
    sleep 1
    WINDOW="$from $(date +%s.%N)"
    echo "$name window: $WINDOW"
}
c14_quiet_kernel() { # <what>: dm-log-userspace said nothing of a lost server since the mark
    local said
    said=$(ksince | grep -E 'log server not found|timed out|Reconnected|Attempting to contact' | head -n 3 | tr '\n' ';')
    [ -z "$said" ] || { why "the kernel noticed the $1: $said"; return 1; }
}
c14_serving_again() { # <serving count before>: a new instance says it serves
    local i
    for i in $(seq 300); do
        [ "$(serving_count)" -gt "$1" ] && return 0
        sleep 0.1
    done
    why "no instance serving within 30 s: $(tail -n 3 "$ULOG" | tr '\n' ' ')"
}
c14_served() { # <seconds>: the daemon serves all C14_N logs
    local deadline=$((SECONDS + $1)) n
    while :; do
        n=$("$BIN" status --json 2>/dev/null | grep -c '"uuid": "KT14-')
        [ "$n" = "$C14_N" ] && return 0
        [ "$SECONDS" -lt "$deadline" ] || { why "the daemon serves $n of the $C14_N logs after $1 s"; return 1; }
        sleep 0.5
    done
}
c14_taken_back() { # the last start took every log back
    [ "$(grep 'logs handed over by the previous daemon taken back' "$ULOG" | tail -n 1 | grep -o 'logs=[0-9]*')" = "logs=$C14_N" ] ||
        { why "the new instance did not take the $C14_N logs back: $(grep 'taken back' "$ULOG" | tail -n 1)"; return 1; }
}
c14_upgrade() {
    kmark
    c14_window upgrade must "$BIN" upgrade || return 1
    C14_UPGRADE=$WINDOW
    c14_quiet_kernel upgrade && c14_still_in_sync upgrade && c14_taken_back
}
c14_systemd() {
    local before
    kmark
    before=$(serving_count)
    c14_window systemd c14_systemd_restart "$before" || return 1
    C14_SYSTEMD=$WINDOW
    c14_quiet_kernel "systemd restart" && c14_still_in_sync "systemd restart" && c14_taken_back || return 1
    grep -q 'socket stored with systemd' "$ULOG" ||
        { why "the daemon did not store its socket with (fdstore.py as) systemd"; return 1; }
}
c14_systemd_restart() { kill -TERM "$(daemon_pid)" && c14_serving_again "$1"; }
c14_plain() {
    kmark
    c14_window plain c14_plain_restart || return 1
    C14_PLAIN=$WINDOW
    c14_served 120 || return 1
    note "14 kernel across the plain restart: $(ksince | grep -cE 'log server not found') 'server not found', $(ksince | grep -cE 'timed out') 'timed out', $(ksince | grep -cE 'Reconnected') reconnects"
}
c14_plain_restart() { c14_back_to_plain; }
c14_finish() {
    local i a b bad="" name window stall
    touch "$KT/c14.stop"
    wait_pids 120 "$(cat "$KT/c14.writer.pid")" || { why "the writer failed: $(cat "$KT/c14.writer")"; return 1; }
    rm -f "$KT/c14.writer.pid"
    cat "$KT/c14.writer"
    for name in none upgrade systemd plain; do
        case $name in none) window=$C14_NONE ;; upgrade) window=$C14_UPGRADE ;; systemd) window=$C14_SYSTEMD ;; plain) window=$C14_PLAIN ;; esac
        [ -n "${window:-}" ] || continue
        stall=$(python3 "$(dirname "$0")/writer.py" stalls "$KT/c14.records" $C14_N $window)
        note "14 stall $name: longest write $(cut -d' ' -f1 <<<"$stall") ms, median of the $C14_N mirrors' longest $(cut -d' ' -f2 <<<"$stall") ms"
    done
    c14_all_in_sync 300 || return 1
    for ((i = 0; i < C14_N; i++)); do
        a=/dev/ram$((8 + 2 * i))
        b=/dev/ram$((9 + 2 * i))
        cmp -s <(get $a 0 $((C14_LEN * 512))) <(get $b 0 $((C14_LEN * 512))) || bad+=" kt14-r$i"
    done
    [ -z "$bad" ] || { why "legs differ:$bad"; return 1; }
}
c14_teardown() { # after the case: the writer stopped, a plain daemon back, the mirrors removed
    local names
    if [ -f "$KT/c14.writer.pid" ]; then
        touch "$KT/c14.stop"
        wait_pids 120 "$(cat "$KT/c14.writer.pid")"
        rm -f "$KT/c14.writer.pid"
    fi
    c14_back_to_plain
    names=$(dmsetup ls 2>/dev/null | awk '/^kt14-/ { print $1 }')
    [ -z "$names" ] || timeout 300 dmsetup remove $names || echo "c14_teardown: could not remove $names"
}
c14_back_to_plain() { # fdstore.py stopped (systemctl stop: the store flushed), a plain daemon
    local pid
    pid=$(cat "$KT/fdstore.pid" 2>/dev/null) || return 0
    rm -f "$KT/fdstore.pid"
    kill -TERM "$pid" 2>/dev/null || return 0
    while running "$pid"; do sleep 0.1; done
    daemon_start
}

# ===========================================================================================
# Case 15: adopt and release under I/O (dm-ulogd adopt / release / list). Eight mirrors on the
# kernel's own logs: three core and four disk logs in sync, and one core log in mid-resync
# (its second leg behind a dm-delay device, so that the resync is slow). Then:
#   - the one in mid-resync is refused without --resync and left on its table, and adopted
#     with it (its resync starts over);
#   - a writer on each of the eight; a mirror LVM manages (uuid LVM-...) is refused and left
#     on its own table;
#   - `adopt --all`: the seven in sync on dm-ulogd's log of the same kind, N/N right after
#     (no resync of a region in sync), the one adopted already left as it is, and `list`
#     says dm-ulogd serves all eight;
#   - `release --all --resync`: back on the kernel's logs; the disk-log mirrors N/N right after
#     (the kernel's disk log loaded what dm-ulogd wrote);
#   - no writer saw an I/O error, every mirror ends N/N with identical legs.
# ===========================================================================================
C15_LEN=4096                      # 2 MiB mirrors, 64 KiB regions
C15_RS=128
case_15() { subcase 15-adopt-release c15_run; }
c15_names() { echo kt15-c0 kt15-c1 kt15-c2 kt15-d0 kt15-d1 kt15-d2 kt15-d3 kt15-slow; }
c15_leg() { # <name> <0|1>: the leg's device
    local i
    case $1 in kt15-c*) i=${1#kt15-c} ;; kt15-d*) i=$((3 + ${1#kt15-d})) ;; kt15-slow) i=7 ;; esac
    echo /dev/ram$((8 + 2 * i + $2))
}
c15_log_type() { timeout 60 dmsetup table "$1" | awk '{ print $4 }'; }
c15_ratio() { sync_ratio "$1"; }
c15_synced() { local r; r=$(c15_ratio "$1"); [ "${r%/*}" = "${r#*/}" ]; }
c15_run() {
    local name i out
    for i in 0 1 2; do
        create kt15-c$i "0 $C15_LEN mirror core 1 $C15_RS 2 $(c15_leg kt15-c$i 0) 0 $(c15_leg kt15-c$i 1) 0" || return 1
    done
    for i in 0 1 2 3; do
        zero_dev /dev/ram$((72 + i)) || return 1
        create kt15-d$i "0 $C15_LEN mirror disk 2 /dev/ram$((72 + i)) $C15_RS 2 $(c15_leg kt15-d$i 0) 0 $(c15_leg kt15-d$i 1) 0" || return 1
    done
    for name in kt15-c0 kt15-c1 kt15-c2 kt15-d0 kt15-d1 kt15-d2 kt15-d3; do wait_sync $name 120 || return 1; done
    # 512 regions of 8 sectors, each copied to a leg whose writes take 40 ms.
    create kt15-slowleg "0 $C15_LEN delay $(c15_leg kt15-slow 1) 0 0 $(c15_leg kt15-slow 1) 0 40" || return 1
    create kt15-slow "0 $C15_LEN mirror core 1 8 2 $(c15_leg kt15-slow 0) 0 /dev/mapper/kt15-slowleg 0" || return 1
    c15_synced kt15-slow && { why "kt15-slow finished its resync before the test could adopt it"; return 1; }
    out=$("$BIN" adopt kt15-slow 2>&1) && { why "a core mirror in mid-resync was adopted without --resync: $out"; return 1; }
    grep -q 'mid-resync' <<<"$out" || { why "the refusal does not say mid-resync: $out"; return 1; }
    [ "$(c15_log_type kt15-slow)" = core ] || { why "the refused mid-resync mirror's table changed"; return 1; }
    note "15 kt15-slow at $(c15_ratio kt15-slow) when adopted with --resync"
    must "$BIN" adopt --resync kt15-slow || return 1
    [ "$(c15_log_type kt15-slow)" = userspace ] || { why "kt15-slow not on a userspace log after adopt --resync"; return 1; }
    rm -f "$KT/c15.stop"
    setsid python3 "$(dirname "$0")/writer.py" latency "$KT/c15.stop" "$KT/c15.records" "$KT/c15.progress" \
        $((C15_RS * 512)) $((C15_LEN * 512)) 0.05 $(for name in $(c15_names); do echo /dev/mapper/$name; done) \
        </dev/null >"$KT/c15.writer" 2>&1 &
    echo $! >"$KT/c15.writer.pid"
    sleep 2

    # Refusals: each mirror stays as it was.
    create kt15-lvm "0 $C15_LEN mirror core 2 $C15_RS nosync 2 /dev/ram24 0 /dev/ram25 0" || return 1
    must dmsetup rename kt15-lvm --setuuid LVM-kt15test-fake-uuid || return 1
    out=$("$BIN" adopt kt15-lvm 2>&1) && { why "an LVM-managed mirror was adopted: $out"; return 1; }
    grep -q 'LVM manages it' <<<"$out" || { why "no word of LVM in the refusal: $out"; return 1; }
    [ "$(c15_log_type kt15-lvm)" = core ] || { why "the refused LVM mirror's table changed"; return 1; }
    remove kt15-lvm || return 1

    must "$BIN" adopt --all || return 1
    for name in $(c15_names); do
        [ "$(c15_log_type $name)" = userspace ] || { why "$name not on a userspace log after adopt: $(dmsetup table $name)"; return 1; }
    done
    for name in kt15-c0 kt15-c1 kt15-c2 kt15-d0 kt15-d1 kt15-d2 kt15-d3; do
        c15_synced $name || { why "$name at $(c15_ratio $name) right after adopt: a resync of regions in sync"; return 1; }
    done
    out=$("$BIN" list)
    echo "$out"
    [ "$(grep -c '^kt15-.* yes$' <<<"$out")" = 8 ] || { why "dm-ulogd list does not say all 8 are served: $out"; return 1; }
    sleep 3

    must "$BIN" release --all --resync || return 1
    for name in $(c15_names); do
        case $(c15_log_type $name) in core | disk) ;; *) why "$name not back on a kernel log: $(dmsetup table $name)"; return 1 ;; esac
    done
    for name in kt15-d0 kt15-d1 kt15-d2 kt15-d3; do
        c15_synced $name || { why "$name at $(c15_ratio $name) right after release: the kernel did not load dm-ulogd's disk log"; return 1; }
    done
    sleep 2
    touch "$KT/c15.stop"
    wait_pids 120 "$(cat "$KT/c15.writer.pid")" || { why "a writer failed: $(cat "$KT/c15.writer")"; return 1; }
    cat "$KT/c15.writer"
    for name in $(c15_names); do
        wait_sync $name 240 || return 1
        cmp -s <(get $(c15_leg $name 0) 0 $((C15_LEN * 512))) <(get $(c15_leg $name 1) 0 $((C15_LEN * 512))) ||
            { why "$name: the legs differ"; return 1; }
    done
    for name in $(c15_names) kt15-slowleg; do remove $name || return 1; done
    check_daemon
}

# ===========================================================================================
# Bench mode (tests/kernel/bench; not a test case, no verdicts): O_DIRECT sequential writes
# through a mirror whose log is (A) the kernel's own `disk`, (B) dm-ulogd `disk`, (C) dm-ulogd
# `disk` + integrated_flush, interleaved A B C A B C ... in one guest so that drift hits all
# three alike. The legs are whole brd RAM disks (16 MiB), the log another one, the regions
# 64 KiB (256 of them), the mirror created `nosync`: no resync traffic, and every write marks
# fresh regions (dm-mirror splits bios at region boundaries; a region is cleared, and leaves
# the region hash, once its writes complete). One line per measurement:
#   BENCH <workload> <A|B|C> <round> <bytes> <seconds> [<request>=<count> ...]
# seconds sums dd's own timings (no process start-up); the rest is from the daemon's metrics over
# the measurement: requests received by type, s_<type> the seconds from their arrival to their
# reply, commit_sum/commit_count the disk commits (written and fdatasync'ed).
# ===========================================================================================
BENCH_SECT=32768                  # 16 MiB: a whole brd RAM disk per leg
BENCH_RS=128                      # 64 KiB regions
BENCH_PASSES=4                    # passes over the mirror per measurement: 64 MiB
BENCH_PORT=9877
bench_table() { # <A|B|C>: the mirror's table (legs ram0 ram1, log ram2)
    local log
    case $1 in
    A) log="disk 3 /dev/ram2 $BENCH_RS nosync" ;;
    B) log="userspace 5 KTB-B disk /dev/ram2 $BENCH_RS nosync" ;;
    C) log="userspace 6 KTB-C integrated_flush disk /dev/ram2 $BENCH_RS nosync" ;;
    esac
    echo "0 $BENCH_SECT mirror $log 2 /dev/ram0 0 /dev/ram1 0"
}
bench_metrics() { # the daemon's counters of interest, one `key value` a line
    curl -s --max-time 10 "http://127.0.0.1:$BENCH_PORT/metrics" | awk '
        function req() { match($0, /request="[A-Z_]+"/); return substr($0, RSTART + 9, RLENGTH - 10) }
        /^dm_ulogd_requests_total\{/ { print req(), $NF }
        /^dm_ulogd_request_duration_seconds_sum\{/ { print "s_" req(), $NF }
        /^dm_ulogd_disk_commit_duration_seconds_(sum|count)/ { sub(/.*_seconds_/, "commit_", $1); print $1, $NF }'
}
bench_one() { # <workload> <bs> <count per pass> <A|B|C> <round>
    local wl=$1 bs=$2 count=$3 v=$4 round=$5 p out bytes=0 secs=0 before after deltas
    zero_dev /dev/ram2 || return 1
    create kt-bench "$(bench_table "$v")" || return 1
    before=$(bench_metrics)
    for ((p = 0; p < BENCH_PASSES; p++)); do
        out=$(dd if=/dev/zero of=/dev/mapper/kt-bench bs="$bs" count="$count" oflag=direct 2>&1) ||
            { why "dd $bs to $v failed: $out"; return 1; }
        # "16777216 bytes (17 MB, 16 MiB) copied, 0.25 s, 67 MB/s"
        read -r bytes secs <<<"$(echo "$out" | sed -n 's/^\([0-9]*\) bytes.* copied, \([0-9.e+-]*\) s, .*/\1 \2/p' |
            awk -v b="$bytes" -v s="$secs" '{ printf "%d %.6f", b + $1, s + $2 }')"
    done
    after=$(bench_metrics)
    deltas=$(awk 'NR == FNR { was[$1] = $2; next } $2 - was[$1] > 0 { printf " %s=%s", $1, $2 - was[$1] }' \
        <(echo "$before") <(echo "$after"))
    echo "status: $(status_words kt-bench)"
    remove kt-bench || return 1
    emit "BENCH $wl $v $round $bytes $secs$deltas"
}
bench() { # <rounds>
    local r wl v
    ip link set lo up || { why "cannot bring up lo for the metrics endpoint"; return 1; }
    for dev in /dev/ram0 /dev/ram1 /dev/ram2; do # brd allocates a page at its first write
        zero_dev "$dev" 16 || return 1
    done
    for ((r = 1; r <= $1; r++)); do
        for wl in "seq1m 1M 16" "seq64k 64K 256"; do
            for v in A B C; do
                bench_one $wl "$v" "$r" || return 1
            done
        done
    done
    check_daemon
}

# --- drivers -------------------------------------------------------------------------------

cleanup() { # after each case: a live daemon, nothing suspended, no test devices left
    daemon_alive || { echo "cleanup: restarting the daemon"; daemon_start; }
    local name attr
    while read -r name attr; do
        [[ $attr == *s* ]] && timeout 30 dmsetup resume "$name"
    done < <(dmsetup info -c --noheadings -o name,attr --separator ' ' 2>/dev/null | grep '^kt-')
    # Top down: mirrors, then the slices under them, then case 12's dm-log-writes device.
    for prefix in 'kt-[mb]' kt15-[cdsl] kt-l kt15-slowleg kt-w; do
        for name in $(dmsetup ls 2>/dev/null | awk -v p="^$prefix" '$1 ~ p { print $1 }'); do
            timeout 60 dmsetup remove --force "$name" || echo "cleanup: could not remove $name"
        done
    done
    losetup -D
}

setup_env() { # <bin> <share>
    BIN=$1
    SHARE=$2
    RESULTS=$SHARE/results.txt
    CASELOG=$SHARE/cases.log
    ULOG=$SHARE/ulogd.log
    mkdir -p "$KT"
}

case $MODE in
case)
    setup_env "$3" "$4"
    "case_$2"
    ;;
cleanup)
    setup_env "$2" "$3"
    { c14_teardown; cleanup; } >>"$CASELOG" 2>&1
    ;;
bench)
    setup_env "$2" "$3"
    : >"$RESULTS"
    t0=$SECONDS
    note "guest: kernel $(uname -r), $(nproc) vCPU, $(awk '/MemTotal/ { print $2 / 1024 " MiB" }' /proc/meminfo)"
    note "guest: dm-ulogd $("$BIN" --version 2>&1), dmsetup $(dmsetup version 2>&1 | tr '\n' ' ')"
    DAEMON_FLAGS="--metrics-listen $BENCH_PORT ${6:-}"
    if daemon_start >>"$CASELOG" 2>&1; then
        rm -f "$KT/why"
        bench "$5" >>"$CASELOG" 2>&1 || emit "FAIL bench: $(cat "$KT/why" 2>/dev/null || echo 'no reason recorded')"
        cleanup >>"$CASELOG" 2>&1
        daemon_alive && kill -TERM "$(daemon_pid)"
    else
        emit "FAIL daemon: $(cat "$KT/why")"
    fi
    dmesg >"$SHARE/dmesg.txt" 2>&1
    note "guest: the bench took $((SECONDS - t0)) s"
    emit "$4"
    sync
    ;;
cbench)
    setup_env "$2" "$3"
    . "$(dirname "$0")/cbench.sh"
    : >"$RESULTS"
    t0=$SECONDS
    note "guest: kernel $(uname -r), $(nproc) vCPU, $(awk '/MemTotal/ { print $2 / 1024 " MiB" }' /proc/meminfo)"
    note "guest: dm-ulogd $("$BIN" --version 2>&1), $(corosync -v | head -n1)"
    ip link set lo up
    rm -f "$KT/why"
    cbench "$5" >>"$CASELOG" 2>&1 || emit "FAIL cbench: $(cat "$KT/why" 2>/dev/null || echo 'no reason recorded')"
    # After a failure a mirror may still wait on a daemon: the guest powers off regardless.
    daemon_alive && kill -TERM "$(daemon_pid)"
    corosync_stop
    dmesg >"$SHARE/dmesg.txt" 2>&1
    note "guest: the bench took $((SECONDS - t0)) s"
    emit "$4"
    sync
    ;;
powercut-write | powercut-check)
    # guest.sh powercut-write|powercut-check <dm-ulogd> <share> <sentinel> <write boot's share>
    setup_env "$2" "$3"
    PCW_SHARE=$5
    : >"$RESULTS"
    if ! daemon_start >>"$CASELOG" 2>&1; then
        emit "FAIL daemon: $(cat "$KT/why")"
    elif [ "$MODE" = powercut-write ]; then
        rm -f "$KT/why"
        powercut_write || emit "FAIL 13-powercut-write: $(cat "$KT/why" 2>/dev/null)"
    else
        powercut_check
    fi
    dmesg >"$SHARE/dmesg.txt" 2>&1
    emit "$4"
    sync
    ;;
main)
    setup_env "$2" "$3"
    SENTINEL=$4
    shift 4
    : >"$RESULTS"
    t0=$SECONDS
    head -c $((32 * MIB)) /dev/urandom >"$KT/rand"
    if [ "${KTEST_SNIFF:-0}" = 1 ]; then
        setsid python3 "$(dirname "$0")/nlsniff.py" "$SHARE/requests.log" </dev/null >/dev/null 2>&1 &
        note "guest: request sniffer running (diagnostics; changes the kill timings)"
    fi
    note "guest: kernel $(uname -r), $(nproc) vCPU, $(awk '/MemTotal/ { print $2 / 1024 " MiB" }' /proc/meminfo)"
    note "guest: dm-ulogd $("$BIN" --version 2>&1), dmsetup $(dmsetup version 2>&1 | tr '\n' ' ')"
    if ! daemon_start >>"$CASELOG" 2>&1; then
        emit "FAIL daemon: $(cat "$KT/why")"
    else
        declare -A LIMIT=([1]=420 [2]=420 [3]=420 [4]=600 [5]=420 [6]=900 [7]=180 [8]=420 [9]=420 [10]=900 [11]=420 [12]=900)
        for c in "$@"; do
            cs=$SECONDS
            timeout -k 5 "${LIMIT[$c]:-600}" bash "$0" case "$c" "$BIN" "$SHARE"
            rc=$?
            [ "$rc" -eq 0 ] || emit "FAIL case-$c: exited $rc$([ $rc -ge 124 ] && echo " (timed out after ${LIMIT[$c]:-600} s)")"
            note "case $c took $((SECONDS - cs)) s"
            timeout -k 5 300 bash "$0" cleanup "$BIN" "$SHARE" || emit "FAIL cleanup after case $c: rc $?"
        done
        # The kernel must not have complained about anything worse than the expected.
        if dmesg | grep -E 'BUG:|WARNING:|Oops|Call Trace|general protection' >/dev/null; then
            emit "FAIL kernel-log: $(dmesg | grep -E -m1 'BUG:|WARNING:|Oops|Call Trace|general protection')"
        fi
        if grep -q 'panicked' "$ULOG"; then
            emit "FAIL daemon-log: $(grep -m1 'panicked' "$ULOG")"
        fi
        daemon_alive && kill -TERM "$(daemon_pid)"
    fi
    dmesg >"$SHARE/dmesg.txt" 2>&1
    note "guest: all cases took $((SECONDS - t0)) s"
    emit "$SENTINEL"
    sync
    ;;
esac
