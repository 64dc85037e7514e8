#!/usr/bin/env bash
# Install a system Julia on Debian 12, which has no julia package: Debian 11
# (bullseye) ships julia 1.5.3, which runs on Debian 12.  The bullseye source
# is derived from the machine's own configured Debian source (same mirror,
# same keyring); only the Suites line changes, so no host name is written here.
set -euo pipefail

if command -v julia >/dev/null 2>&1 && [[ "$(julia --version)" != "julia version 1.5."* ]]; then
    echo "install-julia: $(julia --version) already present"
    exit 0
fi
if command -v julia >/dev/null 2>&1 && dpkg-query -W -f='${Version}' libunwind8 2>/dev/null | grep -q '^1\.3'; then
    echo "install-julia: $(julia --version) with bullseye's libunwind already present"
    exit 0
fi

src=/etc/apt/sources.list.d/debian.sources
dst=/etc/apt/sources.list.d/ramble-bullseye.sources
if [[ ! -f "$src" ]]; then
    echo "install-julia: $src not found; install Julia >= 1.5 by hand (juliaup or official binaries)" >&2
    exit 1
fi
# First stanza whose Suites line names the main (non-security) suite.
awk 'BEGIN { RS = ""; ORS = "\n\n" }
     /\nSuites:[^\n]*bookworm( |$|\n)/ && !done {
         sub(/\nSuites:[^\n]*/, "\nSuites: bullseye"); print; done = 1 }' "$src" > "$dst"
if ! grep -q '^Suites: bullseye$' "$dst"; then
    echo "install-julia: could not derive a bullseye source from $src" >&2
    rm -f "$dst"
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Debian 12's libunwind8 (1.6) segfaults while unwinding Julia 1.5's JIT code,
# so every Julia exception would kill the process: take bullseye's 1.3 with it.
apt-get install -y -qq --no-install-recommends --allow-downgrades julia libunwind8/bullseye >/dev/null
echo "install-julia: $(julia --version) installed"
