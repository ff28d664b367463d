#!/usr/bin/env bash
# tools/package/check.sh — `make check-package`: the packaged handler starts and works on
# Azure's own images.
#
# Builds the package (package.sh), then for Debian 11 and Debian 12 copies a cached minbase
# root that holds exactly the Functions image's package set (lib.sh), unpacks
# dist/enviromon.zip into its /home/site/wwwroot as the platform does (modes from the zip),
# adds a test CA to the root's trust store with the image's own update-ca-certificates, and
# mounts /proc as the images have it. tests/package/*.test.mjs then run the handler in each
# root with chroot and drive it from outside on loopback: readiness, Negotiate, an
# EventTrigger batch and GetDeviceState against an Azurite on the host reached over HTTPS
# (certificate from the test CA), TLS failures against untrusted and misnamed certificates,
# time to first answer, the binary's glibc needs, the zip's contents and modes, and
# `make publish`. /proc is unmounted and the copies deleted on every exit path.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tools/package/lib.sh
. tools/package/lib.sh

pkg_need_root "make check-package"
command -v openssl >/dev/null || pkg_die "openssl is missing: run 'make deps'"
t0=$SECONDS
# The image roots (slow only the first time) are made while the package builds.
pkg_root image-11 bullseye "$IMAGE_PACKAGES_11" >/dev/null & j11=$!
pkg_root image-12 bookworm "$IMAGE_PACKAGES_12" >/dev/null & j12=$!
rc=0 s11=0 s12=0
./tools/package/package.sh || rc=$?
wait "$j11" || s11=$?
wait "$j12" || s12=$?
[ "$rc" = 0 ] || exit "$rc"
[ "$s11$s12" = 00 ] || pkg_die "could not make the Debian 11 and 12 image roots"
R11=$(pkg_root image-11 bullseye "$IMAGE_PACKAGES_11")
R12=$(pkg_root image-12 bookworm "$IMAGE_PACKAGES_12")
t_build=$((SECONDS - t0))

pkg_lock check

# release_work DIR: stops what still runs in DIR's root copies (a handler the tests could not
# stop holds /proc), unmounts their /proc and deletes DIR.
release_work() {
  local root p
  for root in "$1"/root-*; do
    [ -d "$root" ] || continue
    for p in /proc/[0-9]*; do
      if [ "$p/root" -ef "$root" ]; then kill -KILL "${p#/proc/}" 2>/dev/null || true; fi
    done
    if mountpoint -q "$root/proc"; then
      umount "$root/proc" 2>/dev/null || umount -l "$root/proc" || echo "package: could not unmount $root/proc" >&2
    fi
  done
  pkg_rmtree "$1"
}
# A run that was killed outright (SIGKILL, power) left its copies behind: its pid is gone.
for stale in "$ENVIROMON_CACHE"/check.*; do
  [ -d "$stale" ] || continue
  owner=$(cat "$stale/pid" 2>/dev/null || true)
  if [ -z "$owner" ] || ! kill -0 "$owner" 2>/dev/null; then
    pkg_log "removing $stale, left by a run that did not finish"
    release_work "$stale"
  fi
done

WORK=$(mktemp -d "$ENVIROMON_CACHE/check.XXXXXX")
echo $$ >"$WORK/pid"
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  release_work "$WORK" || rc=1
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Test PKI: a CA that only the roots trust, a certificate from it for localhost/127.0.0.1,
# one from it for another name, and a rogue CA with its own localhost certificate.
pki="$WORK/pki"
mkdir -p "$pki"
cert() {  # NAME SUBJECT-ALT-NAMES ISSUER (or "self" for a CA)
  local name=$1 san=$2 issuer=$3
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$pki/$name.key" \
    -subj "/CN=enviromon check $name" -out "$pki/$name.csr" 2>/dev/null
  if [ "$issuer" = self ]; then
    openssl x509 -req -in "$pki/$name.csr" -signkey "$pki/$name.key" -days 2 -out "$pki/$name.pem" \
      -extfile <(printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n') 2>/dev/null
  else
    openssl x509 -req -in "$pki/$name.csr" -CA "$pki/$issuer.pem" -CAkey "$pki/$issuer.key" \
      -CAcreateserial -days 2 -out "$pki/$name.pem" \
      -extfile <(printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "$san") 2>/dev/null
  fi
}
cert ca "" self
cert server "DNS:localhost,IP:127.0.0.1" ca
cert misnamed "DNS:storage.invalid" ca
cert rogue-ca "" self
cert rogue "DNS:localhost,IP:127.0.0.1" rogue-ca

# prepare_root V CACHED: the run's own copy of a cached root, as Azure would have it with
# our app deployed (the two are prepared side by side: update-ca-certificates is slow).
prepare_root() {
  local v=$1 root="$WORK/root-$1"
  cp -a "$2" "$root"
  # What the container runtime gives every image: /etc/hosts with localhost, /proc.
  grep -qs localhost "$root/etc/hosts" || printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >>"$root/etc/hosts"
  install -m 0644 "$pki/ca.pem" "$root/usr/local/share/ca-certificates/enviromon-check.crt"
  pkg_chroot "$root" update-ca-certificates >"$root.log" 2>&1 || { cat "$root.log" >&2; pkg_die "update-ca-certificates failed in the Debian $v root"; }
  mkdir -p "$root/home/site/wwwroot"
  unzip -q dist/enviromon.zip -d "$root/home/site/wwwroot"
  mount -t proc proc "$root/proc"
}
t1=$SECONDS
prepare_root 11 "$R11" & p11=$!
prepare_root 12 "$R12" & p12=$!
ok11=0 ok12=0
wait "$p11" || ok11=$?
wait "$p12" || ok12=$?
[ "$ok11$ok12" = 00 ] || pkg_die "could not prepare the Debian image roots"
roots=("11:$WORK/root-11" "12:$WORK/root-12")

pkg_unlock   # the copies are this run's own
pkg_log "package and image roots ready in ${t_build} s, copies prepared in $((SECONDS - t1)) s; running tests/package"
export PACKAGE_ROOTS="${roots[*]}" PACKAGE_PKI="$pki" NODE_EXTRA_CA_CERTS="$pki/ca.pem"
node --test --test-concurrency=1 --test-timeout=300000 tests/package/*.test.mjs
pkg_log "check-package passed in $((SECONDS - t0)) s"
