/*
 * floor_threads: the best floor, floor.c with the library's own tricks and nothing else. One
 * spawner thread per CPU, each in a descriptor table of its own (unshare(CLONE_FILES), then it
 * closes its copy of everything but its channel), so that a spawn copies a handful of descriptors
 * whatever N (floor.c's spawns copy the whole growing table: quadratic in N). Per worker, in the
 * spawner's table: a socketpair and a posix_spawn exactly as floor.c does (own process group,
 * empty signal mask, default dispositions, the worker's end on fd 3); the supervisor's end then
 * crosses to the main thread's table as SCM_RIGHTS on a SOCK_SEQPACKET pair (up to BATCH a
 * message) and is closed in the spawner's. The main thread puts each end in its epoll set as it
 * arrives, waits for every READY, writes "STOP NOW" to each and reaps each by pid.
 *
 * usage: floor_threads WORKER N [THREADS]   (THREADS: default one per online CPU)
 * prints one JSON line like floor's, "impl":"floor_threads": start_ms until every worker was
 * spawned and its end arrived, ready_ms until every READY, stop_ms until all reaped.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"

#define USAGE "usage: floor_threads WORKER N [THREADS]\n"
#define READY_LINE "READY\n"
#define STOP_LINE "STOP NOW\n"
#define BATCH 32
#define MAX_THREADS 256
#define CHANNEL_TAG (1u << 31) /* epoll data of a spawner's channel: the tag plus its index */

struct worker {
    pid_t pid;
    int fd;       /* the supervisor's end, in the main thread's table */
    unsigned got; /* bytes of READY_LINE received so far */
};

struct spawner {
    pthread_t thread;
    int index, threads, n;
    int channel; /* its end of the channel; the main thread holds the other */
    const char *path;
    const posix_spawnattr_t *attr;
    pid_t *pids; /* shared array, indexed by worker: each spawner writes only its own entries */
};

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* Sends `count` descriptors with their worker indices; closes them here. */
static void ship(int channel, const uint32_t *ids, const int *fds, int count)
{
    char control[CMSG_SPACE(sizeof(int) * BATCH)];
    memset(control, 0, sizeof control);
    struct iovec iov = {.iov_base = (void *)ids, .iov_len = sizeof *ids * (size_t)count};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                         .msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)count)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)count);
    memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)count);
    if (sendmsg(channel, &msg, MSG_NOSIGNAL) < 0)
        die("sendmsg");
    for (int i = 0; i < count; i++)
        close(fds[i]);
}

static void *spawn_share(void *arg)
{
    struct spawner *s = arg;
    /* A table of its own holding 0, 1, 2 and the channel: every spawn copies only those. */
    if (unshare(CLONE_FILES) != 0)
        die("unshare(CLONE_FILES)");
    if (syscall(SYS_close_range, 3, (unsigned)s->channel - 1, 0) != 0 ||
        syscall(SYS_close_range, (unsigned)s->channel + 1, ~0u, 0) != 0)
        die("close_range");

    uint32_t ids[BATCH];
    int fds[BATCH], count = 0;
    posix_spawn_file_actions_t fa;
    char *envp[] = {"MPSUP_CONTROL_FD=3", NULL};
    char *argv[] = {(char *)s->path, NULL};
    for (int i = s->index; i < s->n; i += s->threads) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
            die("socketpair");
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
        int err = posix_spawn(&s->pids[i], s->path, &fa, s->attr, argv, envp);
        posix_spawn_file_actions_destroy(&fa);
        if (err != 0) {
            errno = err;
            die("posix_spawn");
        }
        close(sv[1]);
        ids[count] = (uint32_t)i;
        fds[count++] = sv[0];
        if (count == BATCH || i + s->threads >= s->n) {
            ship(s->channel, ids, fds, count);
            count = 0;
        }
    }
    return NULL;
}

/* Receives one batch of ends; returns how many arrived. */
static int receive(int channel, int ep, struct worker *ws)
{
    uint32_t ids[BATCH];
    char control[CMSG_SPACE(sizeof(int) * BATCH)];
    struct iovec iov = {.iov_base = ids, .iov_len = sizeof ids};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                         .msg_controllen = sizeof control};
    ssize_t got = recvmsg(channel, &msg, MSG_CMSG_CLOEXEC);
    if (got <= 0)
        return 0;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    if (cm == NULL || cm->cmsg_type != SCM_RIGHTS || (msg.msg_flags & MSG_CTRUNC)) {
        fprintf(stderr, "floor_threads: descriptors lost in transit\n");
        exit(1);
    }
    int count = (int)(got / (ssize_t)sizeof *ids);
    int fds[BATCH];
    memcpy(fds, CMSG_DATA(cm), sizeof(int) * (size_t)count);
    for (int j = 0; j < count; j++) {
        ws[ids[j]].fd = fds[j];
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = ids[j]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[j], &ev) != 0)
            die("epoll_ctl");
    }
    return count;
}

/* Read what a worker sent; returns 1 when its READY line is complete. */
static int read_ready(struct worker *w)
{
    char buf[64];
    ssize_t n = read(w->fd, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 0;
    if (n <= 0) {
        fprintf(stderr, "floor_threads: a worker closed its channel before READY\n");
        exit(1);
    }
    for (ssize_t i = 0; i < n && w->got < sizeof READY_LINE - 1; i++) {
        if (buf[i] != READY_LINE[w->got]) {
            fprintf(stderr, "floor_threads: a worker sent something else than READY\n");
            exit(1);
        }
        w->got++;
    }
    return w->got == sizeof READY_LINE - 1;
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, USAGE);
        return 2;
    }
    const char *path = argv[1];
    int n = parse_count(argv[2], USAGE);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = argc == 4 ? parse_count(argv[3], USAGE) : (int)(cpus > 0 ? cpus : 1);
    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    if (threads > n)
        threads = n;
    raise_nofile();

    struct worker *ws = calloc((size_t)n, sizeof *ws);
    pid_t *pids = calloc((size_t)n, sizeof *pids);
    struct spawner *sp = calloc((size_t)threads, sizeof *sp);
    if (ws == NULL || pids == NULL || sp == NULL)
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

    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");

    /* start */
    double t0 = now_ms();
    int *mains = calloc((size_t)threads, sizeof *mains), *theirs = calloc((size_t)threads, sizeof *theirs);
    if (mains == NULL || theirs == NULL)
        die("calloc");
    for (int t = 0; t < threads; t++) {
        int pair[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0)
            die("socketpair");
        mains[t] = pair[0];
        theirs[t] = pair[1]; /* closed here only at the end: a spawner copies it at its unshare */
        sp[t] = (struct spawner){.index = t, .threads = threads, .n = n, .channel = pair[1],
                                 .path = path, .attr = &attr, .pids = pids};
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = CHANNEL_TAG | (uint32_t)t};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, pair[0], &ev) != 0)
            die("epoll_ctl");
    }
    for (int t = 0; t < threads; t++)
        if (pthread_create(&sp[t].thread, NULL, spawn_share, &sp[t]) != 0)
            die("pthread_create");

    /* ready (the ends arrive meanwhile) */
    int arrived = 0, ready = 0;
    double t_started = 0;
    while (ready < n) {
        struct epoll_event evs[256];
        int k = epoll_wait(ep, evs, 256, 60000);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            die(k == 0 ? "epoll_wait: timeout waiting for READY" : "epoll_wait");
        for (int j = 0; j < k; j++) {
            uint32_t tag = evs[j].data.u32;
            if (tag & CHANNEL_TAG) {
                arrived += receive(mains[tag & ~CHANNEL_TAG], ep, ws);
                if (arrived == n) {
                    for (int t = 0; t < threads; t++)
                        pthread_join(sp[t].thread, NULL);
                    t_started = now_ms();
                }
            } else if (read_ready(&ws[tag])) {
                ready++;
                epoll_ctl(ep, EPOLL_CTL_DEL, ws[tag].fd, NULL);
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
        int status;
        if (waitpid(pids[i], &status, 0) < 0)
            die("waitpid");
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            bad++;
    }
    for (int i = 0; i < n; i++)
        close(ws[i].fd);
    for (int t = 0; t < threads; t++) {
        close(mains[t]);
        close(theirs[t]);
    }
    close(ep);
    double t_end = now_ms(), cpu_end = self_cpu_ms();

    if (bad) {
        fprintf(stderr, "floor_threads: %d workers did not exit 0\n", bad);
        return 1;
    }
    printf("{\"impl\":\"floor_threads\",\"n\":%d,\"threads\":%d,\"start_ms\":%.3f,\"ready_ms\":%.3f,"
           "\"stop_ms\":%.3f,\"total_ms\":%.3f,\"cpu_ms\":%.3f,\"stop_self_cpu_ms\":%.3f,\"fds_per_worker\":1}\n",
           n, threads, t_started - t0, t_ready - t_started, t_end - t_ready, t_end - t0, tree_cpu_ms(),
           cpu_end - cpu_ready);
    posix_spawnattr_destroy(&attr);
    free(mains);
    free(theirs);
    free(sp);
    free(pids);
    free(ws);
    return 0;
}
