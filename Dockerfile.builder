# netroot builder image: Node 20 and the tools build-images calls.
#   docker build -f Dockerfile.builder -t netroot .
#   docker run --rm -v "$PWD:/work" netroot --profile opz3
# Where no image registry is reachable (podman; docs/tests-and-ci.md, "The builder image in CI"), FROM is
# replaced by a Debian base with this machine's Node, imported from the cache:
#   podman build --isolation chroot --network host --from "$(scripts/builder-base.sh)" \
#     -f Dockerfile.builder -t localhost/netroot-builder .
# Dockerfile.artifacts then builds a profile's artifacts inside it.
FROM node:20-bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates tar gzip xz-utils zstd e2fsprogs libcap2-bin attr \
      mmdebstrap qemu-user-static u-boot-tools \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/netroot
COPY package.json package-lock.json tsconfig.json ./
COPY bin ./bin
COPY src ./src
# npm ci compiles src (prepare); dev dependencies are dropped afterwards.
RUN npm ci --no-audit --no-fund && npm prune --omit=dev && npm cache clean --force
COPY overlays ./overlays
COPY profiles/*.yaml profiles/profile.schema.json ./profiles/
RUN ln -s /opt/netroot/bin/build-images.js /usr/local/bin/build-images

WORKDIR /work
ENTRYPOINT ["node", "/opt/netroot/bin/build-images.js"]
