/*
 * The practical limit for reading a capture: loop pcap_next_ex over a file and sum the
 * captured bytes, nothing else. Part of flowmap's benchmark tooling.
 *   usage: rawloop [-b] FILE.pcap
 * -b hands libpcap a FILE with a 1 MiB stdio buffer (pcap_fopen_offline), as flowmap does;
 * without it, pcap_open_offline reads through stdio's default 4 KiB buffer.
 */
#include <pcap/pcap.h>
#include <stdio.h>

int main(int argc, char **argv) {
    char err[PCAP_ERRBUF_SIZE];
    static char buf[1 << 20];
    int buffered = argc == 3 && argv[1][0] == '-' && argv[1][1] == 'b';
    if (argc != 2 && !buffered) { fprintf(stderr, "usage: %s [-b] FILE\n", argv[0]); return 2; }
    const char *path = argv[argc - 1];
    pcap_t *p;
    if (buffered) {
        FILE *f = fopen(path, "rb");
        if (!f) { perror(path); return 2; }
        setvbuf(f, buf, _IOFBF, sizeof buf);
        p = pcap_fopen_offline(f, err);
    } else {
        p = pcap_open_offline(path, err);
    }
    if (!p) { fprintf(stderr, "%s\n", err); return 2; }
    struct pcap_pkthdr *h;
    const u_char *d;
    unsigned long long n = 0, bytes = 0, sum = 0;
    int rc;
    while ((rc = pcap_next_ex(p, &h, &d)) == 1) {
        n++;
        bytes += h->caplen;
        sum += d[h->caplen / 2];
    }
    printf("%llu packets, %llu bytes (checksum %llu)\n", n, bytes, sum);
    pcap_close(p);
    return rc == PCAP_ERROR_BREAK || rc == -2 ? 0 : 1;
}
