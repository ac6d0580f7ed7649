/* The bare REQ -> REP round-trip loop of bench_rpc_zmq.py in C against libzmq: no Python.
 *
 *   zmq_rr_ref rep ADDRESS SECONDS       bind REP, echo every request (exits when idle)
 *   zmq_rr_ref req ADDRESS SECONDS SIZE  connect REQ, one request in flight for SECONDS,
 *                                        print "COUNT P50_NS P99_NS" of the round trips
 *
 * libzmq's own local_lat / remote_lat do the same lockstep loop but print only the mean;
 * the percentiles here come from every round trip, timed on CLOCK_MONOTONIC.
 * Built by bench_rpc_zmq.py when libzmq's headers are installed (apt install libzmq3-dev). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#define RECV_TIMEOUT_MS 5000 /* fail, never hang */
#define MAX_TRIPS 20000000

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: zmq_rr_ref rep ADDRESS SECONDS | req ADDRESS SECONDS SIZE\n");
        return 2;
    }
    const char *role = argv[1], *addr = argv[2];
    double seconds = atof(argv[3]);
    int timeout = RECV_TIMEOUT_MS;
    char buf[65536];
    void *ctx = zmq_ctx_new();
    if (strcmp(role, "rep") == 0) {
        void *s = zmq_socket(ctx, ZMQ_REP);
        zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
        if (zmq_bind(s, addr) != 0) {
            fprintf(stderr, "zmq_rr_ref: bind %s: %s\n", addr, zmq_strerror(zmq_errno()));
            return 1;
        }
        for (;;) {
            int n = zmq_recv(s, buf, sizeof buf, 0);
            if (n < 0)
                break; /* idle for RECV_TIMEOUT_MS: the requester is done */
            zmq_send(s, buf, n, 0);
        }
        zmq_close(s);
    } else if (strcmp(role, "req") == 0 && argc == 5) {
        int size = atoi(argv[4]);
        if (size < 1 || size > (int)sizeof buf) {
            fprintf(stderr, "zmq_rr_ref: SIZE must be 1..%zu\n", sizeof buf);
            return 2;
        }
        void *s = zmq_socket(ctx, ZMQ_REQ);
        zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
        zmq_connect(s, addr);
        memset(buf, 1, size);
        long long *rtt = malloc(sizeof(long long) * MAX_TRIPS);
        long n = 0;
        long long end = now_ns() + (long long)(seconds * 1e9);
        while (n < MAX_TRIPS) {
            long long t0 = now_ns();
            if (t0 >= end)
                break;
            zmq_send(s, buf, size, 0);
            if (zmq_recv(s, buf, sizeof buf, 0) < 0) {
                fprintf(stderr, "zmq_rr_ref: no reply from %s\n", addr);
                return 1;
            }
            rtt[n++] = now_ns() - t0;
        }
        qsort(rtt, n, sizeof rtt[0], cmp);
        printf("%ld %lld %lld\n", n, rtt[n / 2], rtt[(long)(n * 0.99)]);
        free(rtt);
        zmq_close(s);
    } else {
        fprintf(stderr, "zmq_rr_ref: unknown role %s\n", role);
        return 2;
    }
    zmq_ctx_term(ctx);
    return 0;
}
