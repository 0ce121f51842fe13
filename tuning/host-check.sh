#!/usr/bin/env bash
# Read-only report of the host settings that matter to coregate. Changes nothing.
set -u
say() { printf '%-38s %s\n' "$1" "$2"; }
say "kernel" "$(uname -r)"
say "cores (online)" "$(nproc)"
v=$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo "n/a (kernel < 6.6: enabled)")
say "kernel.io_uring_disabled" "$v (0 = available)"
say "open files (ulimit -n)" "$(ulimit -n)"
for k in net.core.somaxconn net.ipv4.tcp_max_syn_backlog net.ipv4.ip_local_port_range \
         net.ipv4.tcp_tw_reuse net.core.netdev_max_backlog fs.file-max; do
  say "$k" "$(sysctl -n $k 2>/dev/null | tr '\t' ' ')"
done
g=$(cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null || echo n/a)
say "cpu0 governor" "$g (performance is steadiest)"
if [ -r /proc/interrupts ]; then
  n=$(grep -cE 'eth|ens|enp|mlx|virtio' /proc/interrupts)
  say "NIC interrupt lines" "$n (see irq-affinity.sh)"
fi
