#!/usr/bin/env bash
# Builds what a release ships, from this checkout:
#
#   OUT/drctl-VERSION-ARCH-linux.tar.gz         the archive
#   OUT/drctl-VERSION-ARCH-linux.tar.gz.sha256  its SHA-256 (`sha256sum -c` reads it)
#
# The archive holds one folder, drctl-VERSION-ARCH-linux/, with the binary
# (bin/drctl), its man pages (share/man/man1/*.1, from `drctl man`),
# LICENSE and README.md. Its URL and SHA-256 are what the Terraform module's
# drctl_release_url and drctl_release_sha256 take (docs/install.md).
#
# Usage: scripts/release.sh [OUT]   (OUT defaults to target/dist)
# Needs only a Rust toolchain (no protoc), tar, gzip and sha256sum.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/dist}
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

version=$(cargo pkgid -p drctl | sed 's/.*[#@]//')
arch=$(uname -m)
name="drctl-$version-$arch-linux"
case "$version" in *[!0-9A-Za-z.+-]*|"") echo "release: odd version '$version' from cargo pkgid" >&2; exit 1;; esac

echo "release: building $name (cargo build --release --locked)"
cargo build --release --locked -p drctl
bin=${CARGO_TARGET_DIR:-target}/release/drctl

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/$name"
mkdir -p "$root/bin" "$root/share/man/man1"
install -m 0755 "$bin" "$root/bin/drctl"
"$root/bin/drctl" man "$root/share/man/man1" >/dev/null
install -m 0644 LICENSE README.md "$root/"

# The same sources give the same archive: file order, owners and times
# fixed (the last commit's time), gzip without a timestamp.
epoch=$(git log -1 --format=%ct 2>/dev/null || echo 0)
mkdir -p "$out"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -C "$stage" -cf - "$name" \
  | gzip -9n > "$out/$name.tar.gz"
(cd "$out" && sha256sum "$name.tar.gz" > "$name.tar.gz.sha256")

echo "release: $out/$name.tar.gz ($(du -h "$out/$name.tar.gz" | cut -f1); drctl itself $(du -h "$bin" | cut -f1))"
cat "$out/$name.tar.gz.sha256"
