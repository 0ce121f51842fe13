#!/usr/bin/env bash
# Pins every IRQ of a network interface to a CPU list (the cores NOT running gateway workers).
# Usage: sudo tuning/irq-affinity.sh IFACE CPULIST      e.g. sudo tuning/irq-affinity.sh eth0 4-7
# Stop irqbalance first (systemctl stop irqbalance) or it will undo this.
set -euo pipefail
IFACE=${1:?interface}; CPUS=${2:?cpu list}
irqs=$(grep -E "$IFACE" /proc/interrupts | awk -F: '{print $1}' | tr -d ' ')
[ -n "$irqs" ] || { echo "no IRQs found for $IFACE in /proc/interrupts" >&2; exit 1; }
for irq in $irqs; do
  echo "$CPUS" > /proc/irq/$irq/smp_affinity_list
  echo "irq $irq -> cpus $(cat /proc/irq/$irq/smp_affinity_list)"
done
