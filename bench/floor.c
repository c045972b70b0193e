/*
 * floor: the least the kernel must do to supervise N notify-readiness workers,
 * with no library: a socketpair and a posix_spawn per worker (own process
 * group, empty signal mask, default dispositions, control end on fd 3),
 * epoll until every worker said READY, "STOP NOW" to all, reap all.
 *
 * usage: floor WORKER N
 * prints one JSON line: {"impl":"floor","n":N,"start_ms":..,"ready_ms":..,"stop_ms":..,"total_ms":..,
 * "cpu_ms":..,"stop_self_cpu_ms":..}, cpu_ms being the CPU time of the whole tree (this process and
 * the reaped workers), stop_self_cpu_ms this process's own CPU time during the stop.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"

#define USAGE "usage: floor WORKER N\n"
#define READY_LINE "READY\n"
#define STOP_LINE "STOP NOW\n"

struct worker {
    pid_t pid;
    int fd;          /* the supervisor's end of the socket pair */
    unsigned got;    /* bytes of READY_LINE received so far */
};

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static pid_t spawn_worker(const char *path, const posix_spawnattr_t *attr, int *out_fd)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        die("socketpair");

    /* dup2 onto fd 3 clears close-on-exec there; every other descriptor closes at exec. */
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, sv[1], 3);

    char *argv[] = {(char *)path, NULL};
    char *envp[] = {"MPSUP_CONTROL_FD=3", NULL};
    pid_t pid;
    int err = posix_spawn(&pid, path, &fa, attr, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    if (err != 0) {
        errno = err;
        die("posix_spawn");
    }
    close(sv[1]);
    *out_fd = sv[0];
    return pid;
}

/* Read what a worker sent; returns 1 when its READY line is complete. */
static int read_ready(struct worker *w)
{
    char buf[64];
    ssize_t n = read(w->fd, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 0;
    if (n <= 0) {
        fprintf(stderr, "floor: worker %d closed its channel before READY\n", (int)w->pid);
        exit(1);
    }
    for (ssize_t i = 0; i < n && w->got < sizeof READY_LINE - 1; i++) {
        if (buf[i] != READY_LINE[w->got]) {
            fprintf(stderr, "floor: worker %d sent something else than READY\n", (int)w->pid);
            exit(1);
        }
        w->got++;
    }
    return w->got == sizeof READY_LINE - 1;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, USAGE);
        return 2;
    }
    const char *path = argv[1];
    int n = parse_count(argv[2], USAGE);
    raise_nofile();

    struct worker *ws = calloc((size_t)n, sizeof *ws);
    if (ws == NULL)
        die("calloc");

    posix_spawnattr_t attr;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);

    /* start */
    double t0 = now_ms();
    for (int i = 0; i < n; i++)
        ws[i].pid = spawn_worker(path, &attr, &ws[i].fd);
    double t_started = now_ms();

    /* ready */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    for (int i = 0; i < n; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, ws[i].fd, &ev) != 0)
            die("epoll_ctl");
    }
    int ready = 0;
    while (ready < n) {
        struct epoll_event evs[256];
        int k = epoll_wait(ep, evs, 256, 60000);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            die(k == 0 ? "epoll_wait: timeout waiting for READY" : "epoll_wait");
        for (int j = 0; j < k; j++) {
            struct worker *w = &ws[evs[j].data.u32];
            if (read_ready(w)) {
                ready++;
                epoll_ctl(ep, EPOLL_CTL_DEL, w->fd, NULL);
            }
        }
    }
    double t_ready = now_ms(), cpu_ready = self_cpu_ms();

    /* stop */
    for (int i = 0; i < n; i++)
        if (write(ws[i].fd, STOP_LINE, sizeof STOP_LINE - 1) != (ssize_t)(sizeof STOP_LINE - 1))
            die("write STOP");
    int bad = 0;
    for (int i = 0; i < n; i++) {
        /* By pid: waitpid(-1) would scan every remaining child each time. */
        int status;
        if (waitpid(ws[i].pid, &status, 0) < 0)
            die("waitpid");
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            bad++;
    }
    for (int i = 0; i < n; i++)
        close(ws[i].fd);
    close(ep);
    double t_end = now_ms(), cpu_end = self_cpu_ms();

    if (bad) {
        fprintf(stderr, "floor: %d workers did not exit 0\n", bad);
        return 1;
    }
    printf("{\"impl\":\"floor\",\"n\":%d,\"start_ms\":%.3f,\"ready_ms\":%.3f,\"stop_ms\":%.3f,"
           "\"total_ms\":%.3f,\"cpu_ms\":%.3f,\"stop_self_cpu_ms\":%.3f,\"fds_per_worker\":1}\n",
           n, t_started - t0, t_ready - t_started, t_end - t_ready, t_end - t0, tree_cpu_ms(),
           cpu_end - cpu_ready);
    posix_spawnattr_destroy(&attr);
    free(ws);
    return 0;
}
