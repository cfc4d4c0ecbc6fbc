/*
 * Deterministic synthetic capture for flowmap's benchmark (fixed seed, no randomness from the
 * environment). Writes a classic little-endian microsecond pcap (LINKTYPE_ETHERNET) with:
 *   - TCP connections with handshakes, data both ways and FIN closes, plus rejected (RST) and
 *     unanswered (S0) attempts;
 *   - DNS queries and responses with real A/AAAA answers (some through a CNAME);
 *   - other UDP exchanges, ICMP echo pairs;
 *   - about 20% IPv6 and 30% of flows behind an 802.1Q tag.
 * Flows run interleaved in windows of 512 concurrent flows, 2 µs of packet time apart.
 *
 * usage: gen-capture FLOWS OUTPUT.pcap      (prints packets and flows written)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static uint64_t next_rand(void) {  /* xorshift64* */
    rng ^= rng >> 12; rng ^= rng << 25; rng ^= rng >> 27;
    return rng * 2685821657736338717ULL;
}
static uint32_t rnd(uint32_t n) { return (uint32_t)(next_rand() % n); }

static FILE *out;
static uint64_t packets, ts_us = 1700000000ULL * 1000000ULL;
static unsigned char frame[2048];

static void put16(unsigned char *p, unsigned v) { p[0] = v >> 8; p[1] = v & 0xff; }
static void put32(unsigned char *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }

enum { TCP = 6, UDP = 17, ICMP = 1, ICMP6 = 58 };

typedef struct {
    int v6, vlan, proto;
    unsigned char a[16], b[16];   /* client, server */
    unsigned sport, dport;
    uint32_t seq_c, seq_s;
    int kind, step, nsteps;
    unsigned dns_id;
    uint32_t name_id;
} flow_t;

/* Writes one frame: Ethernet (+VLAN) + IP + L4 header + payload of `plen` bytes. */
static void emit(flow_t *f, int from_client, int l4, unsigned flags, uint32_t seq, uint32_t ack,
                 const unsigned char *payload, int plen, int icmp_type) {
    unsigned char *p = frame;
    memset(p, 0, 12); p[5] = from_client ? 1 : 2; p[11] = from_client ? 2 : 1;
    p += 12;
    if (f->vlan) { put16(p, 0x8100); put16(p + 2, f->vlan); p += 4; }
    put16(p, f->v6 ? 0x86DD : 0x0800); p += 2;
    const unsigned char *src = from_client ? f->a : f->b, *dst = from_client ? f->b : f->a;
    int l4len = (l4 == TCP ? 20 : 8) + plen;
    if (f->v6) {
        p[0] = 0x60; p[1] = p[2] = p[3] = 0; put16(p + 4, l4len);
        p[6] = l4 == ICMP ? ICMP6 : l4; p[7] = 64;
        memcpy(p + 8, src, 16); memcpy(p + 24, dst, 16); p += 40;
    } else {
        p[0] = 0x45; p[1] = 0; put16(p + 2, 20 + l4len); put16(p + 4, (unsigned)(packets & 0xffff));
        p[6] = 0x40; p[7] = 0; p[8] = 64; p[9] = l4; p[10] = p[11] = 0;
        memcpy(p + 12, src, 4); memcpy(p + 16, dst, 4); p += 20;
    }
    unsigned sp = from_client ? f->sport : f->dport, dp = from_client ? f->dport : f->sport;
    if (l4 == TCP) {
        put16(p, sp); put16(p + 2, dp); put32(p + 4, seq); put32(p + 8, ack);
        p[12] = 0x50; p[13] = flags; put16(p + 14, 65535); p[16] = p[17] = p[18] = p[19] = 0; p += 20;
    } else if (l4 == UDP) {
        put16(p, sp); put16(p + 2, dp); put16(p + 4, 8 + plen); p[6] = p[7] = 0; p += 8;
    } else {
        p[0] = icmp_type; p[1] = 0; p[2] = p[3] = 0; put16(p + 4, 0x1234); put16(p + 6, f->step); p += 8;
    }
    if (payload) memcpy(p, payload, plen); else memset(p, 0x61, plen);
    p += plen;
    uint32_t len = (uint32_t)(p - frame);
    uint32_t hdr[4] = { (uint32_t)(ts_us / 1000000), (uint32_t)(ts_us % 1000000), len, len };
    fwrite(hdr, 4, 4, out);
    fwrite(frame, 1, len, out);
    packets++;
    ts_us += 2;
}

static int dns_name(unsigned char *p, uint32_t id) {
    char host[32];
    int n = snprintf(host, sizeof host, "host%u", id);
    int o = 0;
    p[o++] = n; memcpy(p + o, host, n); o += n;
    p[o++] = 7; memcpy(p + o, "example", 7); o += 7;
    p[o++] = 3; memcpy(p + o, "com", 3); o += 3;
    p[o++] = 0;
    return o;
}

/* A DNS query or response for host<id>.example.com; the answer is the server of a later flow. */
static int dns_message(unsigned char *m, flow_t *f, int response, const unsigned char *answer, int v6) {
    int o = 0;
    put16(m, f->dns_id); m[2] = response ? 0x81 : 0x01; m[3] = response ? 0x80 : 0x00;
    put16(m + 4, 1); put16(m + 6, response ? (f->name_id % 4 == 0 ? 2 : 1) : 0); put16(m + 8, 0); put16(m + 10, 0);
    o = 12;
    o += dns_name(m + o, f->name_id);
    put16(m + o, v6 ? 28 : 1); put16(m + o + 2, 1); o += 4;
    if (!response) return o;
    unsigned owner = 12;  /* pointer to the question name */
    if (f->name_id % 4 == 0) {  /* CNAME to a CDN name */
        m[o] = 0xC0; m[o + 1] = 12; put16(m + o + 2, 5); put16(m + o + 4, 1); put32(m + o + 6, 60);
        int start = o + 12;
        int n = dns_name(m + start, f->name_id + 7000000);
        put16(m + o + 10, n);
        owner = start;
        o = start + n;
    }
    m[o] = 0xC0; m[o + 1] = owner; put16(m + o + 2, v6 ? 28 : 1); put16(m + o + 4, 1); put32(m + o + 6, 300);
    put16(m + o + 10, v6 ? 16 : 4); memcpy(m + o + 12, answer, v6 ? 16 : 4);
    return o + 12 + (v6 ? 16 : 4);
}

static void addr(unsigned char *a, int v6, uint32_t host, int server) {
    memset(a, 0, 16);
    if (v6) {
        a[0] = 0x20; a[1] = 0x01; a[2] = 0x0d; a[3] = 0xb8; a[4] = server ? 0x10 : 0x20;
        put32(a + 12, host);
    } else {
        a[0] = 10; a[1] = server ? 1 : (16 + (host >> 16) % 200); a[2] = (host >> 8) & 0xff; a[3] = host & 0xff;
    }
}

/* GEN_NARROW=1: DNS names from a pool of 200 and other UDP on 4 ports, so that the workloads and
 * edges of a graph stop growing while flows do (bench/graph's memory check). */
static int narrow = 0;

static void init_flow(flow_t *f, uint64_t i) {
    memset(f, 0, sizeof *f);
    f->v6 = rnd(100) < 20;
    f->vlan = rnd(100) < 30 ? 100 + rnd(50) : 0;
    uint32_t client = rnd(60000) + 1, server = rnd(4000) + 1;
    addr(f->a, f->v6, client, 0);
    addr(f->b, f->v6, server, 1);
    f->sport = 1024 + (uint32_t)((i * 7919 + rnd(1000)) % 64000);
    f->seq_c = (uint32_t)next_rand(); f->seq_s = (uint32_t)next_rand();
    uint32_t r = rnd(100);
    if (r < 55) { f->proto = TCP; f->kind = 0; f->dport = (unsigned[]){80, 443, 5432, 8080, 22}[rnd(5)]; f->nsteps = 9 + 2 * rnd(8); }
    else if (r < 60) { f->proto = TCP; f->kind = 1; f->dport = 443; f->nsteps = 2; }            /* rejected */
    else if (r < 64) { f->proto = TCP; f->kind = 2; f->dport = 3306; f->nsteps = 2; }           /* unanswered */
    else if (r < 82) { f->proto = UDP; f->kind = 3; f->dport = 53; f->nsteps = 2;
                       f->dns_id = rnd(65535); f->name_id = narrow ? rnd(200) : (uint32_t)i; addr(f->b, f->v6, 53, 1); }
    else if (r < 94) { f->proto = UDP; f->kind = 4; f->dport = 10000 + rnd(narrow ? 4 : 50000); f->nsteps = 2 + rnd(9); }
    else { f->proto = ICMP; f->kind = 5; f->dport = 0; f->nsteps = 2 * (1 + rnd(4)); }
}

/* Emits the next packet of a flow; returns 0 when the flow is done. */
static int step(flow_t *f) {
    unsigned char msg[512];
    int s = f->step++;
    switch (f->kind) {
    case 0: {  /* handshake, data, close */
        int n = f->nsteps;
        if (s == 0) emit(f, 1, TCP, 0x02, f->seq_c, 0, NULL, 0, 0);
        else if (s == 1) emit(f, 0, TCP, 0x12, f->seq_s, f->seq_c + 1, NULL, 0, 0);
        else if (s == 2) { f->seq_c++; f->seq_s++; emit(f, 1, TCP, 0x10, f->seq_c, f->seq_s, NULL, 0, 0); }
        else if (s < n - 3) {
            int client = s % 2, len = 20 + rnd(400);
            if (client) { emit(f, 1, TCP, 0x18, f->seq_c, f->seq_s, NULL, len, 0); f->seq_c += len; }
            else { emit(f, 0, TCP, 0x18, f->seq_s, f->seq_c, NULL, len, 0); f->seq_s += len; }
        } else if (s == n - 3) { emit(f, 1, TCP, 0x11, f->seq_c, f->seq_s, NULL, 0, 0); f->seq_c++; }
        else if (s == n - 2) { emit(f, 0, TCP, 0x11, f->seq_s, f->seq_c, NULL, 0, 0); f->seq_s++; }
        else emit(f, 1, TCP, 0x10, f->seq_c, f->seq_s, NULL, 0, 0);
        return f->step < n;
    }
    case 1:
        if (s == 0) emit(f, 1, TCP, 0x02, f->seq_c, 0, NULL, 0, 0);
        else emit(f, 0, TCP, 0x14, 0, f->seq_c + 1, NULL, 0, 0);
        return f->step < 2;
    case 2:
        emit(f, 1, TCP, 0x02, f->seq_c, 0, NULL, 0, 0);  /* a SYN and its retransmission */
        return f->step < 2;
    case 3: {
        unsigned char answer[16];
        addr(answer, f->v6, rnd(4000) + 1, 1);
        int len = dns_message(msg, f, s == 1, answer, f->v6);
        emit(f, s == 0, UDP, 0, 0, 0, msg, len, 0);
        return f->step < 2;
    }
    case 4:
        emit(f, s % 2 == 0, UDP, 0, 0, 0, NULL, 30 + rnd(500), 0);
        return f->step < f->nsteps;
    default:
        emit(f, s % 2 == 0, ICMP, 0, 0, 0, NULL, 56, s % 2 == 0 ? (f->v6 ? 128 : 8) : (f->v6 ? 129 : 0));
        return f->step < f->nsteps;
    }
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s FLOWS OUTPUT.pcap\n", argv[0]); return 2; }
    uint64_t nflows = strtoull(argv[1], NULL, 10);
    narrow = getenv("GEN_NARROW") != NULL && getenv("GEN_NARROW")[0] == '1';
    out = fopen(argv[2], "wb");
    if (!out) { perror(argv[2]); return 2; }
    static char buf[1 << 20];
    setvbuf(out, buf, _IOFBF, sizeof buf);
    uint32_t gh[6] = { 0xa1b2c3d4, 0x00040002, 0, 0, 65535, 1 };
    fwrite(gh, 4, 6, out);
    enum { WINDOW = 512 };
    static flow_t win[WINDOW];
    static int live[WINDOW];
    uint64_t started = 0, done = 0;
    for (int i = 0; i < WINDOW && started < nflows; i++, started++) { init_flow(&win[i], started); live[i] = 1; }
    while (done < nflows) {
        for (int i = 0; i < WINDOW; i++) {
            if (!live[i]) continue;
            if (!step(&win[i])) {
                done++;
                if (started < nflows) { init_flow(&win[i], started); started++; }
                else live[i] = 0;
            }
        }
    }
    fclose(out);
    printf("%llu packets, %llu flows\n", (unsigned long long)packets, (unsigned long long)nflows);
    return 0;
}
