// Connection load for the agent benchmark (bench/agent).
//   connload server IP PORT             accept connections and close them at once (epoll)
//   connload client IP PORT RATE SECS   open RATE new TCP connections per second for SECS
//                                       seconds (each connects, then closes); prints how many
//                                       connected and how many failed
// Ours; written for flowmap's benchmark only.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int server(const char *ip, int port) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 4096) != 0) { perror("bind/listen"); return 1; }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = s};
    epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
    for (;;) {
        struct epoll_event out[16];
        int n = epoll_wait(ep, out, 16, -1);
        for (int i = 0; i < n; i++) {
            for (;;) {
                int c = accept4(s, NULL, NULL, SOCK_NONBLOCK);
                if (c < 0) break;
                close(c);
            }
        }
    }
}

static int client(const char *ip, int port, double rate, double secs) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    long ok = 0, failed = 0, target = (long)(rate * secs);
    double start = now();
    for (long i = 0; i < target; i++) {
        double due = start + i / rate;
        double t = now();
        if (due > t) {
            struct timespec d = {.tv_sec = (time_t)(due - t), .tv_nsec = (long)(((due - t) - (time_t)(due - t)) * 1e9)};
            nanosleep(&d, NULL);
        }
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c, (struct sockaddr *)&a, sizeof a) == 0) ok++; else failed++;
        close(c);
    }
    printf("%ld %ld %.3f\n", ok, failed, now() - start);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "server") == 0) return server(argv[2], atoi(argv[3]));
    if (argc == 6 && strcmp(argv[1], "client") == 0) return client(argv[2], atoi(argv[3]), atof(argv[4]), atof(argv[5]));
    fprintf(stderr, "usage: connload server IP PORT | connload client IP PORT RATE SECS\n");
    return 2;
}
