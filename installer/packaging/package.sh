#!/bin/sh
# Builds the packages into OUTDIR from bin/ehrbridge (linux/amd64) and
# bin/ehrbridge.exe (windows/amd64), which `make package` builds first
# (EHRBRIDGE_BIN and EHRBRIDGE_EXE name others):
#   ehrbridge_<version>_amd64.deb   Debian, Ubuntu
#   ehrbridge-<version>-1.x86_64.rpm RHEL, Rocky, SUSE
#   ehrbridge-<version>-windows-amd64.zip   exe, config, mappings, install.ps1
#   ehrbridge-<version>-windows-amd64.msi   when wixl (msitools) is installed
# Usage: installer/packaging/package.sh VERSION OUTDIR
set -eu
version=$1
out=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
pkg=$root/installer/packaging
bin=${EHRBRIDGE_BIN:-$root/bin/ehrbridge}
exe=${EHRBRIDGE_EXE:-$root/bin/ehrbridge.exe}
mkdir -p "$out"
out=$(cd "$out" && pwd)
# Package versions must start with a digit; a development build is 0.0.0~<describe>.
pkgver=$(printf '%s' "$version" | sed 's/^v//; s/[^A-Za-z0-9.+~]/./g')
case $pkgver in [0-9]*) ;; *) pkgver="0.0.0~$pkgver" ;; esac
rpmver=$(printf '%s' "$pkgver" | tr '~-' '..')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The tree both Linux packages install.
stage=$work/stage
install -d "$stage/usr/bin" "$stage/etc/ehrbridge" "$stage/usr/share/ehrbridge" "$stage/usr/share/doc/ehrbridge" "$stage/lib/systemd/system"
install -m 0755 "$bin" "$stage/usr/bin/ehrbridge"
"$bin" service unit --config /etc/ehrbridge/ehrbridge.yaml --data-dir /var/lib/ehrbridge --exe /usr/bin/ehrbridge \
  > "$stage/lib/systemd/system/ehrbridge.service"
install -m 0640 "$pkg/ehrbridge.yaml" "$stage/etc/ehrbridge/ehrbridge.yaml"
cp -R "$root/configs/mappings" "$stage/usr/share/ehrbridge/mappings"
cp -R "$root/configs/samples" "$stage/usr/share/ehrbridge/samples"
# README.md links to docs/*.md: the same tree, so that its links work.
mkdir -p "$stage/usr/share/doc/ehrbridge/docs"
cp "$root/README.md" "$stage/usr/share/doc/ehrbridge/"
cp "$root"/docs/*.md "$stage/usr/share/doc/ehrbridge/docs/"
cp "$pkg/copyright" "$stage/usr/share/doc/ehrbridge/copyright"

# .deb
deb=$work/deb
cp -R "$stage" "$deb"
install -d "$deb/DEBIAN"
size=$(du -sk "$deb" | cut -f1)
cat > "$deb/DEBIAN/control" <<CONTROL
Package: ehrbridge
Version: $pkgver
Architecture: amd64
Maintainer: ehrbridge maintainers <ehrbridge@localhost>
Installed-Size: $size
Depends: passwd
Section: net
Priority: optional
Homepage: https://github.com/ehrbridge/ehrbridge
Description: EHR to CRM integration: HL7 v2 and FHIR into Salesforce or Dataverse
 ehrbridge receives HL7 v2 (MLLP) and FHIR R4 events from the EHR, maps them
 into CRM records (Salesforce Health Cloud, Dynamics 365), exactly once, and
 files coordinators' notes back into the EHR. Runs as the ehrbridge.service
 systemd unit under the ehrbridge system user; data in /var/lib/ehrbridge.
CONTROL
echo /etc/ehrbridge/ehrbridge.yaml > "$deb/DEBIAN/conffiles"
install -m 0755 "$pkg/deb/postinst" "$pkg/deb/prerm" "$pkg/deb/postrm" "$deb/DEBIAN/"
fakeroot dpkg-deb --build --root-owner-group "$deb" "$out/ehrbridge_${pkgver}_amd64.deb" >/dev/null

# .rpm
if command -v rpmbuild >/dev/null; then
  top=$work/rpm
  install -d "$top/SPECS" "$top/BUILD" "$top/RPMS" "$top/BUILDROOT"
  sed "s|@VERSION@|$rpmver|" "$pkg/rpm/ehrbridge.spec" > "$top/SPECS/ehrbridge.spec"
  rpmbuild -bb --quiet --define "_topdir $top" --define "stage $stage" --define "_build_id_links none" \
    "$top/SPECS/ehrbridge.spec" >/dev/null 2>"$work/rpm.err" || { cat "$work/rpm.err" >&2; exit 1; }
  cp "$top"/RPMS/x86_64/*.rpm "$out/"
else
  echo "rpmbuild not found (apt-get install rpm): no .rpm" >&2
fi

# Windows .zip
win=$work/ehrbridge-$pkgver-windows-amd64
install -d "$win"
cp "$exe" "$win/ehrbridge.exe"
cp "$pkg/ehrbridge-windows.yaml" "$win/ehrbridge.yaml"
cp "$pkg/windows/install.ps1" "$pkg/windows/uninstall.ps1" "$pkg/windows/README.txt" "$win/"
cp -R "$root/configs/mappings" "$win/mappings"
mkdir -p "$win/docs"
cp "$root/README.md" "$win/"
cp "$root"/docs/*.md "$win/docs/"
(cd "$work" && zip -qr "$out/ehrbridge-$pkgver-windows-amd64.zip" "$(basename "$win")")

# Windows .msi
if command -v wixl >/dev/null; then
  msiver=$(printf '%s' "$pkgver" | sed 's/[^0-9.].*//; s/\.$//'); [ -n "$msiver" ] || msiver=0.0.0
  # The mappings tree, harvested into a fragment.
  (cd "$win" && find mappings -type f | sort | wixl-heat --var var.SourceDir -p "" --component-group Mappings \
    --directory-ref=INSTALLDIR --win64 > "$work/mappings.wxs")
  (cd "$win" && wixl -a x64 -D Version="$msiver" -D SourceDir=. -D Win64=yes -o "$out/ehrbridge-$pkgver-windows-amd64.msi" \
    "$pkg/windows/ehrbridge.wxs" "$work/mappings.wxs")
  # wixl writes Execute="rollback" as nothing: make ServiceCreateRollback a
  # rollback action, 3442 = 50 (exe named by a property) + 64 (ignore its exit
  # code) + 256 (rollback) + 1024 (in the script) + 2048 (no impersonation).
  msibuild "$out/ehrbridge-$pkgver-windows-amd64.msi" \
    -q "UPDATE \`CustomAction\` SET \`Type\` = 3442 WHERE \`Action\` = 'ServiceCreateRollback'"
else
  echo "wixl not found (apt-get install msitools): no .msi" >&2
fi
ls -1 "$out"
