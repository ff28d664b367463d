# shellcheck shell=bash
# tools/package/lib.sh — shared by the package scripts (sourced, not run).
#
# Owns the slow, cached set-up that `make package` and `make check-package` share: Debian
# roots made with debootstrap (a Debian 11 build root, Debian 11 and 12 roots holding exactly
# the Functions images' package sets) and Debian 12 source packages fetched with apt-get
# source. All of it lives outside the repository in $ENVIROMON_CACHE (default
# ~/.cache/enviromon) and is reused between runs; a root is rebuilt only when its recipe
# (suite + package list) changes. Everything here runs as root (debootstrap, chroot, mount).

ENVIROMON_CACHE=${ENVIROMON_CACHE:-$HOME/.cache/enviromon}

# The Debian mirrors this machine's apt already uses (the main archive and the security one),
# unless ENVIROMON_DEBIAN_MIRROR / ENVIROMON_DEBIAN_SECURITY_MIRROR say otherwise. Sets
# PKG_MIRROR and PKG_SECURITY_MIRROR (which may stay empty). Slow (apt reads all its lists):
# called only when a root or the source index is to be (re)made.
pkg_mirrors() {
  local found
  # shellcheck disable=SC2016  # $(...) is apt's format syntax, not the shell's
  found=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null | sort -u | awk '
    { sub(/\/$/, "", $1) }
    $2 ~ /-security$/ && !sec { sec = $1 }
    $2 !~ /-/ && !main { main = $1 }
    END { print main, sec }')
  PKG_MIRROR=${ENVIROMON_DEBIAN_MIRROR:-${found%% *}}
  PKG_SECURITY_MIRROR=${ENVIROMON_DEBIAN_SECURITY_MIRROR:-${found#* }}
  [ -n "$PKG_MIRROR" ] || pkg_die "no Debian mirror in this machine's apt sources; set ENVIROMON_DEBIAN_MIRROR"
}

# The Functions host images' package sets (shared/reference/azure-hosting.md §2): the
# bullseye base:4/dotnet:4 image is dotnet/runtime-deps:6.0, the bookworm images are
# runtime-deps:8.0-bookworm-slim. libgcc1 is spelt libgcc-s1 here: debootstrap resolves no
# virtual packages, and libgcc-s1 is the package both suites install for it.
# shellcheck disable=SC2034  # used by the scripts that source this file
IMAGE_PACKAGES_11="ca-certificates libc6 libgcc-s1 libgssapi-krb5-2 libicu67 libssl1.1 libstdc++6 zlib1g"
# shellcheck disable=SC2034
IMAGE_PACKAGES_12="ca-certificates libc6 libgcc-s1 libgssapi-krb5-2 libicu72 libssl3 libstdc++6 zlib1g"
# shellcheck disable=SC2034
BUILD_PACKAGES_11="build-essential perl"

pkg_log() { echo "package: $*" >&2; }
pkg_die() { echo "package: $*" >&2; exit 1; }

pkg_need_root() {
  [ "$(id -u)" -eq 0 ] || pkg_die "$1 needs root (debootstrap and chroot); run it as root or with sudo"
  command -v debootstrap >/dev/null || pkg_die "debootstrap is missing: run 'make deps'"
}

# pkg_lock NAME: holds $ENVIROMON_CACHE/.lock-NAME on fd 9 until this process ends or calls
# pkg_unlock: two runs writing one part of the cache (the build root, a test's copies) wait
# for each other.
pkg_lock() {
  mkdir -p "$ENVIROMON_CACHE"
  exec 9>"$ENVIROMON_CACHE/.lock-$1"
  if ! flock -n 9; then
    pkg_log "waiting for another run to release $ENVIROMON_CACHE/.lock-$1"
    flock 9
  fi
}
pkg_unlock() { exec 9>&-; }

# True when something is mounted at or below DIR.
pkg_has_mounts() {
  local dir
  dir=$(realpath -m "$1")
  findmnt -rn -o TARGET | awk -v d="$dir" '$0 == d || index($0, d "/") == 1 { found = 1 } END { exit !found }'
}

# rm -rf that refuses to descend into anything mounted (a root with /proc still mounted).
pkg_rmtree() {
  [ -e "$1" ] || return 0
  if pkg_has_mounts "$1"; then pkg_die "refusing to delete $1: something is still mounted under it"; fi
  rm -rf --one-file-system "$1"
}

# pkg_root NAME SUITE "PACKAGES": prints the path of a cached minbase root of SUITE holding
# PACKAGES (and their dependencies), making it first when it is missing or its recipe changed.
# Each root has its own lock, so that several can be made at once.
pkg_root() {
  local name=$1 suite=$2 packages=$3
  local dir="$ENVIROMON_CACHE/roots/$name" recipe="suite=$suite variant=minbase include=$packages"
  if ! pkg_root_fresh "$dir" "$recipe"; then
    mkdir -p "$ENVIROMON_CACHE/roots"
    (
      flock 8
      pkg_root_fresh "$dir" "$recipe" || pkg_root_make "$name" "$suite" "$packages" "$dir" "$recipe"
    ) 8>"$ENVIROMON_CACHE/roots/.lock-$name" || exit 1
  fi
  echo "$dir"
}

pkg_root_fresh() { [ -f "$1/.enviromon-recipe" ] && [ "$(cat "$1/.enviromon-recipe")" = "$2" ]; }

pkg_root_make() {
  local name=$1 suite=$2 packages=$3 dir=$4 recipe=$5 tmp="$4.partial" t0=$SECONDS
  pkg_log "making the $name root (debootstrap --variant=minbase $suite + ${packages// /,}); cached in $dir"
  pkg_rmtree "$tmp"
  pkg_mirrors
  if ! debootstrap --variant=minbase --include="${packages// /,}" "$suite" "$tmp" "$PKG_MIRROR" \
      >"$tmp.log" 2>&1; then
    tail -20 "$tmp.log" >&2
    pkg_die "debootstrap of $suite failed (full log: $tmp.log)"
  fi
  rm -rf "$tmp"/var/cache/apt/archives/*.deb
  echo "$recipe" >"$tmp/.enviromon-recipe"
  pkg_rmtree "$dir"
  mv "$tmp" "$dir"
  rm -f "$tmp.log"
  pkg_log "$name root ready in $((SECONDS - t0)) s"
}

# apt-get/apt-cache with a private configuration: Debian 12 deb-src lines and lists kept in
# the cache, so the machine's own apt set-up is neither needed nor touched.
pkg_apt_opts() {
  local a="$ENVIROMON_CACHE/apt"
  echo "-o Dir::Etc::SourceList=$a/sources.list -o Dir::Etc::SourceParts=$a/none" \
       "-o Dir::State::Lists=$a/lists -o Dir::Cache=$a/cache -o Dir::Etc::Parts=$a/none" \
       "-o Dir::Etc::Preferences=$a/none/p -o Dir::Etc::PreferencesParts=$a/none" \
       "-o APT::Sandbox::User=root -o Debug::NoLocking=1"
}

# Refresh the Debian 12 source index (at most once an hour; a failure keeps the old one).
pkg_apt_update() {
  local a="$ENVIROMON_CACHE/apt"
  mkdir -p "$a/lists/partial" "$a/cache" "$a/none"
  # (apt keeps the server's times on the lists: a stamp of our own says when we last asked)
  [ -n "$(find "$a/updated" -mmin -60 2>/dev/null)" ] && return 0
  pkg_mirrors
  {
    echo "deb-src $PKG_MIRROR bookworm main"
    echo "deb-src $PKG_MIRROR bookworm-updates main"
    [ -z "$PKG_SECURITY_MIRROR" ] || echo "deb-src $PKG_SECURITY_MIRROR bookworm-security main"
  } >"$a/sources.list"
  # shellcheck disable=SC2046
  if apt-get $(pkg_apt_opts) -qq update >"$a/update.log" 2>&1; then
    touch "$a/updated"
  else
    [ -n "$(find "$a/lists" -maxdepth 1 -name '*Sources*')" ] || { cat "$a/update.log" >&2; pkg_die "cannot read Debian's source index"; }
    pkg_log "warning: could not refresh Debian's source index; using the one from $(date -r "$a/lists" '+%F %R')"
  fi
}

# pkg_source NAME DEST: unpacks the newest Debian 12 source package NAME that the mirror
# serves (Debian's patches applied) into DEST/NAME-VERSION, once; prints that directory.
# Newest first: a security index can name a version whose files are not on the mirror yet.
pkg_source() {
  local name=$1 dest=$2 v dir dl="$ENVIROMON_CACHE/src"
  mkdir -p "$dl" "$dest"
  # shellcheck disable=SC2046
  for v in $(apt-cache $(pkg_apt_opts) showsrc "$name" 2>/dev/null | awk -v n="$name" \
      '/^Package: /{p=($2==n)} p && /^Version: /{print $2}' | sort -u | sort -rV); do
    dir="$dest/$name-${v//[:~+]/_}"
    if [ -f "$dir/.enviromon-unpacked" ]; then echo "$dir"; return 0; fi
    local dsc="$dl/${name}_${v#*:}.dsc" missing="$dl/${name}_${v#*:}.missing"
    if [ ! -f "$dsc" ]; then
      [ -n "$(find "$missing" -mmin -60 2>/dev/null)" ] && continue   # asked within the hour
      # shellcheck disable=SC2046
      (cd "$dl" && apt-get $(pkg_apt_opts) -qq source --download-only "$name=$v") >"$dl/$name.log" 2>&1 || {
        pkg_log "warning: $name $v is listed but not downloadable; trying an older version"
        touch "$missing"
        continue
      }
    fi
    rm -rf "$dir"
    dpkg-source --no-check -x "$dsc" "$dir" >"$dl/$name.log" 2>&1 || { cat "$dl/$name.log" >&2; pkg_die "cannot unpack $dsc"; }
    echo "$v" >"$dir/.enviromon-unpacked"
    echo "$dir"
    return 0
  done
  pkg_die "no downloadable Debian 12 source package '$name' (see $dl/$name.log)"
}

# pkg_chroot ROOT CMD...: runs CMD inside ROOT with a clean environment.
pkg_chroot() {
  local root=$1
  shift
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C \
    chroot "$root" "$@"
}
