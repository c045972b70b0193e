/*
 * notify_worker: sends one sd_notify datagram, "STATUS=<CLOCK_REALTIME ns>\nREADY=1", to
 * NOTIFY_SOCKET, then exits 1 after NOTIFY_EXIT_AFTER_MS (default 30) so that the group's
 * restart policy spawns it again. bench/notify_latency.py compares the time in STATUS= with the
 * moment the host sees worker_ready.
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int main(void)
{
    const char *address = getenv("NOTIFY_SOCKET");
    const char *after = getenv("NOTIFY_EXIT_AFTER_MS");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (!address || strlen(address) >= sizeof sa.sun_path)
        return 2;
    size_t n = strlen(address);
    memcpy(sa.sun_path, address, n);
    if (address[0] == '@')
        sa.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 2;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char message[64];
    int len = snprintf(message, sizeof message, "STATUS=%lld\nREADY=1",
                       (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
    if (sendto(fd, message, (size_t)len, 0, (struct sockaddr *)&sa,
               (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) != len)
        return 2;
    close(fd);
    struct timespec wait = {0, (after ? atol(after) : 30) * 1000000L};
    nanosleep(&wait, NULL);
    return 1;
}
