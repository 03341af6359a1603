#!/bin/bash
# Writes DICOM-like files (128-byte preamble, "DICM", random payload) into
# /data/dicom/study-NNN/series-N/instance-NNNNNN.dcm, numbered without gaps from 0:
# a burst of $APP_INITIAL files on the first start, then one every $APP_INTERVAL seconds.
# Each file is written under a .tmp name and renamed, and never changed afterwards.
# On SIGTERM it finishes the file in hand and exits 0.
set -euo pipefail
initial=${APP_INITIAL:-30} interval=${APP_INTERVAL:-2}
root=/data/dicom
stop=
trap 'stop=1' TERM INT
mkdir -p "$root"
rm -f "$root"/*/*/*.tmp
# Continue after the highest number written so far (files are numbered without gaps).
n=$(find "$root" -name 'instance-*.dcm' | wc -l)
echo "app: start with $n files"

write_one() {
  local dir f size
  dir=$(printf '%s/study-%03d/series-%d' "$root" $((n / 12)) $((n / 4 % 3 + 1)))
  f=$(printf '%s/instance-%06d.dcm' "$dir" "$n")
  mkdir -p "$dir"
  # Mostly small instances, every 10th one larger (~1-2 MiB), like a CT among reports.
  size=$((2048 + RANDOM % 65536))
  ((n % 10 == 9)) && size=$((1048576 + RANDOM * 32))
  { head -c 128 /dev/zero; printf 'DICM'; head -c "$size" /dev/urandom; } >"$f.tmp"
  mv "$f.tmp" "$f"
  n=$((n + 1))
}

if ((n == 0)); then
  for ((i = 0; i < initial; i++)); do write_one; done
  echo "app: wrote the first $initial files"
fi
while [[ -z $stop ]]; do
  sleep "$interval" &
  wait $! || true
  [[ -n $stop ]] && break
  write_one
done
echo "app: stopped with $n files"
