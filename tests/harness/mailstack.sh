#!/usr/bin/env bash
# A private, throw-away mail stack for leadmail's tests: Dovecot (IMAP, IMAPS,
# LMTP) and, optionally, Postfix delivering into it over LMTP. Everything
# lives in DIR and listens on 127.0.0.1 only; nothing global is touched.
#
#   tests/harness/mailstack.sh start DIR     # then read DIR/mailstack.env
#   tests/harness/mailstack.sh stop DIR
#
# Ports come from the environment (the Rust harness picks free ones):
#   IMAP_PORT IMAPS_PORT LMTP_PORT [SASL_PORT SMTP_PORT]   (SMTP_PORT set: start Postfix)
# MAILSTACK_USERS="user@dom:password ..." lists the accounts.
# Needs Debian's dovecot-imapd dovecot-lmtpd openssl (and postfix for SMTP);
# scripts/test.sh installs them. Derived from the recipe in shared/mailstack.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

die() { echo "mailstack: $*" >&2; exit 1; }
now_ms() { date +%s%3N; }

# A listening socket is not a ready server: wait for the greeting.
wait_banner() { # port prefix seconds
  local deadline=$(( $(now_ms) + $3 * 1000 )) line
  while (( $(now_ms) < deadline )); do
    if { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null; then
      line=""; IFS= read -r -t 2 line <&3 || true; exec 3<&- 3>&-
      [[ $line == "$2"* ]] && return 0
    fi
    sleep 0.05
  done
  return 1
}

alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $st != Z* ]]; }
# Whether any live (non-zombie) process remains in process group $1.
group_alive() { ps -o stat= -g "$1" 2>/dev/null | grep -qv '^Z'; }

start() {
  local DIR; mkdir -p "$1"; DIR=$(cd "$1" && pwd)
  : "${IMAP_PORT:?}" "${IMAPS_PORT:?}" "${LMTP_PORT:?}"
  local SASL_PORT=${SASL_PORT:-0} SMTP_PORT=${SMTP_PORT:-}
  local USERS=${MAILSTACK_USERS:-"leads@brokerage.test:secret agent@brokerage.test:secret"}
  command -v dovecot >/dev/null || die "dovecot is not installed"
  trap 'stop "$DIR" >/dev/null 2>&1 || true' EXIT

  local ME MYGROUP LOGIN_USER MAIL_UID MAIL_GID CHROOT_OFF=""
  ME=$(id -un); MYGROUP=$(id -gn)
  if [[ $(id -u) == 0 ]]; then
    # Dovecot refuses root for logins and mail access.
    LOGIN_USER=$(getent passwd dovenull >/dev/null && echo dovenull || echo nobody)
    MAIL_UID=nobody; MAIL_GID=$(getent group nogroup >/dev/null && echo nogroup || echo nobody)
  else
    LOGIN_USER=$ME; MAIL_UID=$ME; MAIL_GID=$MYGROUP
    CHROOT_OFF=$'service anvil {\n  chroot =\n}\nservice imap-login {\n  chroot =\n}'
  fi
  local DV=$DIR/dovecot SSL=$DIR/ssl MAIL=$DIR/mail
  mkdir -p "$DV/state" "$SSL" "$MAIL"
  chmod 755 "$DIR"; chown "$MAIL_UID:$MAIL_GID" "$MAIL"
  # A private CA (what tests trust, as ca_file) and a server certificate it
  # signs: rustls/webpki rejects a self-signed CA certificate used as the
  # server's own.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj "/CN=leadmail test CA" -keyout "$SSL/ca.key" -out "$SSL/ca.pem" 2>/dev/null \
    || die "openssl (CA) failed"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=localhost" -keyout "$SSL/key.pem" -out "$SSL/server.csr" 2>/dev/null \
    || die "openssl (key) failed"
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$SSL/ext.cnf"
  openssl x509 -req -in "$SSL/server.csr" -CA "$SSL/ca.pem" -CAkey "$SSL/ca.key" -CAcreateserial \
    -days 30 -extfile "$SSL/ext.cnf" -out "$SSL/cert.pem" 2>/dev/null || die "openssl (sign) failed"
  chmod 644 "$SSL/cert.pem" "$SSL/ca.pem"

  local u domains="" rcpts=""
  : > "$DV/users"
  for u in $USERS; do
    echo "${u%%:*}:{PLAIN}${u#*:}" >> "$DV/users"
    rcpts+="${rcpts:+, }${u%%:*}=OK"
    local d=${u%%:*}; d=${d#*@}; [[ " $domains " == *" $d "* ]] || domains+="${domains:+ }$d"
  done

  cat > "$DV/dovecot.conf" <<CONF
instance_name = leadmail-test-$IMAP_PORT
base_dir = $DV/run
state_dir = $DV/state
log_path = $DV/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
default_internal_user = $ME
default_internal_group = $MYGROUP
default_login_user = $LOGIN_USER
mail_uid = $MAIL_UID
mail_gid = $MAIL_GID
mail_location = maildir:~/Maildir
mailbox_idle_check_interval = 1 secs
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
ssl = yes
ssl_cert = <$SSL/cert.pem
ssl_key = <$SSL/key.pem
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $DV/users
}
userdb {
  driver = static
  args = home=$MAIL/%d/%n
}
protocol imap {
  mail_max_userip_connections = 1000
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_PORT
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $IMAPS_PORT
    ssl = yes
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $LMTP_PORT
  }
}
service auth {
  inet_listener {
    address = 127.0.0.1
    port = $SASL_PORT
  }
}
$CHROOT_OFF
CONF
  dovecot -c "$DV/dovecot.conf" 2> "$DV/start.err" || { cat "$DV/start.err" >&2; die "dovecot failed to start"; }
  wait_banner "$IMAP_PORT" "* OK" 10 || { cat "$DV/dovecot.log" >&2; die "IMAP not answering"; }

  if [[ -n $SMTP_PORT ]]; then
    [[ $(id -u) == 0 ]] || die "postfix needs root"
    local PF=$DIR/postfix
    mkdir -p "$PF/etc" "$PF/queue" "$PF/data"; chown postfix "$PF/data"
    cat > "$PF/etc/main.cf" <<CONF
compatibility_level = 3.6
queue_directory = $PF/queue
data_directory = $PF/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = $PF/postfix.log
maillog_file_prefixes = $PF
myhostname = mail.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
virtual_mailbox_domains = $domains
virtual_mailbox_maps = inline:{ $rcpts }
virtual_transport = lmtp:inet:127.0.0.1:$LMTP_PORT
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtp_dns_support_level = disabled
lmtp_host_lookup = native
smtpd_peername_lookup = no
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:127.0.0.1:$SASL_PORT
smtpd_tls_security_level = may
smtpd_tls_cert_file = $SSL/cert.pem
smtpd_tls_key_file = $SSL/key.pem
CONF
    cat > "$PF/etc/master.cf" <<CONF
127.0.0.1:$SMTP_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
CONF
    # Postfix waits for config files to be a second old; backdate them.
    touch -d '-1 min' "$PF/etc/"*
    postfix -c "$PF/etc" start >/dev/null 2>&1 || { cat "$PF/postfix.log" >&2 2>/dev/null; die "postfix failed"; }
    wait_banner "$SMTP_PORT" "220 " 10 || die "SMTP not answering"
  fi
  {
    echo "IMAP_PORT=$IMAP_PORT"; echo "IMAPS_PORT=$IMAPS_PORT"; echo "LMTP_PORT=$LMTP_PORT"
    [[ -n $SMTP_PORT ]] && echo "SMTP_PORT=$SMTP_PORT"
    echo "TLS_CA=$SSL/ca.pem"; echo "DOVECOT_CONF=$DV/dovecot.conf"
  } > "$DIR/mailstack.env"
  trap - EXIT
}

stop() {
  local DIR; DIR=$(cd "$1" && pwd) || return 0
  local f pid pids=()
  for f in postfix/queue/pid/master.pid dovecot/run/master.pid; do
    [[ -s $DIR/$f ]] || continue
    pid=$(tr -d ' ' < "$DIR/$f")
    alive "$pid" || continue
    if [[ -n ${MAILSTACK_FAST_STOP:-} ]]; then kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"; else kill -TERM "$pid"; fi
    pids+=("$pid")
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 200); do alive "$pid" || break; sleep 0.05; done
    alive "$pid" && { kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; }
    # The master's children (auth, anvil, imap-login...) are in its process
    # group and may outlive it briefly, still holding their ports: wait for
    # all of them, so that a restart on the same ports can bind.
    for _ in $(seq 1 200); do group_alive "$pid" || break; sleep 0.05; done
    group_alive "$pid" && { kill -KILL -- "-$pid" 2>/dev/null || true; sleep 0.1; }
  done
  return 0
}

case ${1:-} in
  start) start "${2:?usage: $0 start DIR}" ;;
  stop) stop "${2:?usage: $0 stop DIR}" ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
