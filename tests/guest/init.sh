#!/bin/busybox sh
# PID 1 of the VmQuiesce test guest (busybox sh; no udev, no systemd).
# Duties: virtio drivers, data disks mounted, qemu-ga on its virtio port, then one readiness line on
# the serial console that hosts wait for. Kernel parameter vmquiesce.disks=N says how many data disks
# (vda, vdb, ...) to wait for and mount on /mnt/data, /mnt/data1, ...; the default is 1.
# vmquiesce.agent=respawn (default) restarts qemu-ga when it dies, as a service manager would (a new
# qemu-ga finds its frozen-state file and can still thaw); vmquiesce.agent=once leaves it dead.

/bin/busybox mkdir -p /proc /sys /dev /run /tmp /mnt /usr/bin /usr/sbin /sbin
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
# The initramfs has no /dev/console node, so the kernel could not give PID 1 a console: take it now.
exec </dev/console >/dev/console 2>&1
/bin/busybox --install -s
/bin/busybox mkdir -p /var && /bin/busybox ln -s /run /var/run
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
hostname vmquiesce-guest

fail() {
    # One line the host can match, then end the VM so a test fails at once instead of timing out.
    echo "VMQUIESCE-GUEST-FAILED: $*"
    sync
    poweroff -f
}

# Module order comes from the builder (dependencies first); see /etc/vmquiesce-modules.
while read -r module; do
    insmod "/lib/modules/$module.ko" || fail "insmod $module failed"
done < /etc/vmquiesce-modules

disks=1
agent_mode=respawn
for parameter in $(cat /proc/cmdline); do
    case "$parameter" in
        vmquiesce.disks=*) disks="${parameter#vmquiesce.disks=}" ;;
        vmquiesce.agent=*) agent_mode="${parameter#vmquiesce.agent=}" ;;
    esac
done

# Devices appear asynchronously after insmod: wait for each with a deadline (tenths of a second).
wait_for() {
    description="$1"; shift
    tries=300
    until "$@"; do
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] || fail "timed out waiting for $description"
        usleep 100000
    done
}

agent_port_path() {
    for name_file in /sys/class/virtio-ports/vport*/name; do
        [ -r "$name_file" ] || continue
        if [ "$(cat "$name_file")" = org.qemu.guest_agent.0 ]; then
            port="${name_file%/name}"
            echo "/dev/${port##*/}"
            return 0
        fi
    done
    return 1
}
agent_port_present() { agent_port=$(agent_port_path) && [ -c "$agent_port" ]; }

index=0
mounts=""
while [ "$index" -lt "$disks" ]; do
    device=/dev/vd$(echo abcdefghijklmnopqrstuvwxyz | cut -c$((index + 1)))
    if [ "$index" -eq 0 ]; then target=/mnt/data; else target=/mnt/data$index; fi
    wait_for "$device" test -b "$device"
    mkdir -p "$target"
    mount -t ext4 "$device" "$target" || fail "mount $device on $target failed"
    mounts="$target $mounts"
    index=$((index + 1))
done

wait_for "the virtio port org.qemu.guest_agent.0" agent_port_present

# qemu-ga's guest-shutdown runs /sbin/shutdown, which busybox lacks. poweroff without -f would signal
# PID 1, a plain shell here, so the script powers off itself after flushing and unmounting.
cat > /sbin/shutdown <<EOF
#!/bin/sh
sync
umount $mounts
case " \$* " in
    *" -r "*) reboot -f ;;
    *) poweroff -f ;;
esac
EOF
chmod 755 /sbin/shutdown

# Ready means qemu-ga holds the port open, not merely that it was started.
agent_has_port_open() {
    [ -d "/proc/$agent_pid" ] || fail "qemu-ga exited before opening $agent_port"
    for descriptor in /proc/"$agent_pid"/fd/*; do
        [ "$(readlink "$descriptor")" = "$agent_port" ] && return 0
    done
    return 1
}
start_agent() {
    qemu-ga -m virtio-serial -p "$agent_port" -t /run &
    agent_pid=$!
    wait_for "qemu-ga to open $agent_port" agent_has_port_open
}

start_agent
read -r uptime _ < /proc/uptime
echo "VMQUIESCE-GUEST-READY disks=$disks agent=$agent_port uptime=$uptime"

while true; do
    wait "$agent_pid"
    echo "VMQUIESCE-GUEST-AGENT-EXITED status=$?"
    [ "$agent_mode" = respawn ] || break
    sleep 1  # throttles a qemu-ga that dies at once
    start_agent
    echo "VMQUIESCE-GUEST-AGENT-RESTARTED pid=$agent_pid"
done
# PID 1 must never exit (that would panic the kernel); it only reaps orphans from here on.
while true; do
    wait
    sleep 3600
done
