/*
 * The practical limit for reading a capture: loop pcap_next_ex over a file and sum the
 * captured bytes, nothing else. Part of flowmap's benchmark tooling.
 *   usage: rawloop FILE.pcap
 */
#include <pcap/pcap.h>
#include <stdio.h>

int main(int argc, char **argv) {
    char err[PCAP_ERRBUF_SIZE];
    if (argc != 2) { fprintf(stderr, "usage: %s FILE\n", argv[0]); return 2; }
    pcap_t *p = pcap_open_offline(argv[1], err);
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
