/*
 * tiny_worker: the smallest worker that speaks the mpsupervisor line protocol,
 * without the library. It reads MPSUP_CONTROL_FD, writes "READY\n", then blocks
 * until a line starting with "STOP" or end of file, and exits 0.
 * Built static (cc -O2 -static) so that exec costs as little as possible.
 * TINY_HEARTBEAT_MS=N: also writes "HEARTBEAT\n" every N ms while it waits.
 * TINY_EXIT_AFTER_MS=N: exits 1 (a crash) N ms after READY instead of waiting for STOP.
 *
 * Exit codes: 0 stopped, 2 no usable MPSUP_CONTROL_FD, 3 I/O error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int parse_fd(const char *s)
{
    int fd = 0;
    if (s == NULL || *s == '\0')
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || fd > 100000)
            return -1;
        fd = fd * 10 + (*s - '0');
    }
    return fd;
}

int main(void)
{
    int fd = parse_fd(getenv("MPSUP_CONTROL_FD"));
    if (fd < 0)
        return 2;

    static const char ready[] = "READY\n";
    ssize_t w;
    do
        w = write(fd, ready, sizeof ready - 1);
    while (w < 0 && errno == EINTR);
    if (w != (ssize_t)(sizeof ready - 1))
        return 3;

    const char *beat = getenv("TINY_HEARTBEAT_MS");
    const char *crash = getenv("TINY_EXIT_AFTER_MS");
    int timeout = beat ? atoi(beat) : crash ? atoi(crash) : -1;

    /* Exit as soon as a line has begun with "STOP"; other lines are ignored. */
    char head[4];
    size_t head_len = 0;
    char buf[256];
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ready = poll(&p, 1, timeout);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready == 0) {
            if (crash)
                return 1;
            static const char heartbeat[] = "HEARTBEAT\n";
            if (write(fd, heartbeat, sizeof heartbeat - 1) < 0)
                return 3;
            continue;
        }
        ssize_t n = read(fd, buf, sizeof buf);
        if (n == 0)
            return 0; /* end of file: the supervisor is gone */
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return 3;
        }
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n') {
                head_len = 0;
            } else if (head_len < sizeof head) {
                head[head_len++] = buf[i];
                if (head_len == sizeof head && memcmp(head, "STOP", 4) == 0)
                    return 0;
            }
        }
    }
}
