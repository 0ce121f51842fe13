#!/usr/bin/env bash
# Applies what `coregate tune` recommends, saving every previous value so that it can be undone.
# Usage: sudo tuning/apply.sh [sysctl|thp|governor|all]            (default all)
#        sudo tuning/apply.sh --revert [sysctl|thp|governor|all]   writes the saved values back
#   sysctl    the keys of sysctl.conf: numbers are only raised (never lowered), the ephemeral port
#             range is widened, tcp_tw_reuse set to 1
#   thp       transparent hugepages -> madvise (unless already madvise or never)
#   governor  every CPU's cpufreq governor -> performance
# Previous values go to $STATE (default /var/lib/coregate/tuning.state), one line per item
# ("sysctl KEY OLD", "file PATH OLD", "irq N OLD" from irq-affinity.sh). The first save of an item
# wins, so applying twice still reverts to the originals; `--revert` (all) also undoes
# irq-affinity.sh. Changes are runtime only: a reboot resets them too.
# ROOT=DIR prefixes every /proc and /sys path (tests use a fake tree; then no root is needed).
set -euo pipefail
ROOT=${ROOT:-}
STATE=${STATE:-/var/lib/coregate/tuning.state}
CONF=$(dirname "$0")/sysctl.conf

usage() { echo "usage: $0 [--revert] [sysctl|thp|governor|all]" >&2; exit 2; }
revert=0
if [ "${1:-}" = --revert ]; then revert=1; shift; fi
what=${1:-all}
# Which STATE lines each section owns (for --revert); `irq` is used by irq-affinity.sh --revert.
case $what in
  all) sel='^(sysctl|file|irq) ';;
  sysctl) sel='^sysctl ';;
  thp) sel='^file /sys/kernel/mm/transparent_hugepage/';;
  governor) sel='^file [^ ]*/scaling_governor ';;
  irq) [ $revert = 1 ] || { echo "IRQ affinity: use tuning/irq-affinity.sh IFACE CPULIST" >&2; exit 2; }
       sel='^irq ';;
  *) usage;;
esac
if [ -z "$ROOT" ] && [ "$EUID" -ne 0 ]; then
  echo "$0: writing /proc/sys and /sys (and reverting) needs root: run it with sudo" >&2; exit 1
fi

flat() { local v=$1; echo "${v//$'\t'/ }"; }  # a value on one line, tabs shown as spaces

# save KIND NAME OLD: records OLD unless the item is already in STATE (the oldest value wins).
save() {
  mkdir -p "$(dirname "$STATE")"
  if [ -f "$STATE" ] && awk -v k="$1" -v n="$2" '$1==k && $2==n {f=1} END {exit !f}' "$STATE"; then
    return
  fi
  printf '%s %s %s\n' "$1" "$2" "$3" >> "$STATE"
}

# put KIND NAME FILE OLD NEW: saves OLD, writes NEW into FILE, reports the change.
put() { save "$1" "$2" "$4"; printf '%s\n' "$5" > "$3"; echo "changed $2: $(flat "$4") -> $5"; }

# needs_change KEY CUR WANT: true when the sysctl KEY should go from CUR to WANT.
needs_change() {
  local lo hi wlo whi
  case $1 in
    net.ipv4.ip_local_port_range)  # only when the current range holds fewer ports
      read -r lo hi <<<"$2"; read -r wlo whi <<<"$3"; (( hi - lo < whi - wlo ));;
    net.ipv4.tcp_tw_reuse) [ "$2" != "$3" ];;  # 2 (the default) means loopback only
    *) if [[ $2 =~ ^[0-9]+$ && $3 =~ ^[0-9]+$ ]]; then (( 10#$2 < 10#$3 )); else [ "$(flat "$2")" != "$3" ]; fi;;
  esac
}

do_sysctl() {
  local key want path cur
  while IFS='=' read -r key want; do
    read -r key <<<"$key"; read -r want <<<"$want"  # trim
    [[ -z $key || -z $want || $key == [\#\;]* ]] && continue
    path=$ROOT/proc/sys/${key//.//}
    if [ ! -f "$path" ]; then echo "skipped $key: $path does not exist"; continue; fi
    cur=$(<"$path")
    if needs_change "$key" "$cur" "$want"; then put sysctl "$key" "$path" "$cur" "$want"
    else echo "kept $key: $(flat "$cur")"; fi
  done < "$CONF"
}

do_thp() {
  local f=/sys/kernel/mm/transparent_hugepage/enabled cur
  if [ ! -f "$ROOT$f" ]; then echo "no $ROOT$f here: nothing to do"; return; fi
  cur=$(<"$ROOT$f")
  if [[ $cur =~ \[([a-z]+)\] ]]; then cur=${BASH_REMATCH[1]}; fi  # "always [madvise] never"
  case $cur in
    madvise|never) echo "kept $f: $cur";;
    *) put file "$f" "$ROOT$f" "$cur" madvise;;
  esac
}

do_governor() {
  local g cur found=0
  shopt -s nullglob
  for g in "$ROOT"/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor; do
    found=1; cur=$(<"$g")
    if [ "$cur" = performance ]; then echo "kept ${g#"$ROOT"}: $cur"
    else put file "${g#"$ROOT"}" "$g" "$cur" performance; fi
  done
  [ $found = 1 ] || echo "no cpufreq here (virtual machine or fixed frequency): nothing to do"
}

# do_revert: writes back the STATE lines matching $sel, newest first; the other lines (and any
# that could not be written) stay in STATE, which is removed once empty.
do_revert() {
  if [ ! -f "$STATE" ]; then echo "nothing to revert"; return; fi
  local line kind name val p keep=() n=0 rc=0
  while IFS= read -r line; do
    if [[ $line =~ $sel ]]; then
      read -r kind name val <<<"$line"
      case $kind in
        sysctl) p=$ROOT/proc/sys/${name//.//};;
        file) p=$ROOT$name;;
        irq) p=$ROOT/proc/irq/$name/smp_affinity_list; name="irq $name";;
      esac
      n=$((n + 1))
      if [ -f "$p" ] && printf '%s\n' "$val" > "$p"; then echo "restored $name: $(flat "$val")"; continue; fi
      echo "could not restore $name ($p): the line stays in $STATE" >&2; rc=1
    fi
    keep=("$line" "${keep[@]}")
  done < <(tac "$STATE")
  [ $n -gt 0 ] || echo "nothing to revert for $what"
  if [ ${#keep[@]} -gt 0 ]; then printf '%s\n' "${keep[@]}" > "$STATE"; else rm -f "$STATE"; fi
  return $rc
}

if [ $revert = 1 ]; then do_revert; exit; fi
case $what in
  sysctl) do_sysctl;;
  thp) do_thp;;
  governor) do_governor;;
  all) do_sysctl; do_thp; do_governor;;
esac
