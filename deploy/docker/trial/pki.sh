#!/bin/sh
# pki.sh DIR: the Docker trial's certificates (deploy/docker/compose.yaml runs it as root in
# the edge-app image, DIR a volume). `python -m simulator certs` makes a CA, a broker
# certificate for "mosquitto" and client certificates for cam-001 (the device) and
# trial-cloud (the audit); each reader then gets its own folder, owned by its uid, 0700,
# keys 0600: broker/ for Mosquitto (uid 1883 in eclipse-mosquitto), device/ and cloud/ for
# the edge-app image's user (10001). The CA key stays in DIR/.all (root, 0700). Idempotent:
# valid certificates are kept.
set -eu
out=${1:?usage: pki.sh DIR}
all="$out/.all"
mkdir -p "$all"
chmod 0700 "$all"
python -m simulator certs "$all" --thing cam-001 --thing trial-cloud --server-name mosquitto

# put NAME UID CERT KEY: NAME/ca.crt, NAME/<cert>, NAME/<key> for uid UID
put() {
    dir="$out/$1"
    install -d -m 0700 -o "$2" -g "$2" "$dir"
    install -m 0644 -o "$2" -g "$2" "$all/ca.crt" "$dir/ca.crt"
    install -m 0644 -o "$2" -g "$2" "$all/$3.crt" "$dir/$4.crt"
    install -m 0600 -o "$2" -g "$2" "$all/$3.key" "$dir/$4.key"
}
put broker "${BROKER_UID:-1883}" server server
put device "${EDGE_APP_UID:-10001}" client-cam-001 client
put cloud "${EDGE_APP_UID:-10001}" client-trial-cloud client
echo "pki.sh: broker/, device/ and cloud/ in $out"
