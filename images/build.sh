#!/usr/bin/env bash
# Builds Arca's images from the local base (no registry needed):
#   images/build.sh [sidecar|operator|all]     (default: all)
#     sidecar   arca:dev           images/sidecar/Dockerfile + target/release/arca
#     operator  arca-operator:dev  images/operator/Dockerfile + target/release/arca-operator
#
# Builds the release binaries with cargo first, unless ARCA_BIN / ARCA_OPERATOR_BIN name a
# binary to use instead (the compose e2e test passes the binary cargo already built for it).
# ARCA_IMAGE / ARCA_OPERATOR_IMAGE override the tags. The base image comes from
# images/base.sh (cached under /var/cache/arca-e2e). Needs root and docker.
set -euo pipefail
ARCA_SCRIPT=images/build.sh
# shellcheck source=images/lib.sh
source "$(dirname "$0")/lib.sh"

what=${1:-all}
case $what in sidecar | operator | all) ;; *) die "usage: images/build.sh [sidecar|operator|all]" ;; esac

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "the docker engine does not answer: start it (systemctl start docker) or set DOCKER_HOST"

# A release binary built by cargo, or the override in $2 when set.
binary() { # $1: cargo package  $2: override  $3: binary name
  if [[ -n $2 ]]; then
    [[ -x $2 ]] || die "$2 (the binary given for $3) is not an executable file"
    printf '%s\n' "$2"
    return
  fi
  log "cargo build --release -p $1"
  (cd "$ARCA_REPO_DIR" && cargo build --release --locked -q -p "$1" --bin "$3") >&2 ||
    die "cargo build --release -p $1 failed"
  printf '%s\n' "$ARCA_REPO_DIR/target/release/$3"
}

# Copy $1 to $2 without debug info (a debug build is hundreds of MiB of DWARF).
stage_binary() {
  if command -v strip >/dev/null; then strip --strip-debug -o "$2" "$1"; else cp "$1" "$2"; fi
}

"$ARCA_IMAGES_DIR/base.sh"
stage=$(mktemp -d /var/tmp/arca-stage.XXXXXX)
trap 'rm -rf "$stage"' EXIT

if [[ $what == sidecar || $what == all ]]; then
  bin=$(binary arca "${ARCA_BIN:-}" arca)
  stage_binary "$bin" "$stage/arca"
  build_image "${ARCA_IMAGE:-arca:dev}" "$ARCA_IMAGES_DIR/sidecar" "$stage/arca"
  log "built ${ARCA_IMAGE:-arca:dev} ($("$stage/arca" --version 2>/dev/null || echo arca))"
fi
if [[ $what == operator || $what == all ]]; then
  bin=$(binary arca-operator "${ARCA_OPERATOR_BIN:-}" arca-operator)
  stage_binary "$bin" "$stage/arca-operator"
  build_image "${ARCA_OPERATOR_IMAGE:-arca-operator:dev}" "$ARCA_IMAGES_DIR/operator" "$stage/arca-operator"
  log "built ${ARCA_OPERATOR_IMAGE:-arca-operator:dev}"
fi
