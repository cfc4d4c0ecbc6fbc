#!/usr/bin/env python3
"""Synthesises Fixtures/multitier/multitier.pcap: a small multi-tier service, deterministic.

Internet clients -> edge load balancer (tcp/443) -> web tier (tcp/8080) -> payments API
(tcp/8443, over IPv4 and IPv6) -> orders database (tcp/5432); the web tier also uses a cache it
finds by DNS (cache.internal, tcp/6379) and NTP; the API calls api.stripe.com (a CNAME to a CDN)
on tcp/443; a monitoring host probes web and API (and pings web); one TCP conversation is seen
only midstream (its direction cannot be known); one connection to web is refused (tcp/8081).
Every packet has real checksums. The expected graph edges are in expected-edges.tsv (by hand).

With --bad, the same traffic and then web-2 turns bad: it probes peers and ports it never used
(the flows a policy suggested from the normal capture must block; expected-blocked.tsv).

    python3 Fixtures/multitier/make-capture.py Fixtures/multitier/multitier.pcap
    python3 Fixtures/multitier/make-capture.py Fixtures/multitier/multitier-bad.pcap --bad
"""
import struct, sys, ipaddress

T0 = 1767607200.0  # 2026-01-05T10:00:00Z
packets = []
clock = [T0]

def tick(dt=0.001):
    clock[0] += dt
    return clock[0]

def csum(data):
    if len(data) % 2: data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16: s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF

MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")

def ip_packet(src, dst, proto, payload):
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if s.version == 4:
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), len(packets) & 0xFFFF, 0x4000, 64, proto, 0, s.packed, d.packed)
        hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
        pseudo = s.packed + d.packed + struct.pack("!BBH", 0, proto, len(payload))
        return 0x0800, hdr, pseudo
    hdr = struct.pack("!IHBB16s16s", 0x60000000, len(payload), proto, 64, s.packed, d.packed)
    pseudo = s.packed + d.packed + struct.pack("!IxxxB", len(payload), proto)
    return 0x86DD, hdr, pseudo

def emit(src, dst, proto, l4_without_csum, csum_offset):
    ethertype, hdr, pseudo = ip_packet(src, dst, proto, l4_without_csum)
    c = csum(pseudo + l4_without_csum)
    l4 = l4_without_csum[:csum_offset] + struct.pack("!H", c) + l4_without_csum[csum_offset + 2:]
    frame = MAC_B + MAC_A + struct.pack("!H", ethertype) + hdr + l4
    packets.append((tick(), frame))

def tcp(src, sport, dst, dport, seq, ack, flags, data=b""):
    off = 5 << 12
    fl = {"S": 0x02, "A": 0x10, "F": 0x01, "R": 0x04, "P": 0x08}
    bits = sum(fl[c] for c in flags)
    seg = struct.pack("!HHIIHHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, off | bits, 64240, 0, 0) + data
    emit(src, dst, 6, seg, 16)

def udp(src, sport, dst, dport, data):
    seg = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    emit(src, dst, 17, seg, 6)

def icmp_echo(src, dst, ident, seqno, reply=False):
    t = 0 if reply else 8
    msg = struct.pack("!BBHHH", t, 0, 0, ident, seqno) + b"flowmap-ping" * 4
    emit(src, dst, 1, msg, 2)

def conversation(c, cport, s, sport, request=200, response=1200, rounds=1):
    """A full TCP connection: handshake, request/response rounds, FIN close."""
    cs, ss = 1000 + cport * 7, 50000 + sport * 3
    tcp(c, cport, s, sport, cs, 0, "S"); tcp(s, sport, c, cport, ss, cs + 1, "SA"); tcp(c, cport, s, sport, cs + 1, ss + 1, "A")
    cs += 1; ss += 1
    for _ in range(rounds):
        tcp(c, cport, s, sport, cs, ss, "PA", b"q" * request); cs += request
        tcp(s, sport, c, cport, ss, cs, "PA", b"r" * response); ss += response
        tcp(c, cport, s, sport, cs, ss, "A")
    tcp(c, cport, s, sport, cs, ss, "FA"); tcp(s, sport, c, cport, ss, cs + 1, "FA"); tcp(c, cport, s, sport, cs + 1, ss + 1, "A")
    tick(0.05)

def refused(c, cport, s, sport):
    tcp(c, cport, s, sport, 777, 0, "S"); tcp(s, sport, c, cport, 0, 778, "RA")
    tick(0.05)

def midstream(a, aport, b, bport):
    """Data both ways with no handshake: which side is the client cannot be known."""
    sa, sb = 9000, 19000
    for _ in range(3):
        tcp(a, aport, b, bport, sa, sb, "PA", b"m" * 100); sa += 100
        tcp(b, bport, a, aport, sb, sa, "PA", b"n" * 100); sb += 100
    tick(0.05)

def dns_name(n):
    return b"".join(bytes([len(p)]) + p.encode() for p in n.split(".")) + b"\0"

def dns(client, cport, resolver, qid, qname, answers):
    """A query and its response; answers: [(owner, 'A'|'AAAA'|'CNAME', value)], TTL 300."""
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + dns_name(qname) + struct.pack("!HH", 1, 1)
    udp(client, cport, resolver, 53, q)
    body = b""
    for owner, typ, value in answers:
        if typ == "A": rd, t = ipaddress.ip_address(value).packed, 1
        elif typ == "AAAA": rd, t = ipaddress.ip_address(value).packed, 28
        else: rd, t = dns_name(value), 5
        body += dns_name(owner) + struct.pack("!HHIH", t, 1, 300, len(rd)) + rd
    r = struct.pack("!HHHHHH", qid, 0x8180, 1, len(answers), 0, 0) + dns_name(qname) + struct.pack("!HH", 1, 1) + body
    udp(resolver, 53, client, cport, r)
    tick(0.01)

def ntp(client, server):
    udp(client, 123, server, 123, b"\x23" + b"\0" * 47)
    udp(server, 123, client, 123, b"\x24" + b"\0" * 47)
    tick(0.01)

RESOLVER, NTP = "10.0.0.2", "10.0.0.3"
LB = "10.0.0.10"
WEB1, WEB2, WEB1_6 = "10.0.1.11", "10.0.1.12", "fd00:1::11"
API, API_6 = "10.0.2.21", "fd00:2::21"
DB, CACHE = "10.0.3.31", "10.0.3.40"
MON = "10.0.9.7"
STRIPE = "192.0.2.44"
INTERNET = ["203.0.113.5", "203.0.113.77", "198.51.100.20"]

# Names first: the load balancer finds the web servers, web finds the cache, the API finds Stripe.
dns(LB, 40001, RESOLVER, 1, "web-1.internal", [("web-1.internal", "A", WEB1)])
dns(LB, 40002, RESOLVER, 2, "web-2.internal", [("web-2.internal", "A", WEB2)])
dns(WEB1, 40003, RESOLVER, 3, "cache.internal", [("cache.internal", "A", CACHE)])
dns(API, 40004, RESOLVER, 4, "api.stripe.com", [("api.stripe.com", "CNAME", "stripe-lb.cdn.example.net"),
                                                   ("stripe-lb.cdn.example.net", "A", STRIPE)])
ntp(WEB1, NTP)
port = 50000
for i, client in enumerate(INTERNET * 2):
    port += 1
    conversation(client, port, LB, 443, request=300, response=4000)
    web = WEB1 if i % 2 == 0 else WEB2
    conversation(LB, 41000 + i, web, 8080, request=300, response=3800)
    conversation(web, 42000 + i, API, 8443, request=250, response=600)
    conversation(API, 43000 + i, DB, 5432, request=120, response=900, rounds=2)
    if i % 3 == 0:
        conversation(web, 44000 + i, CACHE, 6379, request=40, response=80)
conversation(WEB1_6, 45000, API_6, 8443, request=250, response=600)
conversation(API, 46000, STRIPE, 443, request=500, response=700)
conversation(MON, 47000, WEB1, 8080, request=60, response=100)
conversation(MON, 47001, API, 8443, request=60, response=100)
icmp_echo(MON, WEB2, 7, 1); icmp_echo(WEB2, MON, 7, 1, reply=True)
refused(LB, 48000, WEB2, 8081)
midstream("10.0.5.5", 40000, "10.0.5.6", 41000)

if "--bad" in sys.argv:
    tick(5.0)
    refused(WEB2, 49001, DB, 5432)        # web never talked to the database
    refused(WEB2, 49002, API, 22)         # the API, on a port web never used
    refused(WEB2, 49003, WEB1, 8080)      # a peer in its own tier
    refused(WEB2, 49004, DB, 3306)        # a port nobody serves on the database host
    refused(WEB2, 49005, "10.0.7.7", 445) # a host nobody knows
    conversation(WEB2, 49006, API, 8443, request=250, response=600)   # and normal traffic goes on

args = [a for a in sys.argv[1:] if not a.startswith("--")]
out = args[0] if args else "multitier.pcap"
with open(out, "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for ts, frame in packets:
        sec = int(ts); usec = int(round((ts - sec) * 1e6))
        if usec == 1000000: sec, usec = sec + 1, 0
        f.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
print("%s: %d packets" % (out, len(packets)))
