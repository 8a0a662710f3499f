#!/usr/bin/env bash
# The Python that the nodes run (copied verbatim from the overlays) and its tests: it compiles
# under python3, and pyflakes (Debian: pyflakes3) finds no undefined name, unused import or variable.
set -euo pipefail
cd "$(dirname "$0")/.."
files=(overlays/galera/usr/local/lib/netroot/galera-recovery test/overlays/galera-recovery/*.py)
if ! command -v pyflakes3 >/dev/null; then
  echo "scripts/lint-python.sh: pyflakes3 is missing; apt-get install -y pyflakes3" >&2
  exit 3
fi
python3 -c 'import sys
for name in sys.argv[1:]:
    with open(name, encoding="utf-8") as handle:
        compile(handle.read(), name, "exec")' "${files[@]}"
pyflakes3 "${files[@]}"
