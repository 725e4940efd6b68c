#!/bin/sh
# The web container's entry point: write the DNS settings nginx.conf includes, then run nginx.
#
# nginx resolves a name in `proxy_pass` once, at start, unless the name is in a variable; then it
# asks the `resolver` at request time and follows a changed address (a re-created Service, a
# managed object store whose addresses rotate behind the ExternalName alias). nginx's resolver
# reads no /etc/resolv.conf and applies no search domains, so this script writes both from the
# pod's own into /tmp (nginx.conf includes them): the cluster DNS's address(es) and the first
# search domain (<namespace>.svc.<cluster domain>), which minio-proxy-pass.conf appends to the
# Service name.
set -eu
resolv=${YUXI_RESOLV_CONF:-/etc/resolv.conf}
out=${YUXI_NGINX_DNS_DIR:-/tmp}
servers=$(awk '$1 == "nameserver" { printf "%s%s", sep, ($2 ~ /:/ ? "[" $2 "]" : $2); sep = " " }' "$resolv")
search=$(awk '$1 == "search" { print $2; exit }' "$resolv")
if [ -z "$servers" ] || [ -z "$search" ]; then
  echo "start.sh: no nameserver or search domain in $resolv" >&2
  exit 1
fi
# valid=10s: ask again at most 10 s after an answer, whatever the record's TTL.
printf 'resolver %s valid=10s;\nresolver_timeout 5s;\n' "$servers" >"$out/nginx-resolver.conf"
printf 'default "%s";\n' "$search" >"$out/nginx-dns-search.conf"
exec "${YUXI_NGINX:-nginx}" -e stderr -g 'daemon off;'
