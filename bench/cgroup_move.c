/*
 * cgroup_move: what placing one process in a cgroup of its own costs, by way of placement.
 * Needs root (or a delegated cgroup v2) and the cgroup v2 hierarchy of this process.
 *
 * usage: cgroup_move [ROUNDS]   (default 20)
 *
 * Under a cgroup of its own beneath this process's cgroup v2, for ROUNDS processes one at a
 * time (a crash and its respawn), then for ROUNDS processes back to back (a big start):
 *   - mkdir: making the process's cgroup;
 *   - move: writing its pid to the cgroup's cgroup.procs once it runs (what the exec shim
 *     does). A migration takes the kernel's cgroup_threadgroup_rwsem for writing, which waits
 *     for an RCU grace period unless another migration just did (or the hierarchy is mounted
 *     with favordynmods);
 *   - clone_into: clone3 with CLONE_INTO_CGROUP, the process born in its cgroup (what glibc
 *     2.41's posix_spawnattr_setcgroup_np does), timed from the call to its return.
 * Prints one JSON line of medians and maxima in ms. Leaves nothing behind: every process is
 * killed and reaped, every cgroup removed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"

#define USAGE "usage: cgroup_move [ROUNDS]\n"
#define MAX_ROUNDS 1000

/* This process's cgroup v2 directory, from /proc/self/mountinfo and /proc/self/cgroup. */
static int own_v2_dir(char *out, size_t cap)
{
    char line[1024], mount[512] = "", rel[1024] = "";
    FILE *f = fopen("/proc/self/mountinfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        char *dash = strstr(line, " - cgroup2 ");
        char point[512];
        if (dash && sscanf(line, "%*s %*s %*s %*s %511s", point) == 1) {
            snprintf(mount, sizeof mount, "%s", point);
            break;
        }
    }
    if (f)
        fclose(f);
    f = fopen("/proc/self/cgroup", "r");
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "0::", 3) == 0) {
            line[strcspn(line, "\n")] = 0;
            snprintf(rel, sizeof rel, "%s", line + 3);
        }
    if (f)
        fclose(f);
    if (!mount[0])
        return -1;
    snprintf(out, cap, "%s%s", mount, strcmp(rel, "/") == 0 ? "" : rel);
    return 0;
}

static pid_t sleeper(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        pause();
        _exit(0);
    }
    return pid;
}

static void end(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return v[n / 2];
}

static double max_of(double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++)
        m = v[i] > m ? v[i] : m;
    return m;
}

/* One process placed in cgroup `dir` by a move; returns the move's ms, or -1. */
static double moved(const char *dir, double *mkdir_ms)
{
    char procs[1900], text[32];
    double t0 = now_ms();
    if (mkdir(dir, 0755) != 0)
        return -1;
    *mkdir_ms = now_ms() - t0;
    pid_t pid = sleeper();
    snprintf(procs, sizeof procs, "%s/cgroup.procs", dir);
    int fd = open(procs, O_WRONLY | O_CLOEXEC);
    int len = snprintf(text, sizeof text, "%d", (int)pid);
    double t1 = now_ms();
    bool ok = fd >= 0 && write(fd, text, (size_t)len) == len;
    double ms = now_ms() - t1;
    if (fd >= 0)
        close(fd);
    end(pid);
    rmdir(dir);
    return ok ? ms : -1;
}

/* One process born in cgroup `dir` (clone3, CLONE_INTO_CGROUP); returns the clone's ms, or -1. */
static double born_in(const char *dir)
{
    if (mkdir(dir, 0755) != 0)
        return -1;
    int cg = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct clone_args args = {.flags = CLONE_INTO_CGROUP, .exit_signal = SIGCHLD,
                              .cgroup = (unsigned long long)cg};
    double t0 = now_ms();
    long pid = cg < 0 ? -1 : syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) {
        pause();
        _exit(0);
    }
    double ms = now_ms() - t0;
    if (cg >= 0)
        close(cg);
    if (pid > 0)
        end((pid_t)pid);
    rmdir(dir);
    return pid > 0 ? ms : -1;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? parse_count(argv[1], USAGE) : 20;
    if (rounds > MAX_ROUNDS) {
        fputs(USAGE, stderr);
        return 2;
    }
    char own[1600], base[1700], dir[1800];
    if (own_v2_dir(own, sizeof own) != 0) {
        fputs("cgroup_move: no cgroup v2 hierarchy\n", stderr);
        return 1;
    }
    snprintf(base, sizeof base, "%s/mpsup-bench-%d", own, (int)getpid());
    if (mkdir(base, 0755) != 0) {
        fprintf(stderr, "cgroup_move: mkdir %s: %s\n", base, strerror(errno));
        return 1;
    }
    static double lone_mkdir[MAX_ROUNDS], lone[MAX_ROUNDS], burst[MAX_ROUNDS], clone_into[MAX_ROUNDS];
    int failed = 0;
    for (int i = 0; i < rounds; i++) {
        snprintf(dir, sizeof dir, "%s/w%d", base, i);
        /* A crash's respawn: nothing else migrated for a while. */
        struct timespec gap = {.tv_nsec = 30 * 1000 * 1000};
        nanosleep(&gap, NULL);
        lone[i] = moved(dir, &lone_mkdir[i]);
        nanosleep(&gap, NULL);
        clone_into[i] = born_in(dir);
        failed += lone[i] < 0 || clone_into[i] < 0;
    }
    for (int i = 0; i < rounds; i++) {
        double unused;
        snprintf(dir, sizeof dir, "%s/b%d", base, i);
        burst[i] = moved(dir, &unused);
        failed += burst[i] < 0;
    }
    rmdir(base);
    if (failed) {
        fprintf(stderr, "cgroup_move: %d placements failed (not root?)\n", failed);
        return 1;
    }
    printf("{\"impl\":\"cgroup_move\",\"rounds\":%d,\"mkdir_p50_ms\":%.3f,"
           "\"lone_move_p50_ms\":%.3f,\"lone_move_max_ms\":%.3f,"
           "\"burst_move_p50_ms\":%.3f,\"burst_move_max_ms\":%.3f,"
           "\"clone_into_p50_ms\":%.3f,\"clone_into_max_ms\":%.3f}\n",
           rounds, median(lone_mkdir, rounds), median(lone, rounds), max_of(lone, rounds),
           median(burst, rounds), max_of(burst, rounds), median(clone_into, rounds),
           max_of(clone_into, rounds));
    return 0;
}
