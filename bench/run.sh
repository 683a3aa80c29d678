#!/usr/bin/env bash
# Runs every benchmark and prints one line per figure, each a ratio against a
# baseline measured in the same run. Sets up what it needs: a private
# Dovecot (the test harness), SQLite in a temporary directory, a private
# PostgreSQL cluster.
#   bench/run.sh                 # default sizes (10k-message ingest)
#   bench/run.sh --size full     # the issue's full sizes (100k-message backlog)
#   bench/run.sh --size smoke    # tiny, to keep the script from rotting (CI)
#   bench/run.sh parse ingest    # only some figures
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
[[ -x /usr/sbin/dovecot ]] || missing+=(dovecot-imapd dovecot-lmtpd)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v getmail >/dev/null 2>&1 || missing+=(getmail6)   # the peer in ingest
# The PostgreSQL ingest figure runs on a private cluster (tests/harness/postgres.sh).
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
if (( ${#missing[@]} )); then
    [[ $(id -u) == 0 ]] || { echo "bench/run.sh: as root, install: apt-get install ${missing[*]}" >&2; exit 2; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
cargo build --release --locked --bin leadmail 2>&1 | tail -1 >&2
exec cargo bench --locked --bench figures -- "$@"
