#!/usr/bin/env bash
# Test hosts for the agent's namespace tests (run as root; only our own namespaces and
# addresses: 10.213.0.0/24 on a veth pair, and the VIP 10.214.0.100).
#   netns.sh up TAG DIR    server namespace fm-s-TAG (10.213.0.2 and fd42:213::2, nft DNAT VIP:80 -> :8080,
#                          python3 http.server on :8080 as user nobody serving DIR, socat on
#                          :8081 and [fd42:213::2]:8082 answering after 300 ms) and client
#                          namespace fm-c-TAG (10.213.0.1)
#   netns.sh down TAG      kills what runs in them and deletes them
set -euo pipefail
cmd=$1 tag=$2
srv=fm-s-$tag cli=fm-c-$tag
# Runs a command in the background without the caller's descriptors (a test harness may wait
# for their end to know that this script is done).
in_srv_detached() {
  (
    for fd in /proc/$BASHPID/fd/*; do
      n=${fd##*/}
      [ "$n" -gt 2 ] && eval "exec $n>&-" 2>/dev/null
    done
    exec "$@" </dev/null >/dev/null 2>&1
  ) &
}

case "$cmd" in
up)
  dir=$3
  ip netns add "$srv"
  ip netns add "$cli"
  ip link add "fms$tag" type veth peer name "fmc$tag"
  ip link set "fms$tag" netns "$srv"
  ip link set "fmc$tag" netns "$cli"
  ip -n "$srv" addr add 10.213.0.2/24 dev "fms$tag"
  ip -n "$cli" addr add 10.213.0.1/24 dev "fmc$tag"
  for ns in "$srv" "$cli"; do ip -n "$ns" link set lo up; done
  ip -n "$srv" link set "fms$tag" up
  ip -n "$cli" link set "fmc$tag" up
  ip -n "$cli" route add 10.214.0.100/32 via 10.213.0.2
  ip -n "$srv" addr add fd42:213::2/64 dev "fms$tag" nodad
  ip -n "$cli" addr add fd42:213::1/64 dev "fmc$tag" nodad
  # Conntrack runs in a namespace once a rule needs it: DNAT for the VIP, and a ct match.
  ip netns exec "$srv" nft -f - <<'NFT'
table ip fmtest {
  chain pre { type nat hook prerouting priority -100; ip daddr 10.214.0.100 tcp dport 80 dnat to 10.213.0.2:8080; }
  chain out { type nat hook output priority -100; ip daddr 10.214.0.100 tcp dport 80 dnat to 10.213.0.2:8080; }
  chain in { type filter hook input priority 0; ct state new counter accept; }
}
NFT
  mkdir -p "$dir"
  head -c 200000 /dev/zero | tr '\0' 'x' > "$dir/blob"
  printf '#!/bin/sh\nsleep 0.3\nprintf "HTTP/1.0 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok"\n' > "$dir/slow-reply"
  chmod +x "$dir/slow-reply"
  chmod -R a+rX "$dir"
  in_srv_detached ip netns exec "$srv" setpriv --reuid=65534 --regid=65534 --clear-groups \
    /usr/bin/python3 -m http.server 8080 --bind 0.0.0.0 --directory "$dir"
  # A slow responder (300 ms), so that a local client certainly outlives the agent's lookup;
  # the same over IPv6.
  in_srv_detached ip netns exec "$srv" socat TCP-LISTEN:8081,bind=10.213.0.2,fork,reuseaddr EXEC:"$dir/slow-reply"
  in_srv_detached ip netns exec "$srv" socat TCP6-LISTEN:8082,bind=[fd42:213::2],fork,reuseaddr EXEC:"$dir/slow-reply"
  for _ in $(seq 100); do
    n=$(ip netns exec "$srv" ss -ltnH '( sport = :8080 or sport = :8081 or sport = :8082 )' | grep -c LISTEN || true)
    [ "$n" -ge 3 ] && exit 0
    sleep 0.05
  done
  echo "netns.sh: the test server did not start" >&2
  exit 1
  ;;
down)
  for ns in "$srv" "$cli"; do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [ -n "$pids" ] && kill $pids 2>/dev/null || true
  done
  sleep 0.1
  for ns in "$srv" "$cli"; do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  ;;
esac
