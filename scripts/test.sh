#!/usr/bin/env bash
# Runs every test leadmail has: formatting, lints, unit, golden and end-to-end
# tests. Installs what the tests need when it is missing (Debian, as root).
# Usage: scripts/test.sh            (from anywhere in the repository)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

# --- prerequisites -----------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1; then
    echo "scripts/test.sh: cargo not found; install the Rust toolchain (https://rustup.rs)" >&2
    exit 2
fi
if command -v rustup >/dev/null 2>&1; then
    for component in rustfmt clippy; do
        rustup component list --installed 2>/dev/null | grep -q "^${component}" \
            || rustup component add "$component"
    done
fi

# The end-to-end tests start private Dovecot and Postfix instances (on free
# loopback ports, in temporary directories); install the packages if missing.
# (The fault tests also use unshare, nsenter and mount from util-linux, which
# every Debian has, and need root for a private tmpfs.)
missing=()
[[ -x /usr/sbin/dovecot ]] || missing+=(dovecot-imapd dovecot-lmtpd)
[[ -x /usr/lib/postfix/sbin/master ]] || missing+=(postfix)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# The store's suites also run on PostgreSQL: a private cluster per test
# (tests/harness/postgres.sh), so only the server binaries are needed.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
# The offer page's browser test: headless Chromium driven by chromedriver.
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium chromium-driver)
if (( ${#missing[@]} )); then
    if [[ $(id -u) != 0 ]]; then
        echo "scripts/test.sh: as root, install: apt-get install ${missing[*]}" >&2
        exit 2
    fi
    log "installing ${missing[*]}"
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- checks --------------------------------------------------------------------
log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

log "cargo test"
results=$(mktemp)
trap 'rm -f "$results"' EXIT
set +e
cargo test --all-targets --locked --no-fail-fast 2>&1 | tee "$results"
status=${PIPESTATUS[0]}

# Every suite that touches the database, again on PostgreSQL (the failover
# test in tests/cluster.rs runs on PostgreSQL in the first pass already).
log "cargo test (PostgreSQL)"
LEADMAIL_TEST_DATABASE=postgres cargo test --locked --no-fail-fast \
    --test cli --test routing --test offers --test daemon --test notify \
    --test operability --test faults --test robustness --test browser 2>&1 | tee -a "$results"
pg_status=${PIPESTATUS[0]}
(( status != 0 )) || status=$pg_status
set -e

# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i+1) ~ /^passed/) p += $i
            if ($(i+1) ~ /^failed/) f += $i
        }
     }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$results"
exit "$status"
