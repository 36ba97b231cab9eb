#!/bin/bash
# Wall-clock time of `true` in a TCG guest: scripts/calm-vm against virtme-ng's vng, interleaved
# per kernel (6.1, 6.12), 2 vCPUs, 2 GiB, RUNS rounds. Used for the "why not virtme-ng" note in
# README.md (issue 11). virtme-ng is not a dependency: install it into a throwaway venv and give
# VNG_BIN (its bin dir) and VNG_ROOT (a dir holding root61/ and root612/: each Debian
# linux-image .deb unpacked with dpkg-deb -x, as vng needs boot/vmlinuz-* and its modules tree);
# vng also needs kmod and udev on the host.
#   VNG_BIN=/tmp/vng/bin VNG_ROOT=~/.cache/vng-eval scripts/bench_vm_boot.sh [RUNS]
set -u
cd "$(dirname "$0")/.."
RUNS=${1:-4}
export PATH=$PATH:${VNG_BIN:?set VNG_BIN to virtme-ng\'s bin directory}
E=${VNG_ROOT:?set VNG_ROOT}
for i in $(seq "$RUNS"); do
  for k in 6.1 6.12; do
    case $k in 6.1) img=$(ls "$E"/root61/boot/vmlinuz-*);; 6.12) img=$(ls "$E"/root612/boot/vmlinuz-*);; esac
    s=$(date +%s.%N); scripts/calm-vm --kernel $k --cpus 2 --memory 2048 -- true >/dev/null 2>/tmp/bench-vm-boot.err; rc=$?; e=$(date +%s.%N)
    echo "calm-vm $k rc=$rc wall=$(echo "$e - $s" | bc) $(grep -o 'booted in [0-9.]* s' /tmp/bench-vm-boot.err) load=$(cut -d' ' -f1 /proc/loadavg)"
    s=$(date +%s.%N); vng --run "$img" --disable-kvm --cpus 2 --memory 2G -v --exec true >/tmp/bench-vm-boot.out 2>&1; rc=$?; e=$(date +%s.%N)
    echo "vng     $k rc=$rc wall=$(echo "$e - $s" | bc) script-at=$(grep -o '\[ *[0-9.]*\] virtme-ng-init: starting script' /tmp/bench-vm-boot.out | grep -o '[0-9.]*' | head -1) load=$(cut -d' ' -f1 /proc/loadavg)"
  done
done
rm -f /tmp/bench-vm-boot.err /tmp/bench-vm-boot.out
