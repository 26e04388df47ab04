#!/bin/bash
# stop-rgw.sh DIR [--purge] — stop the cluster that start-rgw.sh made in DIR.
#
# Each daemon is signalled by the pid recorded in DIR (checked against
# /proc/PID/cmdline first, so a reused pid is never hit) with SIGTERM, one
# after the other: radosgw, ceph-osd, ceph-mon (radosgw's shutdown needs the
# OSD; the OSD says goodbye to the mon, so the mon marks it down and a later
# start is quick); one still there after RGW_STOP_WAIT s (default 20) gets SIGKILL.
# With --purge every daemon gets SIGKILL at once (nothing worth saving) and
# DIR's contents are deleted (only if DIR carries start-rgw.sh's marker).
# Idempotent: stopping a stopped cluster is a no-op.
set -uo pipefail
DIR=${1:?usage: stop-rgw.sh DIR [--purge]}
PURGE=${2:-}
WAIT=${RGW_STOP_WAIT:-20}
[ -d "$DIR" ] || { echo "stop-rgw: $DIR does not exist, nothing to stop" >&2; exit 0; }
DIR=$(cd "$DIR" && pwd)
if [ ! -f "$DIR/.vmquiesce-test-rgw" ]; then
  [ -z "$(ls -A "$DIR")" ] && exit 0
  echo "stop-rgw: $DIR is not a start-rgw.sh directory" >&2; exit 1
fi
RUN=$DIR/run
[ ${#RUN} -gt 80 ] && RUN=/tmp/rgw-$(echo -n "$DIR" | md5sum | cut -c1-12)   # same rule as start-rgw.sh

pid_of() { # pid_of NAME PATTERN -> prints the recorded pid if it is that daemon
  local pf=$RUN/$1.pid p
  [ -s "$pf" ] || return 1
  p=$(cat "$pf")
  running "$p" && tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q -- "$2" && echo "$p"
}
# "gone" includes zombie: PID 1 on these machines reaps orphans only after a
# second or two, and /proc/PID stays until then
running() { local st; st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || return 1; [ "${st%% *}" != Z ]; }
declare -A PID
signal() { # signal NAME PATTERN SIG
  local p
  if p=$(pid_of "$1" "$2"); then PID[$1]=$p; kill -"$3" "$p" 2>/dev/null; else rm -f "$RUN/$1.pid"; fi
}
reap() { # reap NAME : wait for the signalled daemon to go away
  local p=${PID[$1]:-} i
  [ -n "$p" ] || return 0
  for ((i = 0; i < WAIT * 10; i++)); do running "$p" || break; sleep 0.1; done
  if running "$p"; then
    echo "stop-rgw: $1 (pid $p) still there after ${WAIT}s, SIGKILL" >&2
    kill -KILL "$p" 2>/dev/null
    for ((i = 0; i < 50; i++)); do running "$p" || break; sleep 0.1; done
  elif [ "$1" = osd.0 ] && [ "$PURGE" != --purge ]; then
    touch "$DIR/osd.clean"   # a memstore OSD has written its RAM contents out
  fi
  rm -f "$RUN/$1.pid"
  echo "stop-rgw: stopped $1 (pid $p)" >&2
}

if [ "$PURGE" = --purge ]; then SIG=KILL; else SIG=TERM; fi
# one after the other: radosgw's shutdown still talks to the OSD (it hangs
# if the OSD goes at the same time), and the OSD says goodbye to the mon
signal client.rgw.a radosgw "$SIG"; reap client.rgw.a
signal osd.0 ceph-osd "$SIG"; reap osd.0
signal mon.a ceph-mon "$SIG"; reap mon.a

if [ "$PURGE" = --purge ]; then
  find "$DIR" -mindepth 1 -delete
  [ "$RUN" != "$DIR/run" ] && rm -rf "$RUN"
  echo "stop-rgw: purged $DIR" >&2
fi
exit 0
