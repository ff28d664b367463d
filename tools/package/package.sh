#!/usr/bin/env bash
# tools/package/package.sh — `make package`: dist/enviromon/ and dist/enviromon.zip.
#
# The zip holds exactly what `func azure functionapp publish` would upload from the repository
# root (funcfiles.mjs: Core Tools' walk and .funcignore reading; never local.settings.json),
# except that the executable named by host.json's defaultExecutablePath is the portable build
# (build.sh), stored with mode 0755 under exactly that name; every other file is 0644. Core
# Tools marks only that one entry executable, and other deploy tools keep the zip's modes, so
# the one name must match. dist/enviromon/ is the same tree unpacked (what `make publish`
# hands to func). Entries carry the time of the last commit, so a rebuild of the same commit
# gives the same zip.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tools/package/lib.sh
. tools/package/lib.sh

command -v zip >/dev/null || pkg_die "zip is missing: run 'make deps'"
./tools/package/build.sh

exe=$(node -e '
  const h = JSON.parse(require("fs").readFileSync("host.json", "utf8"));
  process.stdout.write(String(h?.customHandler?.description?.defaultExecutablePath ?? ""));')
case "$exe" in
  "") pkg_die "host.json has no customHandler.description.defaultExecutablePath" ;;
  /* | ./* | *..* | *\\*) pkg_die "host.json: defaultExecutablePath '$exe' must be the plain relative path of the executable inside the zip (e.g. 'handler'): Core Tools sets the exec bit only on the entry named exactly so" ;;
esac

DIST=dist/enviromon
pkg_rmtree "$DIST.partial"
mkdir -p "$DIST.partial"
node tools/package/funcfiles.mjs . >"$DIST.partial.list"
while IFS= read -r f; do
  [ "$f" = "$exe" ] && continue
  install -D -m 0644 "$f" "$DIST.partial/$f"
done <"$DIST.partial.list"
rm -f "$DIST.partial.list"
install -D -m 0755 build/portable/handler "$DIST.partial/$exe"

stamp=$(git log -1 --format=%ct 2>/dev/null || date +%s)
find "$DIST.partial" -exec touch -h -d "@$stamp" {} +
rm -f dist/enviromon.zip.partial
(cd "$DIST.partial" && find . -type f | sed 's|^\./||' | LC_ALL=C sort |
  zip -q -X -D -@ ../enviromon.zip.partial)
pkg_rmtree "$DIST"
mv "$DIST.partial" "$DIST"
mv dist/enviromon.zip.partial dist/enviromon.zip
pkg_log "dist/enviromon.zip ($(stat -c %s dist/enviromon.zip) bytes) and $DIST/:"
zipinfo dist/enviromon.zip | sed 's/^/package:   /' >&2
