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
 * And, end to end, as a supervisor spawns a worker through an exec shim (this program again,
 * run with a first argument `-shim`), from posix_spawn to the worker's first instruction (its
 * byte on a pipe), one at a time as at a crash's respawn:
 *   - spawn_plain: posix_spawn of the worker itself, no cgroup (the baseline);
 *   - spawn_shim: posix_spawn of the shim, which execs the worker, no cgroup (the shim's exec);
 *   - spawn_move: posix_spawn of the shim, which writes 0 to the cgroup's cgroup.procs and execs
 *     the worker (mpsup-exec -c);
 *   - spawn_clone: posix_spawn of the shim, which clone3s with CLONE_INTO_CGROUP | CLONE_PARENT
 *     (a fork of a tiny process, born in the cgroup, the spawner's child), reports the new pid
 *     on a pipe and exits; the child execs the worker. The spawner reaps the shim.
 * Prints one JSON line of medians and maxima in ms. Leaves nothing behind: every process is
 * killed and reaped, every cgroup removed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <spawn.h>
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

extern char **environ;
static const char *self_path;

/* The worker: says it runs (one byte on descriptor 3), then waits to be killed. */
static int worker_main(void)
{
    if (write(3, "r", 1) != 1)
        _exit(1);
    pause();
    _exit(0);
}

/* The shim: `-shim move|clone DIR`, with the worker's pipe on 3 and its report pipe on 4. */
static int shim_main(char **argv)
{
    char *worker[] = {(char *)self_path, "-worker", NULL};
    if (strcmp(argv[2], "exec") == 0) {
        execv(self_path, worker);
        _exit(127);
    }
    if (strcmp(argv[2], "move") == 0) {
        char procs[1900];
        snprintf(procs, sizeof procs, "%s/cgroup.procs", argv[3]);
        int fd = open(procs, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "0", 1) != 1)
            _exit(126);
        close(fd);
        execv(self_path, worker);
        _exit(127);
    }
    int cg = open(argv[3], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct clone_args args = {.flags = CLONE_INTO_CGROUP | CLONE_PARENT,
                              .cgroup = (unsigned long long)cg};
    long pid = cg < 0 ? -1 : syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) {
        setpgid(0, 0);
        execv(self_path, worker);
        _exit(127);
    }
    int p = (int)pid;
    if (write(4, &p, sizeof p) != sizeof p)
        _exit(1);
    _exit(pid > 0 ? 0 : 1);
}

/* One spawn of `argv` with the worker's pipe on 3 and a report pipe on 4, in its own process
 * group; returns ms from posix_spawn to the worker's byte, or -1. `*worker` gets the worker's
 * pid (the shim's report, else the spawned pid), `*shim` the shim's (or 0). */
static double spawned(char **argv, bool via_shim, pid_t *worker, pid_t *shim)
{
    int run[2], report[2];
    if (pipe2(run, O_CLOEXEC) != 0 || pipe2(report, O_CLOEXEC) != 0)
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, run[1], 3);
    posix_spawn_file_actions_adddup2(&fa, report[1], 4);
    posix_spawnattr_init(&at);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&at, 0);
    pid_t pid;
    double t0 = now_ms();
    int rc = posix_spawn(&pid, self_path, &fa, &at, argv, environ);
    close(run[1]);
    close(report[1]);
    char byte;
    bool ok = rc == 0 && read(run[0], &byte, 1) == 1;
    double ms = now_ms() - t0;
    *worker = rc == 0 ? pid : 0;
    *shim = 0;
    if (via_shim && rc == 0) {
        int p = 0;
        ok = ok && read(report[0], &p, sizeof p) == sizeof p && p > 0;
        *shim = pid;
        *worker = p > 0 ? p : 0;
        waitpid(pid, NULL, 0);
    }
    close(run[0]);
    close(report[0]);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    return ok ? ms : -1;
}

/* Whether `pid` runs in its own process group, in cgroup `dir` (whose last component ends the
 * `0::` line of /proc/PID/cgroup). Reaping it in `end` shows it is this process's child. */
static bool placed_right(pid_t pid, const char *dir)
{
    char path[64], line[2048];
    snprintf(path, sizeof path, "/proc/%d/cgroup", (int)pid);
    FILE *f = fopen(path, "r");
    bool in = false;
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        size_t n = strlen(line);
        const char *leaf = strrchr(dir, '/');
        if (strncmp(line, "0::", 3) == 0 && leaf && n >= strlen(leaf))
            in = strcmp(line + n - strlen(leaf), leaf) == 0;
    }
    if (f)
        fclose(f);
    return in && getpgid(pid) == pid && kill(pid, 0) == 0;
}

enum { PLAIN, SHIM_EXEC, MOVE, CLONE, WAYS };

/* One worker spawned by `way`; ms, or -1 (or -2: misplaced). */
static double spawn_way(int way, const char *dir)
{
    bool cgroup = way == MOVE || way == CLONE;
    if (cgroup && mkdir(dir, 0755) != 0)
        return -1;
    static const char *names[WAYS] = {"", "exec", "move", "clone"};
    char *plain[] = {(char *)self_path, "-worker", NULL};
    char *shim[] = {(char *)self_path, "-shim", (char *)names[way], (char *)dir, NULL};
    pid_t worker = 0, shim_pid = 0;
    double ms = spawned(way == PLAIN ? plain : shim, way == CLONE, &worker, &shim_pid);
    if (ms >= 0 && cgroup && !placed_right(worker, dir))
        ms = -2;
    if (worker > 0)
        end(worker);
    if (cgroup)
        rmdir(dir);
    return ms;
}

int main(int argc, char **argv)
{
    self_path = "/proc/self/exe";
    char exe[1024];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        self_path = exe;
    }
    if (argc > 1 && strcmp(argv[1], "-worker") == 0)
        return worker_main();
    if (argc > 3 && strcmp(argv[1], "-shim") == 0)
        return shim_main(argv);
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
    static double ways[WAYS][MAX_ROUNDS];
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
        for (int way = 0; way < WAYS; way++) {
            nanosleep(&gap, NULL);
            ways[way][i] = spawn_way(way, dir);
            failed += ways[way][i] < 0;
        }
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
           "\"clone_into_p50_ms\":%.3f,\"clone_into_max_ms\":%.3f,"
           "\"spawn_plain_p50_ms\":%.3f,\"spawn_shim_p50_ms\":%.3f,\"spawn_move_p50_ms\":%.3f,"
           "\"spawn_clone_p50_ms\":%.3f,\"spawn_plain_max_ms\":%.3f,\"spawn_shim_max_ms\":%.3f,"
           "\"spawn_move_max_ms\":%.3f,\"spawn_clone_max_ms\":%.3f}\n",
           rounds, median(lone_mkdir, rounds), median(lone, rounds), max_of(lone, rounds),
           median(burst, rounds), max_of(burst, rounds), median(clone_into, rounds),
           max_of(clone_into, rounds), median(ways[PLAIN], rounds), median(ways[SHIM_EXEC], rounds),
           median(ways[MOVE], rounds), median(ways[CLONE], rounds), max_of(ways[PLAIN], rounds),
           max_of(ways[SHIM_EXEC], rounds), max_of(ways[MOVE], rounds),
           max_of(ways[CLONE], rounds));
    return 0;
}
