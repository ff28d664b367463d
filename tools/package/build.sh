#!/usr/bin/env bash
# tools/package/build.sh — the portable handler: build/portable/handler.
#
# Why this way (docs/deploy.md has the measurements): Azure's Functions hosts run a Debian 11
# image (glibc 2.31, OpenSSL 1.1) or a Debian 12 one (glibc 2.36, OpenSSL 3), and neither has
# libmicrohttpd, cJSON or libcurl. So the handler is compiled in a Debian 11 build root
# (debootstrap, cached) against glibc 2.31, which both images' newer glibc runs, and
# libmicrohttpd, cJSON, libcurl and OpenSSL are linked in statically, built there from
# Debian 12's source packages (the versions our tests run against, with Debian's patches and
# security fixes). The result needs only libc6 from the image: one file, nothing to find at
# run time, so Core Tools' "only defaultExecutablePath gets the exec bit" rule is no trap.
# OpenSSL and libcurl look for CA certificates where Debian puts them, so the image's
# ca-certificates package is the trust store.
#
# Cached in $ENVIROMON_CACHE (see lib.sh): the build root, the downloaded sources and the
# built libraries, each rebuilt only when its recipe (version + flags) changes.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tools/package/lib.sh
. tools/package/lib.sh

pkg_need_root "make package"
pkg_lock build

OUT=build/portable
DEPS=/opt/enviromon-deps                          # inside the build root
HARDEN="-O2 -g -fstack-protector-strong -D_FORTIFY_SOURCE=2 -fPIE"

ROOT=$(pkg_root build-11 bullseye "$BUILD_PACKAGES_11")
pkg_apt_update

# dep_build NAME RECIPE SCRIPT: builds NAME from its Debian 12 source package inside the build
# root with SCRIPT (sh, run in a fresh copy of the source tree), unless the installed copy was
# built from the same recipe. Prints the recipe actually installed (version included).
dep_build() {
  local name=$1 recipe=$2 script=$3 src ver stamp
  src=$(pkg_source "$name" "$ROOT/usr/src/debian")
  ver=$(cat "$src/.enviromon-unpacked")
  recipe="$name $ver | $recipe"
  stamp="$ROOT$DEPS/.built-$name"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$recipe" ]; then echo "$recipe"; return 0; fi
  pkg_log "building $name $ver from Debian's source package (static, in the Debian 11 root)"
  local t0=$SECONDS work="/usr/src/work/$name"
  rm -rf "$ROOT$work"
  mkdir -p "$ROOT/usr/src/work" "$ROOT$DEPS"
  cp -a "$src" "$ROOT$work"
  if ! pkg_chroot "$ROOT" /bin/sh -ec "cd $work; $script" >"$ROOT$work.log" 2>&1; then
    tail -30 "$ROOT$work.log" >&2
    pkg_die "building $name failed (full log: $ROOT$work.log)"
  fi
  rm -rf "$ROOT$work"
  echo "$recipe" >"$stamp"
  pkg_log "$name built in $((SECONDS - t0)) s"
  echo "$recipe"
}

# OpenSSL: static libraries only (no apps, tests or docs). OPENSSLDIR is Debian's, so the
# image's /usr/lib/ssl/openssl.cnf and /usr/lib/ssl/certs (→ /etc/ssl/certs) are used.
openssl=$(dep_build openssl "no-shared no-tests openssldir=/usr/lib/ssl cflags=$HARDEN" "
  ./Configure linux-x86_64 --prefix=$DEPS --libdir=lib --openssldir=/usr/lib/ssl \
      no-shared no-tests $HARDEN
  make -j2 build_libs >/dev/null
  make install_dev >/dev/null")

# libcurl: HTTP and HTTPS only, OpenSSL, the threaded resolver (getaddrinfo of the image's
# glibc), Debian's CA bundle and directory.
curl=$(dep_build curl "$openssl | http-only ca=/etc/ssl/certs cflags=$HARDEN" "
  CFLAGS='$HARDEN' CPPFLAGS='-I$DEPS/include' LDFLAGS='-L$DEPS/lib' LIBS='-ldl -pthread' \
  ./configure --prefix=$DEPS --disable-shared --enable-static --with-openssl=$DEPS \
      --with-ca-bundle=/etc/ssl/certs/ca-certificates.crt --with-ca-path=/etc/ssl/certs \
      --enable-threaded-resolver --without-zlib --without-brotli --without-zstd \
      --without-libpsl --without-libidn2 --without-nghttp2 --without-librtmp --without-libssh2 \
      --disable-ldap --disable-ldaps --disable-rtsp --disable-dict --disable-telnet --disable-tftp \
      --disable-pop3 --disable-imap --disable-smtp --disable-gopher --disable-mqtt --disable-smb \
      --disable-ftp --disable-file --disable-manual >/dev/null
  make -j2 -C lib >/dev/null
  make -C lib install >/dev/null
  make -C include install >/dev/null")

# libmicrohttpd: plain HTTP (the host talks to the handler over loopback), no GnuTLS.
mhd=$(dep_build libmicrohttpd "no-https cflags=$HARDEN" "
  CFLAGS='$HARDEN' ./configure --prefix=$DEPS --disable-shared --enable-static --disable-https \
      --disable-curl --disable-doc --disable-examples --disable-nls >/dev/null
  make -j2 -C src/microhttpd >/dev/null
  make -C src/microhttpd install >/dev/null
  make -C src/include install >/dev/null")

# cJSON: one C file.
cjson=$(dep_build cjson "cc cflags=$HARDEN" "
  cc $HARDEN -std=c89 -c cJSON.c -o cJSON.o
  ar rcs $DEPS/lib/libcjson.a cJSON.o
  mkdir -p $DEPS/include/cjson
  cp cJSON.h $DEPS/include/cjson/")

# Enviromon itself, with the repository's own Makefile and flags, but only the handler's
# sources: the local stack (src/devhost, src/simulator) never runs in Azure and need not build
# against Debian 11. The sources are copied in with their times, so the build root's objects
# make the rebuild incremental.
tree=/usr/src/enviromon
mkdir -p "$ROOT$tree"
rm -rf "$ROOT$tree/src" "$ROOT$tree/Makefile"
cp -a src Makefile "$ROOT$tree/"
lib_srcs=$(cd "$ROOT$tree" && find src -name '*.c' ! -path 'src/devhost/*' ! -path 'src/simulator/*' \
  ! -path 'src/*/main.c' | sort | tr '\n' ' ')
pkg_chroot "$ROOT" make -C "$tree" -j2 --no-print-directory VARIANT=portable LIB_SRCS="$lib_srcs" \
  PKG_CFLAGS="-I$DEPS/include" \
  PKG_LIBS="-L$DEPS/lib -lmicrohttpd -lcjson -lcurl -lssl -lcrypto -ldl" \
  LDFLAGS="-pie -Wl,-z,relro,-z,now" build/portable/src/handler/main.o build/portable/handler >&2

mkdir -p "$OUT"
cp "$ROOT$tree/build/portable/handler" "$OUT/handler.full"
# The package carries a stripped binary; handler.debug keeps the symbols for crash reports.
objcopy --only-keep-debug "$OUT/handler.full" "$OUT/handler.debug"
strip --strip-all -o "$OUT/handler" "$OUT/handler.full"
(cd "$OUT" && objcopy --add-gnu-debuglink=handler.debug handler)
rm -f "$OUT/handler.full"
printf '%s\n' "$openssl" "$curl" "$mhd" "$cjson" >"$OUT/handler.deps"
pkg_log "portable handler: $OUT/handler ($(stat -c %s "$OUT/handler") bytes); built with:"
sed 's/ |.*//; s/^/package:   /' "$OUT/handler.deps" >&2
