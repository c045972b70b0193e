/*
 * lib_bench: the floor's work through the mpsupervisor C API. N notify-readiness
 * tiny workers: supervisor_new, configure, start_groups, wait_ready, stop_groups
 * (STOP NOW), supervisor_free, each phase timed.
 *
 * usage: lib_bench [--block-sigchld] [--limits | --identity | --rss] [--idle SECONDS] WORKER N
 * prints one JSON line with start/ready/stop/total ms, the CPU ms of the whole
 * tree (this process and the reaped workers), and stop_self_cpu_ms, the CPU time
 * of this process (every thread) during the stop. With --idle it also sits
 * SECONDS with the N workers ready and reports the process's CPU time over
 * that span (all threads), its memory and descriptors per worker.
 *
 * --block-sigchld blocks SIGCHLD in this (the only host) thread before anything else, as a host
 * reading signals through signalfd does: the SIGCHLD each worker exit queues then wakes no
 * host thread (docs/guarantees.md, Limits).
 *
 * --limits gives every group "memory_max": "1G", "pids_max": 1000, "cpu_max": "max": each worker
 * process then gets a cgroup of its own in the memory, pids and cpu hierarchies (v2 where the
 * controller is there, else its v1 hierarchy), made before its spawn, joined by mpsup-exec and
 * removed at its reap: the cost of cgroup placement per spawn (API.md part 7).
 *
 * --rss gives every group "max_rss_bytes" (1 TiB, never reached) and "rss_sample_ms": 1000: every
 * worker's resident set is read once a second. With --idle, the idle CPU against a plain --idle
 * run is what that sampling costs (API.md part 7, Recycling).
 *
 * A group holds at most 4,096 workers (API.md), so N is split evenly over
 * ceil(N / 4096) groups "bench1", "bench2", ...
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <malloc.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "mpsupervisor.h"
#include "bench_lib.h"
#include "bench_util.h"

#define USAGE "usage: lib_bench [--block-sigchld] [--limits | --identity | --rss] [--idle SECONDS] WORKER N\n"
#define LIMITS ",\"memory_max\":\"1G\",\"pids_max\":1000,\"cpu_max\":\"max\""
#define RSS ",\"max_rss_bytes\":1099511627776,\"rss_sample_ms\":1000"
#define MAX_GROUP 4096
#define MAX_GROUPS 32

/* The keys each group adds: --limits' cgroup limits, or --identity's process attributes (so
 * every spawn goes through the exec shim, which sets them before the worker's exec; as root
 * also a switch to nobody). */
static const char *extra_keys = "";

/* The groups JSON for n workers of `worker`, split over `groups` groups. */
static char *groups_json(const char *worker, int n, int groups)
{
    if (strpbrk(worker, "\"\\") != NULL) {
        fprintf(stderr, "lib_bench: worker path must not contain quotes or backslashes\n");
        exit(2);
    }
    size_t cap = (size_t)groups * (strlen(worker) + strlen(extra_keys) + 128) + 8;
    char *json = malloc(cap);
    if (json == NULL)
        exit(1);
    size_t len = 0;
    json[len++] = '[';
    for (int g = 0; g < groups; g++) {
        int size = n / groups + (g < n % groups ? 1 : 0);
        len += (size_t)snprintf(json + len, cap - len,
                                "%s{\"name\":\"bench%d\",\"workers\":%d,\"argv\":[\"%s\"],"
                                "\"readiness\":\"notify\",\"inherit_env\":false%s}",
                                g ? "," : "", g + 1, size, worker, extra_keys);
    }
    snprintf(json + len, cap - len, "]");
    return json;
}

/* Process-wide measurements: resident set, malloc'd bytes, open descriptors, CPU time. */
struct usage {
    long rss_kib;
    size_t heap_bytes;
    int fds;
    int threads;
};

static long status_field(const char *name)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long value = -1;
    size_t len = strlen(name);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, name, len) == 0 && line[len] == ':')
            value = strtol(line + len + 1, NULL, 10);
    if (f)
        fclose(f);
    return value;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int count = -1; /* the directory's own descriptor */
    if (d == NULL)
        return -1;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.')
            count++;
    closedir(d);
    return count;
}

static struct usage measure(void)
{
    struct mallinfo2 mi = mallinfo2(); /* sums every arena, so library threads count too */
    return (struct usage){
        .rss_kib = status_field("VmRSS"),
        .heap_bytes = mi.uordblks + mi.hblkhd,
        .fds = count_fds(),
        .threads = (int)status_field("Threads"),
    };
}

/* Sit idle with every worker ready and print what the supervisor costs meanwhile. */
static void idle_report(mpsup_supervisor sup, int n, double seconds, struct usage before)
{
    struct usage ready = measure();

    char *events = NULL;
    check(mpsup_drain_events_json(sup, 0, &events), "mpsup_drain_events_json");
    mpsup_string_free(events);
    struct usage drained = measure();

    double cpu0 = self_cpu_ms(), wall0 = now_ms();
    struct timespec ts = {.tv_sec = (time_t)seconds,
                          .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) != 0)
        ;
    double cpu1 = self_cpu_ms(), wall1 = now_ms();

    printf("{\"impl\":\"library-idle\",\"n\":%d,\"idle_s\":%.3f,\"idle_cpu_ms\":%.3f,"
           "\"idle_cpu_pct\":%.4f,\"threads\":%d,"
           "\"heap_per_worker_b\":%.1f,\"heap_per_worker_drained_b\":%.1f,"
           "\"rss_per_worker_b\":%.1f,\"fds_per_worker\":%.3f,\"fds_before\":%d,\"fds_ready\":%d}\n",
           n, (wall1 - wall0) / 1e3, cpu1 - cpu0, (cpu1 - cpu0) / (wall1 - wall0) * 100.0, ready.threads,
           ((double)ready.heap_bytes - (double)before.heap_bytes) / n,
           ((double)drained.heap_bytes - (double)before.heap_bytes) / n,
           (double)(ready.rss_kib - before.rss_kib) * 1024.0 / n,
           (double)(ready.fds - before.fds) / n, before.fds, ready.fds);
}

int main(int argc, char **argv)
{
    double idle_seconds = 0;
    if (argc >= 2 && strcmp(argv[1], "--block-sigchld") == 0) {
        sigset_t chld;
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        sigprocmask(SIG_BLOCK, &chld, NULL);
        argv += 1;
        argc -= 1;
    }
    if (argc >= 2 && strcmp(argv[1], "--limits") == 0) {
        extra_keys = LIMITS;
        argv += 1;
        argc -= 1;
    } else if (argc >= 2 && strcmp(argv[1], "--identity") == 0) {
        extra_keys = geteuid() == 0
                            ? ",\"user\":\"nobody\",\"umask\":\"0022\",\"no_new_privileges\":true,"
                              "\"rlimits\":{\"core\":0}"
                            : ",\"umask\":\"0022\",\"no_new_privileges\":true,\"rlimits\":{\"core\":0}";
        argv += 1;
        argc -= 1;
    } else if (argc >= 2 && strcmp(argv[1], "--rss") == 0) {
        extra_keys = RSS;
        argv += 1;
        argc -= 1;
    }
    if (argc == 5 && strcmp(argv[1], "--idle") == 0) {
        idle_seconds = strtod(argv[2], NULL);
        if (!(idle_seconds > 0 && idle_seconds < 3600)) {
            fprintf(stderr, USAGE);
            return 2;
        }
        argv += 2;
        argc -= 2;
    }
    if (argc != 3) {
        fprintf(stderr, USAGE);
        return 2;
    }
    const char *worker = argv[1];
    int n = parse_count(argv[2], USAGE);
    int groups = (n + MAX_GROUP - 1) / MAX_GROUP;
    if (groups > MAX_GROUPS) {
        fprintf(stderr, "lib_bench: at most %d workers\n", MAX_GROUPS * MAX_GROUP);
        return 2;
    }
    char names_buf[MAX_GROUPS][16];
    const char *names[MAX_GROUPS];
    for (int g = 0; g < groups; g++) {
        snprintf(names_buf[g], sizeof names_buf[g], "bench%d", g + 1);
        names[g] = names_buf[g];
    }
    char *json = groups_json(worker, n, groups);
    raise_nofile();

    double t0 = now_ms();
    mpsup_supervisor sup;
    check(mpsup_supervisor_new(&sup), "mpsup_supervisor_new");
    check(mpsup_configure_process_groups(sup, json), "mpsup_configure_process_groups");
    struct usage before = measure();

    double t_start = now_ms();
    check(mpsup_start_groups(sup, names, (size_t)groups), "mpsup_start_groups");
    double t_started = now_ms();

    bool ready = false;
    check(mpsup_wait_ready(sup, 60.0, &ready), "mpsup_wait_ready");
    double t_ready = now_ms();
    if (!ready) {
        fprintf(stderr, "lib_bench: workers not ready: %s\n", mpsup_last_error_message());
        return 1;
    }

    if (idle_seconds > 0)
        idle_report(sup, n, idle_seconds, before);

    double t_stop = now_ms(), cpu_stop = self_cpu_ms();
    check(mpsup_stop_groups(sup, 60.0, false), "mpsup_stop_groups");
    double t_stopped = now_ms(), cpu_stopped = self_cpu_ms();
    check(mpsup_supervisor_free(sup), "mpsup_supervisor_free");
    double t_end = now_ms();

    printf("{\"impl\":\"library\",\"n\":%d,\"groups\":%d,\"setup_ms\":%.3f,\"start_ms\":%.3f,"
           "\"ready_ms\":%.3f,\"stop_ms\":%.3f,\"free_ms\":%.3f,\"total_ms\":%.3f,\"cpu_ms\":%.3f,"
           "\"stop_self_cpu_ms\":%.3f}\n",
           n, groups, t_start - t0, t_started - t_start, t_ready - t_started, t_stopped - t_stop,
           t_end - t_stopped, (t_end - t0) - (t_stop - t_ready) /* minus any idle span */,
           tree_cpu_ms(), cpu_stopped - cpu_stop);
    free(json);
    return 0;
}
