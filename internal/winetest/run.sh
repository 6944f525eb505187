#!/bin/sh
# run.sh PACKAGE...: the Windows builds of the packages' tests, run under
# Wine on this Linux machine (make test-windows). Installs Debian's wine64
# and MinGW when missing, makes a Wine prefix in $WINETEST_DIR (default
# bin/wine) holding bcryptprimitives.dll (see dll/bcryptprimitives.c), builds
# each test binary with the wine tag and package winetest (added through
# an overlay, not in the tree) and runs it with
# -test.short from the package's directory. Exits non-zero when a build or
# a test fails.
set -eu
dir=${WINETEST_DIR:-$(pwd)/bin/wine}
here=$(cd "$(dirname "$0")" && pwd)
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
if ! command -v wine >/dev/null || ! command -v x86_64-w64-mingw32-gcc >/dev/null; then
	echo "installing Debian wine64 and gcc-mingw-w64-x86-64-win32"
	$sudo apt-get update -qq
	$sudo apt-get install -y -qq wine64 gcc-mingw-w64-x86-64-win32 >/dev/null
fi
export WINEPREFIX="$dir/prefix" WINEDEBUG=-all
mkdir -p "$dir"
if [ ! -f "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" ]; then
	wineboot -i >/dev/null 2>&1 || true
	x86_64-w64-mingw32-gcc -shared -O2 -o "$dir/bcryptprimitives.dll" \
		"$here/dll/bcryptprimitives.c" "$here/dll/bcryptprimitives.def" -ladvapi32
	cp "$dir/bcryptprimitives.dll" "$WINEPREFIX/drive_c/windows/system32/"
fi
status=0
for pkg in "$@"; do
	name=$(echo "$pkg" | tr '/.' '__')
	exe="$dir/$name.test.exe"
	pkgdir=$(go list -f '{{.Dir}}' "$pkg")
	# The package's tests import winetest through a file that exists only
	# in this build's overlay: the tree is not touched.
	printf '//go:build wine\n\npackage %s\n\nimport _ "github.com/ehrbridge/ehrbridge/internal/winetest"\n' \
		"$(go list -f '{{.Name}}' "$pkg")" > "$dir/$name.winetest.go"
	printf '{"Replace":{"%s":"%s"}}\n' "$pkgdir/zz_winetest_windows_test.go" "$dir/$name.winetest.go" > "$dir/$name.overlay.json"
	if ! GOOS=windows GOARCH=amd64 go test -tags wine -ldflags=-checklinkname=0 -overlay "$dir/$name.overlay.json" -c -o "$exe" "$pkg"; then
		status=1
		continue
	fi
	if (cd "$pkgdir" && wine "$exe" -test.short -test.timeout 5m); then
		echo "ok (wine)  $pkg"
	else
		echo "FAIL (wine) $pkg"
		status=1
	fi
done
wineserver -k 2>/dev/null || true
exit $status
