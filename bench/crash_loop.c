/*
 * crash_loop: how quickly the host's calls answer while workers crash-loop, and whether
 * healthy workers next to them are ever failed for a missed heartbeat.
 *
 * usage: crash_loop WORKER [CRASHERS [BEATERS [SECONDS]]]   (defaults 300 100 5)
 *
 * BEATERS tiny workers send HEARTBEAT every 200 ms (heartbeat_timeout_ms 1000). First, as the
 * baseline in the same process, the host times mpsup_snapshot_json + mpsup_drain_events_json
 * every 2 ms for SECONDS / 2 with only them running. Then CRASHERS workers running /bin/true
 * with restart "always" and a 1 ms delay join, and the same calls are timed for SECONDS.
 * Prints one JSON line: the median, 99th percentile and maximum of each phase (ms), the calls,
 * the respawns seen and the heartbeat failures of the healthy workers (which should be 0).
 */
#define _GNU_SOURCE
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mpsupervisor.h"
#include "bench_lib.h"
#include "bench_util.h"

#define USAGE "usage: crash_loop WORKER [CRASHERS [BEATERS [SECONDS]]]\n"
#define MAX_CALLS 200000

static int count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

struct phase {
    double p50, p99, max;
    int calls, respawns, heartbeat_failures;
};

static struct phase measure(mpsup_supervisor sup, double seconds, double *samples)
{
    struct phase ph = {0};
    double until = now_ms() + seconds * 1e3;
    struct timespec pause = {0, 2000000};
    while (now_ms() < until && ph.calls < MAX_CALLS) {
        char *snapshot = NULL, *events = NULL;
        double t0 = now_ms();
        check(mpsup_snapshot_json(sup, &snapshot), "snapshot");
        check(mpsup_drain_events_json(sup, 0, &events), "drain");
        samples[ph.calls++] = now_ms() - t0;
        ph.respawns += count(events, "\"worker_spawned\"");
        ph.heartbeat_failures += count(events, "\"heartbeat_timeout\"");
        mpsup_string_free(snapshot);
        mpsup_string_free(events);
        nanosleep(&pause, NULL);
    }
    qsort(samples, (size_t)ph.calls, sizeof *samples, by_value);
    ph.p50 = samples[ph.calls / 2];
    ph.p99 = samples[(ph.calls * 99) / 100];
    ph.max = samples[ph.calls - 1];
    return ph;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 5 || strpbrk(argv[1], "\"\\") != NULL) {
        fprintf(stderr, USAGE);
        return 2;
    }
    int crashers = argc > 2 ? parse_count(argv[2], USAGE) : 300;
    int beaters = argc > 3 ? parse_count(argv[3], USAGE) : 100;
    double seconds = argc > 4 ? atof(argv[4]) : 5.0;
    raise_nofile();
    static double samples[MAX_CALLS];

    mpsup_supervisor sup;
    check(mpsup_supervisor_new(&sup), "supervisor_new");
    char groups[2048];
    snprintf(groups, sizeof groups,
             "[{\"name\":\"beat\",\"workers\":%d,\"argv\":[\"%s\"],\"readiness\":\"notify\","
             "\"env\":{\"TINY_HEARTBEAT_MS\":\"200\"},\"heartbeat_timeout_ms\":1000},"
             "{\"name\":\"crash\",\"workers\":%d,\"argv\":[\"/bin/true\"],\"restart\":\"always\","
             "\"restart_delay_ms\":1,\"restart_delay_max_ms\":1,\"max_restarts\":100000000,"
             "\"restart_window_ms\":1000,\"control_channel\":\"off\"}]",
             beaters, argv[1], crashers);
    check(mpsup_configure_process_groups(sup, groups), "configure");
    const char *beat[] = {"beat"}, *crash[] = {"crash"};
    check(mpsup_start_groups(sup, beat, 1), "start beat");
    bool ready = false;
    check(mpsup_wait_ready(sup, 60.0, &ready), "wait_ready");
    if (!ready) {
        fprintf(stderr, "crash_loop: the heartbeat workers did not get ready\n");
        return 1;
    }
    struct phase base = measure(sup, seconds / 2, samples);
    check(mpsup_start_groups(sup, crash, 1), "start crash");
    struct phase loop = measure(sup, seconds, samples);
    check(mpsup_force_terminate_groups(sup, crash, 1), "force crash");
    check(mpsup_supervisor_free(sup), "supervisor_free");
    printf("{\"crashers\":%d,\"beaters\":%d,\"baseline_p50_ms\":%.3f,\"baseline_p99_ms\":%.3f,"
           "\"baseline_max_ms\":%.3f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
           "\"calls\":%d,\"respawns\":%d,\"false_heartbeat_failures\":%d}\n",
           crashers, beaters, base.p50, base.p99, base.max, loop.p50, loop.p99, loop.max,
           loop.calls, loop.respawns, base.heartbeat_failures + loop.heartbeat_failures);
    return 0;
}
