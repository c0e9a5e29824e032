#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs a command with a folder on a nearly full disk, for tests/programs/bad_inputs.sh.
# Usage: unshare -rm bash on_full_disk.sh SIZE DIR SEED WATCH -- COMMAND...
#   Inside a private user + mount namespace (`unshare -rm`: no root needed, nothing leaks to the
#   host), mounts a tmpfs of SIZE (e.g. 200m) on DIR, copies SEED's contents into it, runs COMMAND
#   (its stdout and stderr pass through) and exits with COMMAND's status. Afterwards the files under
#   DIR/WATCH must be exactly those before, byte for byte, with no leftover temporary files; if not,
#   one more line on stderr says what changed (so the caller's one-line check fails).
set -uo pipefail
size=$1 dir=$2 seed=$3 watch=$4
shift 5
mount -t tmpfs -o "size=$size" tmpfs "$dir" || { echo "on_full_disk: cannot mount a tmpfs on $dir" >&2; exit 3; }
cp -a "$seed/." "$dir/" || { echo "on_full_disk: $seed does not fit in $size" >&2; exit 3; }
listing() { (cd "$dir/$watch" && find . -type f -print0 | sort -z | xargs -0 -r md5sum); }
before=$(listing)
"$@"
rc=$?
after=$(listing)
[ "$before" = "$after" ] || echo "on_full_disk: files under $watch changed: $(diff <(echo "$before") <(echo "$after") | grep '^[<>]' | tr '\n' ' ')" >&2
exit $rc
