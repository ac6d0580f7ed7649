/* The bare PUB -> SUB reference loops of bench_zmq.py in C against libzmq: no Python.
 *
 *   zmq_ref pub|pub-nodrop ADDRESS SECONDS HWM   send 67-byte messages flat out
 *   zmq_ref sub ADDRESS SECONDS HWM               print messages/s received
 *
 * Same framing as the pyzmq reference (one frame, 3-byte topic prefix "\x02t0" + 64 B).
 * Built by bench_zmq.py when libzmq's headers are installed (apt install libzmq3-dev). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#define BATCH 1000
#define RECV_TIMEOUT_MS 10000 /* fail, never hang */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: zmq_ref pub|pub-nodrop|sub ADDRESS SECONDS HWM\n");
        return 2;
    }
    const char *role = argv[1], *addr = argv[2];
    double seconds = atof(argv[3]);
    int hwm = atoi(argv[4]), one = 1, timeout = RECV_TIMEOUT_MS;
    char msg[67] = {2, 't', '0'};
    void *ctx = zmq_ctx_new();
    if (strncmp(role, "pub", 3) == 0) {
        int nodrop = strcmp(role, "pub-nodrop") == 0;
        void *s = zmq_socket(ctx, nodrop ? ZMQ_XPUB : ZMQ_PUB);
        zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
        if (nodrop)
            zmq_setsockopt(s, ZMQ_XPUB_NODROP, &one, sizeof one);
        if (zmq_bind(s, addr) != 0) {
            fprintf(stderr, "zmq_ref: bind %s: %s\n", addr, zmq_strerror(zmq_errno()));
            return 1;
        }
        struct timespec settle = {0, 500000000};
        nanosleep(&settle, NULL);
        double end = now() + seconds;
        while (now() < end)
            for (int i = 0; i < BATCH; i++)
                zmq_send(s, msg, sizeof msg, 0);
        zmq_close(s);
    } else {
        void *s = zmq_socket(ctx, ZMQ_SUB);
        zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
        zmq_setsockopt(s, ZMQ_SUBSCRIBE, msg, 3);
        zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
        zmq_connect(s, addr);
        char buf[128];
        if (zmq_recv(s, buf, sizeof buf, 0) < 0) {
            fprintf(stderr, "zmq_ref: nothing received from %s\n", addr);
            return 1;
        }
        long n = 0;
        double start = now(), end = start + seconds;
        while (now() < end) {
            for (int i = 0; i < BATCH; i++)
                if (zmq_recv(s, buf, sizeof buf, 0) < 0) {
                    fprintf(stderr, "zmq_ref: receive timed out\n");
                    return 1;
                }
            n += BATCH;
        }
        printf("%f\n", n / (now() - start));
        zmq_close(s);
    }
    zmq_ctx_term(ctx);
    return 0;
}
