#ifndef FLOWMAP_CCONNTRACK_SHIM_H
#define FLOWMAP_CCONNTRACK_SHIM_H
// libnetfilter_conntrack (Debian: libnetfilter-conntrack-dev). The helpers below copy one
// conntrack object into a plain struct, so that no nf_conntrack pointer reaches Swift code
// beyond the adapter's callback.
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/netlink.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/filter.h>
#include <stddef.h>
#include <stdlib.h>

struct fm_ct_tuple {
    uint8_t src[16];
    uint8_t dst[16];
    uint16_t sport, dport;   // host order; ICMP: type, code
    uint16_t icmp_id;
};

struct fm_ct {
    uint32_t id;
    uint8_t family;          // AF_INET or AF_INET6
    uint8_t proto;
    struct fm_ct_tuple orig, reply;
    int has_counters;
    uint64_t orig_packets, orig_bytes, reply_packets, reply_bytes;
    int has_tcp_state;
    uint8_t tcp_state;
    uint32_t status;
    uint16_t zone;
    uint32_t mark;
    uint64_t ts_start, ts_stop;  // ns since the epoch, 0 when absent
};

static inline void fm_ct_addr(const struct nf_conntrack *ct, int family, enum nf_conntrack_attr a4,
                              enum nf_conntrack_attr a6, uint8_t out[16]) {
    memset(out, 0, 16);
    if (family == AF_INET) {
        uint32_t v = nfct_get_attr_u32(ct, a4);  // network order
        out[10] = 0xff; out[11] = 0xff;
        memcpy(out + 12, &v, 4);
    } else {
        const void *p = nfct_get_attr(ct, a6);
        if (p) memcpy(out, p, 16);
    }
}

static inline void fm_ct_read(const struct nf_conntrack *ct, struct fm_ct *o) {
    memset(o, 0, sizeof *o);
    o->family = nfct_get_attr_u8(ct, ATTR_L3PROTO);
    o->proto = nfct_get_attr_u8(ct, ATTR_L4PROTO);
    if (nfct_attr_is_set(ct, ATTR_ID) > 0) o->id = nfct_get_attr_u32(ct, ATTR_ID);
    fm_ct_addr(ct, o->family, ATTR_ORIG_IPV4_SRC, ATTR_ORIG_IPV6_SRC, o->orig.src);
    fm_ct_addr(ct, o->family, ATTR_ORIG_IPV4_DST, ATTR_ORIG_IPV6_DST, o->orig.dst);
    fm_ct_addr(ct, o->family, ATTR_REPL_IPV4_SRC, ATTR_REPL_IPV6_SRC, o->reply.src);
    fm_ct_addr(ct, o->family, ATTR_REPL_IPV4_DST, ATTR_REPL_IPV6_DST, o->reply.dst);
    if (o->proto == IPPROTO_ICMP || o->proto == IPPROTO_ICMPV6) {
        o->orig.sport = nfct_get_attr_u8(ct, ATTR_ICMP_TYPE);
        o->orig.dport = nfct_get_attr_u8(ct, ATTR_ICMP_CODE);
        o->orig.icmp_id = ntohs(nfct_get_attr_u16(ct, ATTR_ICMP_ID));
        o->reply.sport = o->orig.sport;
        o->reply.dport = o->orig.dport;
        o->reply.icmp_id = o->orig.icmp_id;
    } else {
        o->orig.sport = ntohs(nfct_get_attr_u16(ct, ATTR_ORIG_PORT_SRC));
        o->orig.dport = ntohs(nfct_get_attr_u16(ct, ATTR_ORIG_PORT_DST));
        o->reply.sport = ntohs(nfct_get_attr_u16(ct, ATTR_REPL_PORT_SRC));
        o->reply.dport = ntohs(nfct_get_attr_u16(ct, ATTR_REPL_PORT_DST));
    }
    if (nfct_attr_is_set(ct, ATTR_ORIG_COUNTER_PACKETS) > 0) {
        o->has_counters = 1;
        o->orig_packets = nfct_get_attr_u64(ct, ATTR_ORIG_COUNTER_PACKETS);
        o->orig_bytes = nfct_get_attr_u64(ct, ATTR_ORIG_COUNTER_BYTES);
        o->reply_packets = nfct_get_attr_u64(ct, ATTR_REPL_COUNTER_PACKETS);
        o->reply_bytes = nfct_get_attr_u64(ct, ATTR_REPL_COUNTER_BYTES);
    }
    if (o->proto == IPPROTO_TCP && nfct_attr_is_set(ct, ATTR_TCP_STATE) > 0) {
        o->has_tcp_state = 1;
        o->tcp_state = nfct_get_attr_u8(ct, ATTR_TCP_STATE);
    }
    if (nfct_attr_is_set(ct, ATTR_STATUS) > 0) o->status = nfct_get_attr_u32(ct, ATTR_STATUS);
    if (nfct_attr_is_set(ct, ATTR_ZONE) > 0) o->zone = nfct_get_attr_u16(ct, ATTR_ZONE);
    if (nfct_attr_is_set(ct, ATTR_MARK) > 0) o->mark = nfct_get_attr_u32(ct, ATTR_MARK);
    if (nfct_attr_is_set(ct, ATTR_TIMESTAMP_START) > 0) o->ts_start = nfct_get_attr_u64(ct, ATTR_TIMESTAMP_START);
    if (nfct_attr_is_set(ct, ATTR_TIMESTAMP_STOP) > 0) o->ts_stop = nfct_get_attr_u64(ct, ATTR_TIMESTAMP_STOP);
}

// Reads one ctnetlink message (an event) into `o`, as fm_ct_read reads the object
// libnetfilter_conntrack's nfct_nlmsg_parse makes of it, without making that object: the
// library's parse allocates, and reads every attribute through a call of its own, which cost
// the agent as much per event as receiving it. Only the attributes fm_ct reads are looked at;
// a test checks that both readings agree. Returns 0, or -1 for a malformed message.
#define FM_NLA_OK(a, rem) ((rem) >= (int)sizeof(struct nlattr) && (a)->nla_len >= sizeof(struct nlattr) && \
                           (int)(a)->nla_len <= (rem))
#define FM_NLA_DATA(a) ((const void *)((const char *)(a) + NLA_HDRLEN))
#define FM_NLA_LEN(a) ((int)(a)->nla_len - NLA_HDRLEN)
#define FM_NLA_TYPE(a) ((a)->nla_type & NLA_TYPE_MASK)
#define FM_NLA_FOR(a, first, len) \
    for (int a##_rem = (len), a##_step; a##_rem > 0 && FM_NLA_OK(first, a##_rem); a##_rem = 0) \
        for (const struct nlattr *a = (first); FM_NLA_OK(a, a##_rem); \
             a##_step = NLA_ALIGN(a->nla_len), a##_rem -= a##_step, a = (const struct nlattr *)((const char *)a + a##_step))

static inline uint16_t fm_be16(const void *p) { uint16_t v; memcpy(&v, p, 2); return ntohs(v); }
static inline uint32_t fm_be32(const void *p) { uint32_t v; memcpy(&v, p, 4); return ntohl(v); }
static inline uint64_t fm_be64(const void *p) {
    uint32_t hi = fm_be32(p), lo = fm_be32((const char *)p + 4);
    return (uint64_t)hi << 32 | lo;
}

struct fm_ct_tuple_raw {
    int has_proto;
    uint8_t proto, icmp_type, icmp_code;
    uint16_t icmp_id;
};

static inline void fm_ct_parse_tuple(const struct nlattr *nest, int family, struct fm_ct_tuple *t,
                                     struct fm_ct_tuple_raw *raw) {
    FM_NLA_FOR(a, (const struct nlattr *)FM_NLA_DATA(nest), FM_NLA_LEN(nest)) {
        int n = FM_NLA_LEN(a);
        if (FM_NLA_TYPE(a) == CTA_TUPLE_IP) {
            FM_NLA_FOR(b, (const struct nlattr *)FM_NLA_DATA(a), n) {
                int m = FM_NLA_LEN(b), ty = FM_NLA_TYPE(b);
                uint8_t *dst = (ty == CTA_IP_V4_SRC || ty == CTA_IP_V6_SRC) ? t->src
                             : (ty == CTA_IP_V4_DST || ty == CTA_IP_V6_DST) ? t->dst : NULL;
                if (!dst) continue;
                if (family == AF_INET && (ty == CTA_IP_V4_SRC || ty == CTA_IP_V4_DST) && m >= 4) {
                    memset(dst, 0, 16);
                    dst[10] = 0xff; dst[11] = 0xff;
                    memcpy(dst + 12, FM_NLA_DATA(b), 4);
                } else if (family != AF_INET && (ty == CTA_IP_V6_SRC || ty == CTA_IP_V6_DST) && m >= 16) {
                    memcpy(dst, FM_NLA_DATA(b), 16);
                }
            }
        } else if (FM_NLA_TYPE(a) == CTA_TUPLE_PROTO) {
            FM_NLA_FOR(b, (const struct nlattr *)FM_NLA_DATA(a), n) {
                int m = FM_NLA_LEN(b);
                const void *d = FM_NLA_DATA(b);
                switch (FM_NLA_TYPE(b)) {
                case CTA_PROTO_NUM: if (m >= 1) { raw->proto = *(const uint8_t *)d; raw->has_proto = 1; } break;
                case CTA_PROTO_SRC_PORT: if (m >= 2) t->sport = fm_be16(d); break;
                case CTA_PROTO_DST_PORT: if (m >= 2) t->dport = fm_be16(d); break;
                case CTA_PROTO_ICMP_ID: case CTA_PROTO_ICMPV6_ID: if (m >= 2) raw->icmp_id = fm_be16(d); break;
                case CTA_PROTO_ICMP_TYPE: case CTA_PROTO_ICMPV6_TYPE: if (m >= 1) raw->icmp_type = *(const uint8_t *)d; break;
                case CTA_PROTO_ICMP_CODE: case CTA_PROTO_ICMPV6_CODE: if (m >= 1) raw->icmp_code = *(const uint8_t *)d; break;
                }
            }
        }
    }
}

static inline int fm_ct_parse(const struct nlmsghdr *nlh, struct fm_ct *o) {
    memset(o, 0, sizeof *o);
    int hdr = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(struct nfgenmsg));
    if (nlh->nlmsg_len < (unsigned)hdr) return -1;
    const struct nfgenmsg *g = (const struct nfgenmsg *)((const char *)nlh + NLMSG_HDRLEN);
    int family = g->nfgen_family;
    o->family = (uint8_t)family;
    struct fm_ct_tuple_raw ro = {0}, rr = {0};
    int has_orig = 0;
    FM_NLA_FOR(a, (const struct nlattr *)((const char *)nlh + hdr), (int)nlh->nlmsg_len - hdr) {
        int n = FM_NLA_LEN(a);
        const void *d = FM_NLA_DATA(a);
        switch (FM_NLA_TYPE(a)) {
        case CTA_TUPLE_ORIG: fm_ct_parse_tuple(a, family, &o->orig, &ro); has_orig = 1; break;
        case CTA_TUPLE_REPLY: fm_ct_parse_tuple(a, family, &o->reply, &rr); break;
        case CTA_STATUS: if (n >= 4) o->status = fm_be32(d); break;
        case CTA_MARK: if (n >= 4) o->mark = fm_be32(d); break;
        case CTA_ID: if (n >= 4) o->id = fm_be32(d); break;
        case CTA_ZONE: if (n >= 2) o->zone = fm_be16(d); break;
        case CTA_PROTOINFO:
            FM_NLA_FOR(b, (const struct nlattr *)d, n) {
                if (FM_NLA_TYPE(b) != CTA_PROTOINFO_TCP) continue;
                FM_NLA_FOR(c, (const struct nlattr *)FM_NLA_DATA(b), FM_NLA_LEN(b)) {
                    if (FM_NLA_TYPE(c) == CTA_PROTOINFO_TCP_STATE && FM_NLA_LEN(c) >= 1) {
                        o->tcp_state = *(const uint8_t *)FM_NLA_DATA(c);
                        o->has_tcp_state = 1;
                    }
                }
            }
            break;
        case CTA_COUNTERS_ORIG: case CTA_COUNTERS_REPLY: {
            int orig = FM_NLA_TYPE(a) == CTA_COUNTERS_ORIG;
            uint64_t *pk = orig ? &o->orig_packets : &o->reply_packets, *by = orig ? &o->orig_bytes : &o->reply_bytes;
            FM_NLA_FOR(b, (const struct nlattr *)d, n) {
                int m = FM_NLA_LEN(b);
                const void *e = FM_NLA_DATA(b);
                switch (FM_NLA_TYPE(b)) {
                case CTA_COUNTERS_PACKETS: if (m >= 8) *pk = fm_be64(e); break;
                case CTA_COUNTERS_BYTES: if (m >= 8) *by = fm_be64(e); break;
                case CTA_COUNTERS32_PACKETS: if (m >= 4) *pk = fm_be32(e); break;
                case CTA_COUNTERS32_BYTES: if (m >= 4) *by = fm_be32(e); break;
                }
            }
            if (orig) o->has_counters = 1;
            break;
        }
        case CTA_TIMESTAMP:
            FM_NLA_FOR(b, (const struct nlattr *)d, n) {
                if (FM_NLA_LEN(b) < 8) continue;
                if (FM_NLA_TYPE(b) == CTA_TIMESTAMP_START) o->ts_start = fm_be64(FM_NLA_DATA(b));
                if (FM_NLA_TYPE(b) == CTA_TIMESTAMP_STOP) o->ts_stop = fm_be64(FM_NLA_DATA(b));
            }
            break;
        }
    }
    if (!has_orig || !ro.has_proto) return -1;
    o->proto = ro.proto;
    if (o->proto != IPPROTO_TCP) o->has_tcp_state = 0, o->tcp_state = 0;
    if (o->proto == IPPROTO_ICMP || o->proto == IPPROTO_ICMPV6) {
        o->orig.sport = o->reply.sport = ro.icmp_type;
        o->orig.dport = o->reply.dport = ro.icmp_code;
        o->orig.icmp_id = o->reply.icmp_id = ro.icmp_id;
    }
    return 0;
}

// The same message read through libnetfilter_conntrack (the reference the tests hold
// fm_ct_parse to). Returns 0, or -1 when the library does not take it.
static inline int fm_ct_parse_with_library(const struct nlmsghdr *nlh, struct fm_ct *o) {
    struct nf_conntrack *ct = nfct_new();
    if (!ct) return -1;
    int rc = nfct_nlmsg_parse(nlh, ct) >= 0 ? 0 : -1;
    if (rc == 0) fm_ct_read(ct, o);
    nfct_destroy(ct);
    return rc;
}

// Event groups for nfct_open (the NF_NETLINK_CONNTRACK_* macros are not importable as one value).
static inline unsigned fm_ct_event_groups(void) {
    return NF_NETLINK_CONNTRACK_NEW | NF_NETLINK_CONNTRACK_UPDATE | NF_NETLINK_CONNTRACK_DESTROY;
}

// A socket filter (classic BPF, run by the kernel before an event is queued) that drops the
// UPDATE events of the TCP states between the first SYN and the end: SYN_RECV, ESTABLISHED,
// FIN_WAIT, CLOSE_WAIT and LAST_ACK (the agent looks up the connections still open when it
// writes them). Every NEW and DESTROY passes, and so does every other UPDATE (SYN_SENT,
// TIME_WAIT, CLOSE, other protocols, status and mark changes: anything without a TCP state).
// A dropped event never wakes the reader nor costs a copy. Returns 0, or -1 with errno set.
static inline int fm_ct_attach_update_filter(int fd) {
    // The classic BPF loads below read 16-bit fields in network order; netlink headers are in
    // host order, so the constants are compared in the form such a load yields (htons).
    const uint32_t t_new = htons((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW);
    const uint32_t t_del = htons((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE);
    const uint32_t f_create = htons(NLM_F_CREATE | NLM_F_EXCL);
    const uint32_t attrs = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(struct nfgenmsg));
    enum { KEEP = 19, DROP = 20 };  // the two return statements; jumps count from the next one
    struct sock_filter code[] = {
        /* 0 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, offsetof(struct nlmsghdr, nlmsg_type)),
        /* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, t_del, KEEP - 2, 0),          // DESTROY
        /* 2 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, t_new, 0, KEEP - 3),          // not an event
        /* 3 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, offsetof(struct nlmsghdr, nlmsg_flags)),
        /* 4 */ BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, f_create, KEEP - 5, 0),      // NEW
        /* 5 */ BPF_STMT(BPF_LD | BPF_IMM, attrs),
        /* 6 */ BPF_STMT(BPF_LDX | BPF_IMM, CTA_PROTOINFO),
        /* 7 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + SKF_AD_NLATTR),
        /* 8 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, KEEP - 9, 0),              // no protocol info
        /* 9 */ BPF_STMT(BPF_LDX | BPF_IMM, CTA_PROTOINFO_TCP),
        /* 10 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + SKF_AD_NLATTR_NEST),
        /* 11 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, KEEP - 12, 0),            // not TCP
        /* 12 */ BPF_STMT(BPF_LDX | BPF_IMM, CTA_PROTOINFO_TCP_STATE),
        /* 13 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + SKF_AD_NLATTR_NEST),
        /* 14 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, KEEP - 15, 0),            // no state
        /* 15 */ BPF_STMT(BPF_MISC | BPF_TAX, 0),
        /* 16 */ BPF_STMT(BPF_LD | BPF_B | BPF_IND, NLA_HDRLEN),                  // the state byte
        /* 17 */ BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 7, KEEP - 18, 0),            // TIME_WAIT, CLOSE, ...
        /* 18 */ BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 2, DROP - 19, KEEP - 19),    // SYN_RECV..LAST_ACK
        /* 19 */ BPF_STMT(BPF_RET | BPF_K, 0xffffffff),
        /* 20 */ BPF_STMT(BPF_RET | BPF_K, 0),
    };
    struct sock_fprog prog = { .len = sizeof code / sizeof code[0], .filter = code };
    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog);
}

// The wake-up filter: a socket filter for a socket that hears only NEW events, keeping those
// whose original source address is one of the host's (`v4`: `n4` IPv4 addresses, each the
// four bytes in network order read as a big-endian number; `v6`: `n6` IPv6 addresses, 16
// bytes each), or in 127.0.0.0/8. A connection from a local address has a local client end,
// whose socket must be looked up while it exists: the agent reads its events at once, and
// lets the others gather. Returns 0, or -1 with errno set (E2BIG: too many addresses for one
// program; the caller then keeps every NEW).
static inline int fm_ct_attach_local_source_filter(int fd, const uint32_t *v4, int n4, const uint8_t *v6, int n6) {
    const uint32_t attrs = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(struct nfgenmsg));
    enum { KEEP = 0xffff };
    int max = 32 + 2 * n4 + 9 * n6;  // at most 29 besides the addresses
    if (n4 < 0 || n6 < 0 || max > BPF_MAXINSNS) { errno = E2BIG; return -1; }
    struct sock_filter *code = calloc((size_t)max, sizeof *code);
    if (!code) return -1;
    int n = 0;
    // The CTA_TUPLE_IP of CTA_TUPLE_ORIG (its offset kept in M[0]).
    code[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_IMM, attrs);
    code[n++] = (struct sock_filter)BPF_STMT(BPF_LDX | BPF_IMM, CTA_TUPLE_ORIG);
    code[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + SKF_AD_NLATTR);
    code[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1);
    code[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0);
    code[n++] = (struct sock_filter)BPF_STMT(BPF_LDX | BPF_IMM, CTA_TUPLE_IP);
    code[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + SKF_AD_NLATTR_NEST);
    code[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1);
    code[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0);
    code[n++] = (struct sock_filter)BPF_STMT(BPF_ST, 0);
    // IPv4: CTA_IP_V4_SRC, or on to IPv6.
    code[n++] = (struct sock_filter)BPF_STMT(BPF_LDX | BPF_IMM, CTA_IP_V4_SRC);
    code[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + SKF_AD_NLATTR_NEST);
    int to_v6 = n;
    code[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1);
    code[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JA, 0, 0, 0);  // k set below
    code[n++] = (struct sock_filter)BPF_STMT(BPF_MISC | BPF_TAX, 0);
    code[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_IND, NLA_HDRLEN);
    code[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x7f000000u, 0, 2);   // 127/8
    code[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x80000000u, 1, 0);
    code[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, KEEP);
    for (int i = 0; i < n4; i++) {
        code[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, v4[i], 0, 1);
        code[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, KEEP);
    }
    code[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0);
    code[to_v6 + 1].k = (uint32_t)(n - (to_v6 + 2));
    // IPv6: CTA_IP_V6_SRC, compared a word at a time.
    code[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_MEM, 0);
    code[n++] = (struct sock_filter)BPF_STMT(BPF_LDX | BPF_IMM, CTA_IP_V6_SRC);
    code[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + SKF_AD_NLATTR_NEST);
    code[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1);
    code[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0);
    code[n++] = (struct sock_filter)BPF_STMT(BPF_MISC | BPF_TAX, 0);
    for (int i = 0; i < n6; i++) {
        for (int w = 0; w < 4; w++) {
            const uint8_t *b = v6 + 16 * i + 4 * w;
            uint32_t word = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
            code[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_IND, NLA_HDRLEN + 4 * w);
            code[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, word, 0, (uint8_t)(7 - 2 * w));
        }
        code[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, KEEP);
    }
    code[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0);
    struct sock_fprog prog = { .len = (unsigned short)n, .filter = code };
    int rc = setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog);
    int saved = errno;
    free(code);
    errno = saved;
    return rc;
}

// A netlink socket that hears conntrack's NEW events only (the agent's wake-up socket; its
// messages are never parsed). Non-blocking. Returns the descriptor, or -1 with errno set.
static inline int fm_ct_open_new_events(int receive_buffer) {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_NETFILTER);
    if (fd < 0) return -1;
    struct sockaddr_nl a = { .nl_family = AF_NETLINK, .nl_groups = NF_NETLINK_CONNTRACK_NEW };
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    if (receive_buffer > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    return fd;
}

// Reads and drops what is queued on `fd` (an overflow, ENOBUFS, only means there was more).
// Returns how many datagrams were dropped.
static inline int fm_drain(int fd) {
    unsigned char buf[256];
    int count = 0;
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT | MSG_TRUNC);
        if (r >= 0) { count++; continue; }
        if (errno == EINTR || errno == ENOBUFS) continue;
        return count;
    }
}

// A dump through the library. Answers left unread on the socket first are read and dropped:
// the socket also carries batched lookups (fm_ct_get_many), and one that gave up waiting can
// leave an answer behind, which the library would take for a reply out of sequence (EILSEQ)
// and fail the dump.
static inline int fm_ct_dump(struct nfct_handle *h) {
    unsigned char stale[8192];
    while (recv(nfct_fd(h), stale, sizeof stale, MSG_DONTWAIT) >= 0) {}
    uint32_t family = AF_UNSPEC;
    return nfct_query(h, NFCT_Q_DUMP, &family);
}

// struct mmsghdr, which <sys/socket.h> declares only with _GNU_SOURCE.
struct fm_mmsghdr {
    struct msghdr msg_hdr;
    unsigned int msg_len;
};

// Receives up to `max_msgs` (at most 64) queued datagrams of at most `buf_size` bytes into
// `bufs` with one recvmmsg(2) call, without waiting; `msgs` and `iov` (64 each) describe them
// afterwards. Returns how many came, or -1 with errno set.
static inline int fm_recv_many(int fd, unsigned char *bufs, size_t buf_size, int max_msgs,
                               struct fm_mmsghdr *msgs, struct iovec *iov) {
    if (max_msgs > 64) max_msgs = 64;
    memset(msgs, 0, sizeof(struct fm_mmsghdr) * max_msgs);
    for (int i = 0; i < max_msgs; i++) {
        iov[i].iov_base = bufs + (size_t)i * buf_size;
        iov[i].iov_len = buf_size;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    return (int)syscall(SYS_recvmmsg, fd, msgs, (unsigned)max_msgs, MSG_DONTWAIT, NULL);
}

// One entry to look up by fm_ct_get_many: its original tuple (addresses 16 bytes, IPv4
// mapped; ICMP: type and code in sport and dport) and zone.
struct fm_ct_query {
    uint8_t proto;
    uint8_t src[16], dst[16];
    uint16_t sport, dport, icmp_id, zone;
};

static inline void *fm_nla_put(unsigned char **p, uint16_t type, const void *data, uint16_t len) {
    struct nlattr *a = (struct nlattr *)*p;
    a->nla_type = type;
    a->nla_len = (uint16_t)(NLA_HDRLEN + len);
    if (len) memcpy((char *)a + NLA_HDRLEN, data, len);
    memset((char *)a + NLA_HDRLEN + len, 0, NLA_ALIGN(a->nla_len) - a->nla_len);
    *p += NLA_ALIGN(a->nla_len);
    return a;
}

// Writes one IPCTNL_MSG_CT_GET request at `p` (room for FM_CT_QUERY_MAX bytes); returns its length.
enum { FM_CT_QUERY_MAX = 128 };
static inline int fm_ct_put_query(unsigned char *p, const struct fm_ct_query *q, uint32_t seq) {
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    unsigned char *start = p;
    struct nlmsghdr *nlh = (struct nlmsghdr *)p;
    int v4 = memcmp(q->src, mapped, 12) == 0 && memcmp(q->dst, mapped, 12) == 0;
    nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
    nlh->nlmsg_flags = NLM_F_REQUEST;
    nlh->nlmsg_seq = seq;
    nlh->nlmsg_pid = 0;
    p += NLMSG_HDRLEN;
    struct nfgenmsg *g = (struct nfgenmsg *)p;
    g->nfgen_family = v4 ? AF_INET : AF_INET6;
    g->version = NFNETLINK_V0;
    g->res_id = 0;
    p += NLMSG_ALIGN(sizeof *g);
    struct nlattr *orig = fm_nla_put(&p, CTA_TUPLE_ORIG | NLA_F_NESTED, NULL, 0);
    struct nlattr *ip = fm_nla_put(&p, CTA_TUPLE_IP | NLA_F_NESTED, NULL, 0);
    if (v4) {
        fm_nla_put(&p, CTA_IP_V4_SRC, q->src + 12, 4);
        fm_nla_put(&p, CTA_IP_V4_DST, q->dst + 12, 4);
    } else {
        fm_nla_put(&p, CTA_IP_V6_SRC, q->src, 16);
        fm_nla_put(&p, CTA_IP_V6_DST, q->dst, 16);
    }
    ip->nla_len = (uint16_t)(p - (unsigned char *)ip);
    struct nlattr *proto = fm_nla_put(&p, CTA_TUPLE_PROTO | NLA_F_NESTED, NULL, 0);
    fm_nla_put(&p, CTA_PROTO_NUM, &q->proto, 1);
    if (q->proto == IPPROTO_ICMP || q->proto == IPPROTO_ICMPV6) {
        int six = q->proto == IPPROTO_ICMPV6;
        uint16_t id = htons(q->icmp_id);
        uint8_t type = (uint8_t)q->sport, code = (uint8_t)q->dport;
        fm_nla_put(&p, six ? CTA_PROTO_ICMPV6_ID : CTA_PROTO_ICMP_ID, &id, 2);
        fm_nla_put(&p, six ? CTA_PROTO_ICMPV6_TYPE : CTA_PROTO_ICMP_TYPE, &type, 1);
        fm_nla_put(&p, six ? CTA_PROTO_ICMPV6_CODE : CTA_PROTO_ICMP_CODE, &code, 1);
    } else {
        uint16_t sp = htons(q->sport), dp = htons(q->dport);
        fm_nla_put(&p, CTA_PROTO_SRC_PORT, &sp, 2);
        fm_nla_put(&p, CTA_PROTO_DST_PORT, &dp, 2);
    }
    proto->nla_len = (uint16_t)(p - (unsigned char *)proto);
    orig->nla_len = (uint16_t)(p - (unsigned char *)orig);
    if (q->zone) {
        uint16_t z = htons(q->zone);
        fm_nla_put(&p, CTA_ZONE, &z, 2);
    }
    nlh->nlmsg_len = (uint32_t)(p - start);
    return (int)nlh->nlmsg_len;
}

// Looks `n` entries up at once (IPCTNL_MSG_CT_GET): the requests go in one datagram (the
// kernel answers each in turn), the answers are read with recvmmsg into `bufs` (`max_msgs`
// datagrams of `buf_size` bytes). `found[i]` is 1 when out[i] holds the entry of q[i], 0 when
// the kernel has no such entry, -1 when no answer came within `timeout_ms` (or another error
// did). Requests carry sequence numbers seq0 + i; answers to other numbers (late ones of an
// earlier call) are ignored. Each answer is a few hundred bytes: the caller keeps `n` small
// (tens) so that they all fit in the socket's receive buffer. Returns 0, or -1 with errno set
// when the requests could not be sent.
static inline int fm_ct_get_many(int fd, uint32_t seq0, const struct fm_ct_query *q, int n, struct fm_ct *out,
                                 int8_t *found, unsigned char *bufs, size_t buf_size, int max_msgs, int timeout_ms) {
    if (n <= 0) return 0;
    if ((size_t)n * FM_CT_QUERY_MAX > buf_size * (size_t)max_msgs) { errno = EINVAL; return -1; }
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        found[i] = -1;
        len += (size_t)fm_ct_put_query(bufs + len, &q[i], seq0 + (uint32_t)i);
    }
    struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
    ssize_t sent;
    do {
        sent = sendto(fd, bufs, len, 0, (struct sockaddr *)&kernel, sizeof kernel);
    } while (sent < 0 && errno == EINTR);
    if (sent < 0) return -1;
    int pending = n, wait = 0;
    struct fm_mmsghdr msgs[64];
    struct iovec iov[64];
    while (pending > 0) {
        // The kernel answers while it handles the datagram: the answers are queued when sendto
        // returns, and the socket is polled only when some are still missing.
        if (wait) {
            struct pollfd pfd = { .fd = fd, .events = POLLIN };
            int rc = poll(&pfd, 1, timeout_ms);
            if (rc < 0 && errno == EINTR) continue;
            if (rc <= 0) break;
        }
        wait = 1;
        int got = fm_recv_many(fd, bufs, buf_size, max_msgs, msgs, iov);
        if (got < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
            break;  // ENOBUFS and the like: what did not come stays unknown
        }
        for (int m = 0; m < got; m++) {
            int mlen = (int)msgs[m].msg_len;
            for (struct nlmsghdr *nlh = (struct nlmsghdr *)iov[m].iov_base; NLMSG_OK(nlh, mlen); nlh = NLMSG_NEXT(nlh, mlen)) {
                uint32_t i = nlh->nlmsg_seq - seq0;
                if (i >= (uint32_t)n || found[i] != -1) continue;
                if (nlh->nlmsg_type == NLMSG_ERROR) {
                    if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr))) continue;
                    const struct nlmsgerr *err = (const struct nlmsgerr *)NLMSG_DATA(nlh);
                    if (err->error == 0) continue;  // an acknowledgement (not asked for)
                    found[i] = err->error == -ENOENT ? 0 : -2;
                } else if (nlh->nlmsg_type >> 8 == NFNL_SUBSYS_CTNETLINK) {
                    found[i] = fm_ct_parse(nlh, &out[i]) == 0 ? 1 : -2;
                } else {
                    continue;
                }
                pending--;
            }
        }
    }
    for (int i = 0; i < n; i++) if (found[i] == -2) found[i] = -1;
    return 0;
}

// Event kinds for fm_ct_recv_events.
enum { FM_CT_NEW = 0, FM_CT_UPDATE = 1, FM_CT_DESTROY = 2 };

// Receives the conntrack event messages queued on `fd` with one recvmmsg(2) call (up to
// `max_msgs` datagrams of `buf_size` bytes each, in `bufs`) and parses each event into `out`
// (at most `max_events`), its kind into `kinds`. Returns the number of events, or -1 with
// errno set (EAGAIN: nothing queued; ENOBUFS: the kernel dropped events).
static inline int fm_ct_recv_events(int fd, unsigned char *bufs, size_t buf_size, int max_msgs,
                                    struct fm_ct *out, uint8_t *kinds, int max_events) {
    struct fm_mmsghdr msgs[64];
    struct iovec iov[64];
    int n = fm_recv_many(fd, bufs, buf_size, max_msgs, msgs, iov);
    if (n < 0) return -1;
    int count = 0;
    for (int i = 0; i < n && count < max_events; i++) {
        int len = (int)msgs[i].msg_len;
        for (struct nlmsghdr *nlh = (struct nlmsghdr *)iov[i].iov_base; NLMSG_OK(nlh, len) && count < max_events;
             nlh = NLMSG_NEXT(nlh, len)) {
            if (nlh->nlmsg_type < NLMSG_MIN_TYPE) continue;  // NOOP, ERROR, DONE
            uint8_t type = NFNL_MSG_TYPE(nlh->nlmsg_type), kind;
            if (type == IPCTNL_MSG_CT_NEW) {
                kind = (nlh->nlmsg_flags & (NLM_F_CREATE | NLM_F_EXCL)) ? FM_CT_NEW : FM_CT_UPDATE;
            } else if (type == IPCTNL_MSG_CT_DELETE) {
                kind = FM_CT_DESTROY;
            } else {
                continue;
            }
            if (fm_ct_parse(nlh, &out[count]) == 0) {
                kinds[count] = kind;
                count++;
            }
        }
    }
    return count;
}
#endif
