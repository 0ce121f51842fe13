#!/usr/bin/env bash
# Pins every IRQ of a network interface to a CPU list (the cores NOT running gateway workers).
# Usage: sudo tuning/irq-affinity.sh IFACE CPULIST      e.g. sudo tuning/irq-affinity.sh eth0 4-7
#        sudo tuning/irq-affinity.sh --revert           puts the saved affinities back
# Stop irqbalance first (systemctl stop irqbalance) or it will undo this.
# Each IRQ's previous smp_affinity_list is saved as "irq N OLD" in $STATE (default
# /var/lib/coregate/tuning.state, shared with apply.sh; the first save of an IRQ wins).
# ROOT=DIR prefixes the /proc paths (tests use a fake tree; then no root is needed).
set -euo pipefail
ROOT=${ROOT:-}
STATE=${STATE:-/var/lib/coregate/tuning.state}
# --revert restores only the irq lines (other lines stay); apply.sh does the restoring for both.
if [ "${1:-}" = --revert ]; then exec bash "$(dirname "$0")/apply.sh" --revert irq; fi
IFACE=${1:?interface}; CPUS=${2:?cpu list}
if [ -z "$ROOT" ] && [ "$EUID" -ne 0 ]; then
  echo "$0: writing /proc/irq needs root: run it with sudo" >&2; exit 1
fi
irqs=$(grep -E "$IFACE" "$ROOT/proc/interrupts" | awk -F: '{print $1}' | tr -d ' ' || true)
[ -n "$irqs" ] || { echo "no IRQs found for $IFACE in $ROOT/proc/interrupts" >&2; exit 1; }
mkdir -p "$(dirname "$STATE")"; touch "$STATE"
for irq in $irqs; do
  f=$ROOT/proc/irq/$irq/smp_affinity_list
  awk -v n="$irq" '$1=="irq" && $2==n {f=1} END {exit !f}' "$STATE" || echo "irq $irq $(<"$f")" >> "$STATE"
  echo "$CPUS" > "$f"
  echo "irq $irq -> cpus $(<"$f")"
done
