#!/usr/bin/env bash
# Adds a device's login to the broker's password file and prints the agent's
# [mqtt] section for it.
#
#   sudo deploy/mosquitto/add-device.sh [options] DEVICE_ID
#
#   --passwd FILE    the broker's password file (default /etc/mosquitto/glasswatch.passwd;
#                    created, root:mosquitto 0640, if missing)
#   --out DIR        where to write DEVICE_ID.pass, the password for the device
#                    (default: the current directory; the file is mode 0600)
#   --broker HOST[:PORT]   put this broker in the printed snippet
#                    (default broker.example.net:8883)
#   --replace        give an existing device a new password (rotation)
#
# The user name is the device id (the agent's device_id), which the ACL
# (glasswatch.acl) uses to let the device write its own topics only. The id
# must be 1 to 64 characters from a-z, 0-9, `_` and `-`, like every device id;
# `glasswatch-collector` and `subscriber` are taken by the collector and
# read-only roles. The password is 32 random characters; it is handed to
# mosquitto_passwd on its standard input (never on a command line, where any
# local user could read it with ps) and written to DEVICE_ID.pass only.
# Copy that file to the device, then delete it here.
#
# The broker reads the password file again on SIGHUP:
#   sudo systemctl reload mosquitto
set -euo pipefail

passwd_file=/etc/mosquitto/glasswatch.passwd
out_dir=.
broker=broker.example.net:8883
replace=false
device=

usage() {
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

while [ $# -gt 0 ]; do
  case "$1" in
    --passwd) [ $# -ge 2 ] || usage; passwd_file="$2"; shift 2 ;;
    --out) [ $# -ge 2 ] || usage; out_dir="$2"; shift 2 ;;
    --broker) [ $# -ge 2 ] || usage; broker="$2"; shift 2 ;;
    --replace) replace=true; shift ;;
    -h|--help) usage ;;
    -*) echo "unknown option: $1" >&2; usage ;;
    *) [ -z "$device" ] || usage; device="$1"; shift ;;
  esac
done
[ -n "$device" ] || usage

# The device grammar of DESIGN.md; anything else could widen the ACL patterns
# (a `/` adds topic levels, `+` and `#` are wildcards) or break the topics.
if ! [[ "$device" =~ ^[a-z0-9_-]{1,64}$ ]]; then
  echo "refusing device id '$device': use 1 to 64 characters from a-z, 0-9, _ and -" >&2
  exit 1
fi
case "$device" in
  glasswatch-collector|subscriber)
    echo "refusing device id '$device': glasswatch.acl gives that user name to a role (collector or read-only)" >&2
    exit 1 ;;
esac
case "$broker" in
  *:*) ;;
  *) broker="$broker:8883" ;;
esac

command -v mosquitto_passwd >/dev/null || { echo "mosquitto_passwd not found (apt-get install mosquitto)" >&2; exit 1; }
[ -d "$out_dir" ] || { echo "no such directory: $out_dir" >&2; exit 1; }
pass_out="$out_dir/$device.pass"

if [ ! -e "$passwd_file" ]; then
  # Readable by the broker after it drops root to the mosquitto user, by no one else.
  ( umask 027; : > "$passwd_file" )
  if [ "$(id -u)" = 0 ] && getent group mosquitto >/dev/null; then
    chgrp mosquitto "$passwd_file"
  fi
fi
if grep -q "^${device}:" "$passwd_file" && [ "$replace" != true ]; then
  echo "device '$device' already has a password in $passwd_file; add --replace to give it a new one" >&2
  exit 1
fi
if [ -e "$pass_out" ] && [ "$replace" != true ]; then
  echo "$pass_out exists; add --replace to overwrite it" >&2
  exit 1
fi

# 24 random bytes as 32 base64 characters, kept in this shell only.
password="$(head -c 24 /dev/urandom | base64 | tr -d '\n')"
# mosquitto_passwd asks twice, reading standard input when it is not a
# terminal; printf is a bash builtin, so the password is in no process's
# arguments. (mosquitto_passwd -b would put it on the command line.)
# The device's copy first: a password the broker knows and nobody else does
# would be of no use.
( umask 077; printf '%s\n' "$password" > "$pass_out" )
if ! printf '%s\n%s\n' "$password" "$password" | mosquitto_passwd "$passwd_file" "$device" >/dev/null; then
  rm -f "$pass_out"
  echo "mosquitto_passwd failed for $device in $passwd_file" >&2
  exit 1
fi
unset password

host="${broker%:*}"
cat <<EOF
Added '$device' to $passwd_file; reload the broker: sudo systemctl reload mosquitto

Its password is in $pass_out. On the device, install it as root-only
/etc/glasswatch/mqtt.pass and hand it to the agent (which runs as a dynamic
user) through systemd (docs/deployment.md, "An external MQTT broker"):
  sudo install -m 0600 $device.pass /etc/glasswatch/mqtt.pass
  sudo systemctl edit glasswatch-agent   # [Service] LoadCredential=mqtt.pass:/etc/glasswatch/mqtt.pass
then delete $pass_out here. In /etc/glasswatch/agent.toml on the device:

device_id = "$device"

[mqtt]
url = "mqtts://$broker"
username = "$device"
password_file = "/run/credentials/glasswatch-agent.service/mqtt.pass"
# The CA that signed the broker's certificate (/etc/mosquitto/certs/ca.pem on
# the broker); leave out when $host has a certificate from a public CA.
ca_file = "/etc/glasswatch/ca.pem"
EOF
