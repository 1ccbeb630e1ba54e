#!/usr/bin/env bash
# Vendor Apache ECharts into api/static from the npm registry package (pinned and integrity-checked), so the
# pages draw charts with no internet and no CDN. Re-run only to upgrade; the output files are committed.
set -euo pipefail
VERSION="5.6.0"
INTEGRITY="sha512-oTbVTsXfKuEhxftHqL5xprgLoc0k7uScAwtryCgWF6hPYFLRwOUHiFmHGCBKP5NPFNkDVopOieyUqYGH8Fa3kA=="

cd "$(dirname "$0")/.."
dest="api/static"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

tarball="$(cd "$work" && npm pack --silent "echarts@${VERSION}")"
actual="sha512-$(openssl dgst -sha512 -binary "$work/$tarball" | base64 -w0)"
if [ "$actual" != "$INTEGRITY" ]; then
  echo "echarts@${VERSION}: integrity mismatch (got $actual)" >&2
  exit 1
fi
tar -xzf "$work/$tarball" -C "$work" package/dist/echarts.min.js package/LICENSE package/NOTICE
mkdir -p "$dest"
install -m 0644 "$work/package/dist/echarts.min.js" "$dest/echarts.min.js"
install -m 0644 "$work/package/LICENSE" "$dest/echarts.LICENSE.txt"
install -m 0644 "$work/package/NOTICE" "$dest/echarts.NOTICE.txt"
echo "vendored echarts@${VERSION} into $dest"
