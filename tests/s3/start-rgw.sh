#!/bin/bash
# start-rgw.sh — the S3 server of VmQuiesce's tests (from the prototype in shared/notes/rgw-proto; every
# setting and pitfall is explained in s3-test-server.md there). Brings up a throw-away single-node Ceph cluster (1 mon, 1 osd,
# no mgr) plus a RADOS Gateway (S3) on 127.0.0.1, as plain processes (no
# systemd, no cephadm, no containers). Debian 12 (bookworm), run as root.
#
#   start-rgw.sh DIR [PORT]
#
# DIR   state directory (created; everything of the cluster lives below it).
# PORT  S3 HTTP port on 127.0.0.1 (default 7480). The monitor uses PORT+1
#       unless RGW_MON_PORT is set; the OSD takes free ports in 6800-7300.
#
#   start-rgw.sh --install   only installs the packages when they are missing (build.ps1 runs it):
#                            exit 0 when they are there, 3 (reason on stderr) when they cannot be installed.
#
# Environment (all optional):
#   RGW_STORE        memstore (default: data in RAM, kept across a clean stop)
#                    or bluestore (sparse file DIR/osd/block, RSS bounded)
#   RGW_STORE_BYTES  memstore capacity / bluestore file size (default 4 GiB / 20 GiB)
#   RGW_ACCESS_KEY, RGW_SECRET_KEY   S3 keys of user "test" (default: random,
#                    generated once and kept in DIR)
#   RGW_NO_INSTALL=1 never run apt-get (fail if packages are missing)
#   RGW_TIMEOUT      seconds to wait for the gateway (default 120)
#   RGW_OWNER_PID    a process (a test run) whose end purges the cluster, even when it is killed and
#                    cannot clean up itself: a detached watcher polls for it once a second
#
# Idempotent: a running cluster in DIR is left alone; a stopped one is
# restarted with its data; a half-made one (no DIR/.complete) is wiped and
# re-created. DIR is only ever wiped if it is empty or carries our marker.
#
# On success prints shell-sourceable lines (also written to DIR/env):
#   S3_ENDPOINT=http://127.0.0.1:PORT  AWS_ACCESS_KEY_ID=...  AWS_SECRET_ACCESS_KEY=...
#   AWS_DEFAULT_REGION=us-east-1  S3_FORCE_PATH_STYLE=true
# Progress goes to stderr. Stop with stop-rgw.sh DIR [--purge].
set -euo pipefail

INSTALL_ONLY=
if [ "${1:-}" = --install ]; then INSTALL_ONLY=1; set -- /nonexistent; fi
DIR=${1:?usage: start-rgw.sh DIR [PORT] | --install}
PORT=${2:-7480}
MON_PORT=${RGW_MON_PORT:-$((PORT + 1))}
STORE=${RGW_STORE:-memstore}
TIMEOUT=${RGW_TIMEOUT:-120}
MARK=.vmquiesce-test-rgw

us() { echo "${EPOCHREALTIME/[.,]/}"; }   # bash 5: microseconds, no bc/date needed
T_START=$(us)
log() { local d=$((($(us) - T_START) / 10000)); printf '[start-rgw %3d.%02ds] %s\n' $((d / 100)) $((d % 100)) "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

case $STORE in memstore|bluestore) ;; *) die "RGW_STORE must be memstore or bluestore";; esac
case $PORT$MON_PORT in *[!0-9]*) die "ports must be numbers";; esac

# ---------------------------------------------------------------- packages
PKGS="radosgw ceph-mon ceph-osd"
need_install=
for b in radosgw radosgw-admin ceph-mon ceph-osd ceph-authtool monmaptool ceph uuidgen; do
  command -v "$b" >/dev/null 2>&1 || need_install=1
done
if [ -n "$need_install" ]; then
  unavailable() { echo "$*" >&2; exit 3; }
  [ -z "${RGW_NO_INSTALL:-}" ] || die "ceph packages missing and RGW_NO_INSTALL is set (build.ps1 -Task Test installs them)"
  [ "$(id -u)" = 0 ] || unavailable "The packages $PKGS are missing and this is not root: run 'apt-get install --no-install-recommends $PKGS uuid-runtime' as root, or run the build as root."
  command -v apt-get >/dev/null 2>&1 || unavailable "The packages $PKGS are missing and there is no apt-get (the S3 test server needs Debian's Ceph)."
  log "installing $PKGS (apt-get, --no-install-recommends)"
  export DEBIAN_FRONTEND=noninteractive
  # (uuid-runtime comes with ceph-base anyway; named for uuidgen used below)
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends $PKGS uuid-runtime >&2
  log "packages installed"
fi
[ -z "$INSTALL_ONLY" ] || exit 0
[ "$(id -u)" = 0 ] || die "must run as root"

# ---------------------------------------------------------------- helpers
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
CONF=$DIR/ceph.conf
export CEPH_CONF=$CONF
# unix sockets are limited to 107 bytes: keep them short if DIR is deep
RUN=$DIR/run
if [ ${#RUN} -gt 80 ]; then RUN=/tmp/rgw-$(echo -n "$DIR" | md5sum | cut -c1-12); fi

alive() { # alive NAME  -> pid file exists and that pid is this daemon
  local pf=$RUN/$1.pid p
  [ -s "$pf" ] || return 1
  p=$(cat "$pf")
  # a zombie (PID 1 here reaps orphans late) has an empty cmdline: not alive
  [ -d /proc/$p ] && tr '\0' ' ' </proc/$p/cmdline 2>/dev/null | grep -q -- "$2"
}
port_busy() { (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null; }
http_ok() { # 200 from GET / on the gateway, using bash /dev/tcp (no curl needed)
  ( exec 3<>/dev/tcp/127.0.0.1/$PORT || exit 1
    printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
    IFS= read -r -t 2 line <&3 || exit 1
    case $line in "HTTP/1."?" 200"*) exit 0;; esac
    exit 1 ) 2>/dev/null
}
# launch NAME BINARY ARGS... : run a daemon in the foreground (-f) in its own
# session, detached from our stdio; we record its pid ourselves (radosgw in
# daemon mode writes its pid file only late, which makes waiting racy)
# (the pid is written from inside the new session: $! would be setsid's own
# pid whenever setsid has to fork, e.g. when the caller has job control on)
launch() {
  local name=$1; shift
  rm -f "$RUN/$name.pid"
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$RUN/$name.pid" "$@" -f </dev/null >>"$DIR/log/$name.out" 2>&1 &
  local i; for ((i = 0; i < 50; i++)); do [ -s "$RUN/$name.pid" ] && break; sleep 0.02; done
  log "$1 started (pid $(cat "$RUN/$name.pid" 2>/dev/null))"
}
wait_gateway() {
  local t=0
  until http_ok; do
    alive client.rgw.a radosgw || die "radosgw exited; see $DIR/log/client.rgw.a.log"
    alive osd.0 ceph-osd || die "ceph-osd exited; see $DIR/log/osd.0.log"
    alive mon.a ceph-mon || die "ceph-mon exited; see $DIR/log/mon.a.log"
    t=$((t + 1)); [ $t -le $((TIMEOUT * 10)) ] || die "gateway not answering after ${TIMEOUT}s; see $DIR/log"
    sleep 0.1
  done
  log "gateway answers on 127.0.0.1:$PORT"
}
print_env() {
  cat "$DIR/env"
}
start_daemons() {
  mkdir -p "$RUN"
  if ! alive mon.a ceph-mon; then
    port_busy "$MON_PORT" && die "monitor port $MON_PORT is in use by something else"
    launch mon.a ceph-mon -c "$CONF" -i a
  fi
  if ! alive osd.0 ceph-osd; then
    rm -f "$DIR/osd.clean"   # stop-rgw.sh writes it after a clean OSD exit
    launch osd.0 ceph-osd -c "$CONF" -i 0
  fi
  if ! alive client.rgw.a radosgw; then
    port_busy "$PORT" && die "S3 port $PORT is in use by something else"
    launch client.rgw.a radosgw -c "$CONF" -n client.rgw.a
  fi
  wait_gateway
}
kill_all() {
  local n
  for n in client.rgw.a:radosgw osd.0:ceph-osd mon.a:ceph-mon; do
    if alive "${n%%:*}" "${n#*:}"; then kill -KILL "$(cat "$RUN/${n%%:*}.pid")" 2>/dev/null || true; fi
  done
  sleep 0.3
}

# ---------------------------------------------------------------- already there?
if [ -f "$DIR/.complete" ]; then
  # the existing cluster's settings win over the arguments
  OLD_PORT=$(sed -n 's/^PORT=//p' "$DIR/.complete")
  [ "$OLD_PORT" = "$PORT" ] || log "note: $DIR was made for port $OLD_PORT; using that, not $PORT"
  PORT=$OLD_PORT; MON_PORT=$(sed -n 's/^MON_PORT=//p' "$DIR/.complete")
  RUN=$(sed -n 's/^RUN=//p' "$DIR/.complete"); STORE=$(sed -n 's/^STORE=//p' "$DIR/.complete")
  if alive mon.a ceph-mon && alive osd.0 ceph-osd && alive client.rgw.a radosgw && http_ok; then
    log "already running in $DIR"
    print_env; exit 0
  fi
  if [ "$STORE" = memstore ] && ! alive osd.0 ceph-osd && [ ! -f "$DIR/osd.clean" ]; then
    # memstore keeps objects in RAM and writes them out only on a clean stop:
    # after a kill/crash/reboot its on-disk copy is stale, so start over
    log "memstore OSD was not stopped cleanly: its data is lost; re-creating the cluster (same keys)"
    kill_all
    rm -f "$DIR/.complete"
  else
    log "existing cluster in $DIR: (re)starting stopped daemons"
    start_daemons
    print_env; exit 0
  fi
fi

# ---------------------------------------------------------------- fresh cluster
# keep the S3 keys of a previous incarnation, so a test suite's env stays valid
if [ -f "$DIR/env" ]; then
  : "${RGW_ACCESS_KEY:=$(sed -n 's/^AWS_ACCESS_KEY_ID=//p' "$DIR/env")}"
  : "${RGW_SECRET_KEY:=$(sed -n 's/^AWS_SECRET_ACCESS_KEY=//p' "$DIR/env")}"
fi
if [ -n "$(ls -A "$DIR")" ]; then
  [ -f "$DIR/$MARK" ] || die "$DIR is not empty and not ours; refusing to wipe it"
  log "wiping half-made cluster in $DIR"
  kill_all
  find "$DIR" -mindepth 1 -delete
fi
port_busy "$PORT" && die "S3 port $PORT is in use by something else"
port_busy "$MON_PORT" && die "monitor port $MON_PORT is in use by something else"
touch "$DIR/$MARK"
mkdir -p "$DIR"/{log,mon,osd/0,crash} "$RUN"   # ceph-osd --mkfs aborts if osd/0 is missing

FSID=$(uuidgen); OSD_UUID=$(uuidgen)
# (no 'tr </dev/urandom | head': with pipefail the SIGPIPE of tr aborts the script)
rnd() { local x; x=$(LC_ALL=C tr -dc "$1" < <(head -c 8192 /dev/urandom)); echo "${x:0:$2}"; }
AK=${RGW_ACCESS_KEY:-$(rnd 'A-Z0-9' 20)}
SK=${RGW_SECRET_KEY:-$(rnd 'A-Za-z0-9' 40)}

if [ "$STORE" = memstore ]; then
  BYTES=${RGW_STORE_BYTES:-4294967296}
  STORE_CONF="osd objectstore = memstore
memstore device bytes = $BYTES
# memstore only writes its RAM contents to disk on a clean umount; the default
# fast shutdown skips umount, so a restart would find an empty store
osd fast shutdown = false"
else
  BYTES=${RGW_STORE_BYTES:-21474836480}
  STORE_CONF="osd objectstore = bluestore
bluestore block path = $DIR/osd/block
bluestore block create = true
bluestore block size = $BYTES
bluestore block db create = false
bluestore block wal create = false
# keep RSS small: fixed 64 MiB cache instead of autotuning to 4 GiB
bluestore cache autotune = false
bluestore cache size = 67108864
osd memory target = 939524096
# the sparse file lives on an ordinary filesystem
bdev enable discard = false"
fi

cat >"$CONF" <<EOF
# generated by start-rgw.sh — single-node throw-away test cluster
[global]
fsid = $FSID
mon host = v2:127.0.0.1:$MON_PORT
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
keyring = $DIR/\$name.keyring
run dir = $RUN
admin socket = $RUN/\$name.asok
# start-rgw.sh records the pids itself in $RUN/NAME.pid; ceph's own go here
pid file = $RUN/\$name.ceph.pid
log file = $DIR/log/\$name.log
crash dir = $DIR/crash
mon cluster log file = $DIR/log/cluster.log
# one OSD: pools of size 1, few PGs, no redundancy warnings
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
osd crush chooseleaf type = 0
mon allow pool delete = true
# mon refuses to run below 5% free disk by default
mon data avail warn = 2
mon data avail crit = 1
# commit map changes quickly (default batches for 1 s; RGW creates ~7 pools)
paxos propose interval = 0.01
paxos min wait = 0.001

[mon]
mon data = $DIR/mon/a
keyring = $DIR/mon/a/keyring
log to stderr = false
err to stderr = false

[osd]
osd data = $DIR/osd/0
osd crush initial weight = 1
# a killed radosgw leaves its watches on the control objects; until they time
# out (default 30 s) every bucket/user change waits for the dead watcher.
# Clients ping their watches every objecter tick (0.5 s here), so 5 s is safe
osd client watch timeout = 5
osd op num shards = 2
osd op num threads per shard = 2
log to stderr = false
err to stderr = false
$STORE_CONF

[client]
# a client that starts while the OSD is still booting learns of its "up" only
# at the next objecter tick (default every 5 s): tick faster
objecter tick interval = 0.5
# after a kill -9 the osdmap still shows the old OSD instance "up"; a client's
# first op to it is refused and is only re-targeted when it turns "laggy"
# (default 10 s), which is when the client fetches a fresh map
objecter timeout = 2

[client.rgw.a]
# tcp_nodelay: without it every small GET stalls ~40 ms (Nagle + delayed ACK)
rgw frontends = beast endpoint=127.0.0.1:$PORT tcp_nodelay=1
rgw thread pool size = 64
rgw enable apis = s3, s3website, admin
# reclaim space of deleted/overwritten multipart data after 5 min, not 2 h
rgw gc obj min wait = 300
rgw gc processor period = 300
log to stderr = false
err to stderr = false
EOF

# keys: the mon imports every key of its mkfs keyring into its auth database,
# so admin, osd.0 and rgw exist from the start (no 'ceph auth' round trips)
KR=$DIR/initial.keyring
ceph-authtool "$DIR/mon/a.keyring.tmp" --create-keyring --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$DIR/client.admin.keyring" --create-keyring --gen-key -n client.admin \
  --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
ceph-authtool "$DIR/osd.0.keyring" --create-keyring --gen-key -n osd.0 \
  --cap mon 'allow profile osd' --cap mgr 'allow profile osd' --cap osd 'allow *' >/dev/null
ceph-authtool "$DIR/client.rgw.a.keyring" --create-keyring --gen-key -n client.rgw.a \
  --cap mon 'allow rw' --cap osd 'allow rwx' --cap mgr 'allow rw' >/dev/null
cp "$DIR/mon/a.keyring.tmp" "$KR"
for k in client.admin osd.0 client.rgw.a; do ceph-authtool "$KR" --import-keyring "$DIR/$k.keyring" >/dev/null; done
rm -f "$DIR/mon/a.keyring.tmp"

monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" "$DIR/monmap" >/dev/null
ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$KR" >>"$DIR/log/mkfs.log" 2>&1 \
  || die "ceph-mon --mkfs failed; see $DIR/log/mkfs.log"
log "mon store created"
launch mon.a ceph-mon -c "$CONF" -i a

# register osd.0 (its key is already known to the mon)
OSD_ID=$(timeout 60 ceph --connect-timeout 30 osd new "$OSD_UUID" 0)
[ "$OSD_ID" = 0 ] || die "ceph osd new returned '$OSD_ID'"
ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$OSD_UUID" >>"$DIR/log/mkfs.log" 2>&1 \
  || die "ceph-osd --mkfs failed; see $DIR/log/mkfs.log"
log "osd.0 created ($STORE)"
launch osd.0 ceph-osd -c "$CONF" -i 0
# RGW creates its pools itself on first start
launch client.rgw.a radosgw -c "$CONF" -n client.rgw.a
wait_gateway

radosgw-admin -c "$CONF" user create --uid=test --display-name="test user" \
  --access-key="$AK" --secret-key="$SK" >"$DIR/user.json" 2>>"$DIR/log/radosgw-admin.log"
log "S3 user 'test' created"

cat >"$DIR/env" <<EOF
S3_ENDPOINT=http://127.0.0.1:$PORT
AWS_ACCESS_KEY_ID=$AK
AWS_SECRET_ACCESS_KEY=$SK
AWS_DEFAULT_REGION=us-east-1
S3_FORCE_PATH_STYLE=true
EOF
printf 'PORT=%s\nMON_PORT=%s\nRUN=%s\nSTORE=%s\n' "$PORT" "$MON_PORT" "$RUN" "$STORE" >"$DIR/.complete"
log "ready"
if [ -n "${RGW_OWNER_PID:-}" ]; then
  # The owner is identified by pid and start time (field 22 of stat), so a reused pid is not mistaken for it.
  owner_start() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20; }
  OWNER_START=$(owner_start "$RGW_OWNER_PID")
  [ -n "$OWNER_START" ] || die "RGW_OWNER_PID $RGW_OWNER_PID is not running"
  setsid bash -c 'while [ "$(sed "s/^.*) //" "/proc/$0/stat" 2>/dev/null | cut -d" " -f20)" = "$1" ]; do sleep 1; done; exec "$2" "$3" --purge' \
    "$RGW_OWNER_PID" "$OWNER_START" "$(cd "$(dirname "$0")" && pwd)/stop-rgw.sh" "$DIR" </dev/null >/dev/null 2>&1 &
  log "purged when process $RGW_OWNER_PID ends"
fi
print_env
