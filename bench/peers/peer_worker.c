/*
 * peer_worker: the one worker every supervisor in bench/peers runs. Linked -static. It sends its
 * pid ("<pid>\n") in one datagram to the unix socket named by PEER_READY_SOCK or else by argv[1]
 * (s6 runs ./run with arguments of its own, so it gets the environment variable), so that the driver sees each start the same
 * way whoever spawned it, then sleeps until a signal ends it (default dispositions: SIGTERM,
 * SIGINT and SIGKILL all end it, whichever the supervisor sends).
 *
 * Exit codes: 2 no socket named, 3 the datagram could not be sent.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    const char *path = getenv("PEER_READY_SOCK");
    if (path == NULL && argc > 1)
        path = argv[1];
    if (path == NULL || strlen(path) >= sizeof ((struct sockaddr_un *)0)->sun_path)
        return 2;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 3;
    char line[32];
    int len = snprintf(line, sizeof line, "%d\n", (int)getpid());
    ssize_t sent;
    do /* blocks while the driver's queue is full */
        sent = sendto(fd, line, (size_t)len, 0, (struct sockaddr *)&addr, sizeof addr);
    while (sent < 0 && errno == EINTR);
    if (sent != len)
        return 3;
    close(fd);
    for (;;)
        pause();
}
