# shellcheck shell=bash
# Helpers shared by images/base.sh, images/build.sh and e2e/compose/run.sh (sourced, not run).
#
# No container registry is reachable here: every image starts from `arca-base:bookworm`, a
# Debian root filesystem made with debootstrap and `docker import`ed (images/base.sh). Debian
# packages come from the apt mirror, either inside `docker build` (when containers reach the
# mirror) or, when they do not, installed into a copy of the root filesystem with
# `chroot apt-get` before it is imported (`provisioned_base`).

ARCA_IMAGES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC2034 # used by the scripts that source this file
ARCA_REPO_DIR=$(cd "$ARCA_IMAGES_DIR/.." && pwd)
# Expensive results (root filesystem tarballs) are kept here and reused.
ARCA_CACHE_DIR=${ARCA_E2E_CACHE:-/var/cache/arca-e2e}
ARCA_SUITE=bookworm
ARCA_BASE_IMAGE=arca-base:$ARCA_SUITE
ARCA_BASE_TAR=$ARCA_CACHE_DIR/rootfs-$ARCA_SUITE-minbase.tar

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf '%s: %s\n' "${ARCA_SCRIPT:-images}" "$*" >&2; exit 1; }

# Run "$@" holding the cache lock, so concurrent runs do not build the same rootfs twice.
with_cache_lock() {
  mkdir -p "$ARCA_CACHE_DIR"
  (
    flock -w 1800 9 || die "timed out waiting for the lock on $ARCA_CACHE_DIR/.lock"
    "$@"
  ) 9>"$ARCA_CACHE_DIR/.lock"
}

# The Debian mirror (and its security counterpart) the host's apt uses, so debootstrap and
# the images use the same (reachable) one. ARCA_DEBIAN_MIRROR / ARCA_DEBIAN_SECURITY_MIRROR
# override; deb.debian.org is the fallback.
_apt_uri_for_suite() { # $1: suite (bookworm | bookworm-security)
  local suite=$1 uri
  # One-line format: deb [opts] URI SUITE COMPONENTS...
  uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk -v s="$suite" '$1=="deb" { u=""; for (i=2;i<=NF;i++) { if ($i ~ /^(https?|file):/) u=$i; else if (u!="" && $i==s) { print u; exit } } }')
  # deb822 format (*.sources): a stanza whose Suites list the suite.
  [[ -n $uri ]] || uri=$(awk -v s="$suite" 'BEGIN{RS=""} {
      if (!match($0, /Suites:[^\n]*/)) next
      n=split(substr($0, RSTART+7, RLENGTH-7), a, /[ \t]+/); hit=0
      for (i=1;i<=n;i++) if (a[i]==s) hit=1
      if (hit && match($0, /URIs:[ \t]*[^ \t\n]+/)) { u=substr($0,RSTART,RLENGTH); sub(/URIs:[ \t]*/,"",u); print u; exit }
    }' /etc/apt/sources.list.d/*.sources 2>/dev/null)
  printf '%s\n' "$uri"
}
debian_mirror() {
  local m=${ARCA_DEBIAN_MIRROR:-$(_apt_uri_for_suite "$ARCA_SUITE")}
  printf '%s\n' "${m:-http://deb.debian.org/debian}"
}
debian_security_mirror() {
  local m=${ARCA_DEBIAN_SECURITY_MIRROR:-$(_apt_uri_for_suite "$ARCA_SUITE-security")}
  printf '%s\n' "${m:-http://deb.debian.org/debian-security}"
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# Run "$@" inside the root filesystem $1 with /proc, /sys and /dev mounted (unmounted again
# whatever happens) and services prevented from starting.
chroot_run() {
  local root=$1; shift
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d" && chmod 0755 "$root/usr/sbin/policy-rc.d"
  mount -t proc proc "$root/proc"
  mount --rbind /sys "$root/sys" && mount --make-rslave "$root/sys"
  mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev"
  local rc=0
  DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 chroot "$root" "$@" || rc=$?
  umount -R "$root/dev" "$root/sys" "$root/proc" 2>/dev/null || umount -lR "$root/dev" "$root/sys" "$root/proc" || true
  rm -f "$root/usr/sbin/policy-rc.d"
  : >"$root/etc/resolv.conf"
  return $rc
}

# Remove a root filesystem directory, never crossing into a file system still mounted
# under it (a /dev or /sys bind mount left behind by a failed umount).
remove_rootfs() {
  [[ -n $1 && -d $1 ]] || return 0
  if grep -q " $1/" /proc/mounts; then
    log "not removing $1: something is still mounted below it"
    return 1
  fi
  rm -rf --one-file-system "$1"
}

# Import a root filesystem tarball as an image with the base image's settings.
import_rootfs() { # $1: tarball  $2: tag
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --message "arca: debootstrap --variant=minbase $ARCA_SUITE ($(debian_mirror))" \
    "$1" "$2" >/dev/null
}

# True when a container started from $1 reaches the apt mirror (so `docker build` can run
# apt-get): a TCP connection to the mirror's host from inside a container. The answer is
# remembered (exported) for the rest of the run and its children.
containers_reach_mirror() {
  if [[ -z ${ARCA_CONTAINER_APT:-} ]]; then
    local url host port
    url=$(debian_mirror)
    host=${url#*://} host=${host%%/*} port=80
    [[ $url == https://* ]] && port=443
    [[ $host == *:* ]] && port=${host##*:} host=${host%%:*}
    ARCA_CONTAINER_APT=no
    if [[ $url == http* ]] && timeout 30 docker run --rm "$1" bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null; then
      ARCA_CONTAINER_APT=yes
    fi
    export ARCA_CONTAINER_APT
    log "containers reach the apt mirror ($host:$port): $ARCA_CONTAINER_APT"
  fi
  [[ $ARCA_CONTAINER_APT == yes ]]
}

# The default of `ARG PACKAGES="..."` in a Dockerfile: the one list of packages an image needs.
dockerfile_packages() { sed -n 's/^ARG PACKAGES="\(.*\)"$/\1/p' "$1" | head -n1; }

# An image to build FROM that already holds the packages $2..., for hosts whose containers
# cannot reach the mirror: the base rootfs plus `chroot apt-get install`, imported as $1.
# The provisioned tarball is cached under a name derived from the package list.
provisioned_base() {
  local tag=$1; shift
  local key tar
  # Keyed by the package list and the base it starts from.
  key=$({ docker image inspect -f '{{.Id}}' "$ARCA_BASE_IMAGE"; printf '%s\n' "$@" | sort; } | sha256sum | cut -c1-12)
  tar=$ARCA_CACHE_DIR/rootfs-$ARCA_SUITE-$key.tar
  image_exists "$tag" && [[ $(docker image inspect -f '{{index .Config.Labels "arca.packages"}}' "$tag" 2>/dev/null) == "$key" ]] && return 0
  with_cache_lock _provision "$tar" "$@" || die "could not provision a root filesystem for $tag"
  docker import --change "LABEL arca.packages=$key" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' "$tar" "$tag" >/dev/null
}
_provision() {
  local tar=$1; shift
  [[ -s $tar ]] && return 0
  log "provisioning a root filesystem with: $*"
  local root; root=$(mktemp -d /var/tmp/arca-rootfs.XXXXXX)
  chmod 0755 "$root"
  if [[ -s $ARCA_BASE_TAR ]]; then
    tar -C "$root" --numeric-owner -xpf "$ARCA_BASE_TAR"
  else # the cache was cleaned but the image is there: take its filesystem
    local c; c=$(docker create "$ARCA_BASE_IMAGE" /bin/true)
    docker export "$c" | tar -C "$root" --numeric-owner -xpf -
    docker rm "$c" >/dev/null
  fi
  # postgresql-common must not create a cluster at install time; images make their own.
  mkdir -p "$root/etc/postgresql-common/createcluster.d"
  echo 'create_main_cluster = false' >"$root/etc/postgresql-common/createcluster.d/arca.conf"
  if ! chroot_run "$root" sh -c "apt-get -q update && apt-get -q install -y --no-install-recommends $* && apt-get clean && rm -rf /var/lib/apt/lists/*" >"$root.log" 2>&1; then
    tail -n 20 "$root.log" >&2; remove_rootfs "$root"; rm -f "$root.log"; die "chroot apt-get install failed: $*"
  fi
  rm -f "$root.log"
  tar -C "$root" --numeric-owner -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
  remove_rootfs "$root"
}

# Build image $1 from Dockerfile directory $2 with extra context files "$3..." (copied into a
# private build context). The Dockerfile's `ARG BASE` is pointed at a provisioned base when
# containers cannot reach the mirror.
build_image() {
  local tag=$1 dir=$2; shift 2
  local ctx base=$ARCA_BASE_IMAGE pkgs net=()
  pkgs=$(dockerfile_packages "$dir/Dockerfile")
  if [[ -n $pkgs ]] && ! containers_reach_mirror "$ARCA_BASE_IMAGE"; then
    base=arca-base-${tag%%:*}:$ARCA_SUITE
    # shellcheck disable=SC2086
    provisioned_base "$base" $pkgs
    # The build needs no network then; say so, so a missing package fails loudly.
    net=(--network none)
  fi
  ctx=$(mktemp -d /var/tmp/arca-build.XXXXXX)
  cp -a "$dir/." "$ctx/"
  local f
  for f in "$@"; do cp -a "$f" "$ctx/"; done
  log "docker build $tag (from $base)"
  local old; old=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
  if ! docker build "${net[@]}" --build-arg "BASE=$base" -t "$tag" "$ctx" >"$ctx.log" 2>&1; then
    tail -n 30 "$ctx.log" >&2
    rm -rf "$ctx" "$ctx.log"
    die "docker build of $tag failed (see the output above)"
  fi
  rm -rf "$ctx" "$ctx.log"
  # The image this tag named before (e.g. with an older binary) is garbage now, unless
  # another tag or a container still uses it (then docker refuses, which is fine).
  if [[ -n $old && $old != "$(docker image inspect -f '{{.Id}}' "$tag")" ]] &&
    [[ $(docker image inspect -f '{{len .RepoTags}}' "$old" 2>/dev/null) == 0 ]]; then
    docker rmi "$old" >/dev/null 2>&1 || true
  fi
}
