#!/usr/bin/env bash
# Builds the local base image `arca-base:bookworm` without any container registry:
# `debootstrap --variant=minbase bookworm` from the host's apt mirror, upgraded from
# bookworm-updates and bookworm-security, slimmed (no docs, man pages, locales or apt
# lists) and `docker import`ed. Every other image is built FROM it.
#
#   images/base.sh            reuse the image, else the cached rootfs tarball, else debootstrap
#   images/base.sh --rebuild  debootstrap afresh (e.g. to pick up security updates)
#
# Cache: $ARCA_E2E_CACHE (default /var/cache/arca-e2e)/rootfs-bookworm-minbase.tar.
# Mirror: the host's apt sources, or ARCA_DEBIAN_MIRROR / ARCA_DEBIAN_SECURITY_MIRROR.
# Needs root (debootstrap, chroot) and docker; installs debootstrap when missing.
set -euo pipefail
ARCA_SCRIPT=images/base.sh
# shellcheck source=images/lib.sh
source "$(dirname "$0")/lib.sh"

rebuild=
case ${1:-} in
  --rebuild) rebuild=1 ;;
  "") ;;
  *) die "usage: images/base.sh [--rebuild]" ;;
esac

make_rootfs() {
  [[ -s $ARCA_BASE_TAR && -z $rebuild ]] && return 0
  [[ $EUID -eq 0 ]] || die "debootstrap needs root: run as root"
  if ! command -v debootstrap >/dev/null && [[ ! -x /usr/sbin/debootstrap ]]; then
    log "installing debootstrap"
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null ||
      die "could not install debootstrap: apt-get install debootstrap"
  fi
  local mirror security root
  mirror=$(debian_mirror) security=$(debian_security_mirror)
  root=$(mktemp -d /var/tmp/arca-rootfs.XXXXXX)
  # NB: mktemp makes 0700, which would become the image's / and lock out non-root users.
  chmod 0755 "$root"
  # NB: remove the half-made rootfs on any exit (mounts are undone by chroot_run itself).
  trap 'remove_rootfs "$root"' EXIT
  log "debootstrap --variant=minbase $ARCA_SUITE from $mirror (about 2 minutes)"
  # Keep images small like Debian's own slim images: no docs, man pages or translations.
  mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
  cat >"$root/etc/dpkg/dpkg.cfg.d/arca-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
  debootstrap --variant=minbase "$ARCA_SUITE" "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -n 20 "$root.log" >&2; rm -f "$root.log"; die "debootstrap failed (mirror $mirror)"; }
  rm -f "$root.log"
  cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror $ARCA_SUITE main
deb $mirror $ARCA_SUITE-updates main
deb $security $ARCA_SUITE-security main
EOF
  cat >"$root/etc/apt/apt.conf.d/90arca" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb || true"; };
EOF
  # postgresql-common must never create a "main" cluster during `apt-get install`.
  mkdir -p "$root/etc/postgresql-common/createcluster.d"
  echo 'create_main_cluster = false' >"$root/etc/postgresql-common/createcluster.d/arca.conf"
  log "applying $ARCA_SUITE-updates and -security"
  chroot_run "$root" sh -c 'apt-get -q update && apt-get -q -y dist-upgrade && apt-get clean' >"$root.log" 2>&1 || {
    tail -n 20 "$root.log" >&2; rm -f "$root.log"; die "apt-get dist-upgrade in the new rootfs failed"; }
  rm -f "$root.log"
  # debootstrap unpacks its first packages without dpkg's excludes: apply them by hand.
  find "$root/usr/share/doc" -mindepth 1 -not -type d -not -name copyright -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/lintian/*
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/* "$root"/tmp/* "$root"/root/.bash_history
  : >"$root/etc/machine-id"
  mkdir -p "$ARCA_CACHE_DIR"
  tar -C "$root" --numeric-owner -cf "$ARCA_BASE_TAR.tmp" . && mv "$ARCA_BASE_TAR.tmp" "$ARCA_BASE_TAR"
  remove_rootfs "$root"
  trap - EXIT
  log "cached $ARCA_BASE_TAR ($(du -h "$ARCA_BASE_TAR" | cut -f1))"
}

if [[ -z $rebuild ]] && image_exists "$ARCA_BASE_IMAGE"; then
  exit 0
fi
with_cache_lock make_rootfs || die "could not build the base rootfs"
import_rootfs "$ARCA_BASE_TAR" "$ARCA_BASE_IMAGE"
log "imported $ARCA_BASE_IMAGE"
