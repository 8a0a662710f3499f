#!/usr/bin/env bash
# Prints the name of a local podman image to give `podman build --from` for
# Dockerfile.builder where no image registry is reachable: Debian bookworm
# (mmdebstrap, minbase) with this machine's Node (the same binary that builds
# outside the image, so both sides compress with the same zlib), imported into
# podman. The root filesystem is made once and kept in the cache
# ($XDG_CACHE_HOME/netroot/builder); a machine whose podman storage lacks the
# image imports it again from there. Needs root, mmdebstrap and podman.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then echo "builder-base.sh: run as root (mmdebstrap, podman)" >&2; exit 2; fi
for tool in mmdebstrap podman node; do
  command -v "$tool" >/dev/null || { echo "builder-base.sh: $tool is not installed (apt-get install $tool)" >&2; exit 2; }
done

node_bin=$(readlink -f "$(command -v node)")
node_version=$(node --version)
# npm sits next to the binary's prefix: /usr/lib/node_modules (Debian, NodeSource) or PREFIX/lib/node_modules.
node_prefix=$(dirname "$(dirname "$node_bin")")
node_modules=$node_prefix/lib/node_modules
[ -f "$node_modules/npm/bin/npm-cli.js" ] || { echo "builder-base.sh: no npm at $node_modules/npm" >&2; exit 2; }

# The certificate authorities this machine adds to Debian's (/usr/local/share/ca-certificates,
# e.g. a proxy's that re-signs https) go into the base too, or npm ci inside the build cannot
# reach the registry that npm reaches here. They are part of the cache key.
local_cas=/usr/local/share/ca-certificates
cas=$( (cd "$local_cas" 2>/dev/null && find . -type f -name '*.crt' -print0 | LC_ALL=C sort -z | xargs -0r sha256sum) | sha256sum | cut -c1-12)

arch=$(dpkg --print-architecture)
image=localhost/netroot-node-bookworm:${node_version#v}-$arch-$cas
cache=${XDG_CACHE_HOME:-$HOME/.cache}/netroot/builder
tarball=$cache/node-${node_version#v}-bookworm-$arch-$cas.tar

if [ ! -f "$tarball" ]; then
  mkdir -p "$cache"
  staging=$(mktemp "$cache/.staging.XXXXXX")
  trap 'rm -f "$staging"' EXIT
  ca_hooks=()
  if [ -d "$local_cas" ]; then
    ca_hooks=(--customize-hook="mkdir -p \"\$1$local_cas\"" --customize-hook="sync-in $local_cas $local_cas"
              --customize-hook="chroot \"\$1\" update-ca-certificates")
  fi
  # minbase has no CA certificates; npm ci inside the build needs them (and node's own store
  # does not cover apt). The hooks copy Node in and put npm and npx on PATH as the .deb does.
  mmdebstrap --quiet --variant=minbase --architectures="$arch" --format=tar \
    --include=ca-certificates,libstdc++6 \
    --customize-hook="copy-in $node_bin /usr/bin" \
    --customize-hook="mkdir -p \"\$1/usr/lib/node_modules/npm\"" \
    --customize-hook="sync-in $node_modules/npm /usr/lib/node_modules/npm" \
    --customize-hook="chroot \"\$1\" ln -sf ../lib/node_modules/npm/bin/npm-cli.js /usr/bin/npm" \
    --customize-hook="chroot \"\$1\" ln -sf ../lib/node_modules/npm/bin/npx-cli.js /usr/bin/npx" \
    "${ca_hooks[@]}" \
    --customize-hook="chroot \"\$1\" node --version" \
    bookworm "$staging" >&2
  mv "$staging" "$tarball"
  trap - EXIT
fi

if ! podman image exists "$image"; then
  # Node trusts Debian's store too (as npm and node do here), local authorities included.
  podman import --quiet --change 'CMD ["node"]' --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
    "$tarball" "$image" >/dev/null
fi
echo "$image"
