/*
 * peer_lib_host: the library as bench/peers drives every supervisor, through its C API. N
 * peer_workers (no control channel: they stop on SIGTERM, like every peer's), restart "always"
 * with no delay, the smallest the library allows.
 *
 * usage: peer_lib_host WORKER SOCK N
 * Prints "idle" once configured, then answers commands on stdin, one line each:
 *   start  mpsup_start_groups, then "started"
 *   tick   drains the events queued so far (a host's normal upkeep), then "ok"
 *   stop   mpsup_stop_groups (SIGTERM to each, every worker reaped), then "stopped"
 * At end of input it force-terminates whatever runs and frees the supervisor.
 * A group holds at most 4,096 workers, so N is split over ceil(N / 4096) groups.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpsupervisor.h"
#include "../bench_lib.h"

#define MAX_GROUP 4096
#define MAX_GROUPS 32

static void reply(const char *line)
{
    puts(line);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: peer_lib_host WORKER SOCK N\n");
        return 2;
    }
    const char *worker = argv[1], *sock = argv[2];
    int n = atoi(argv[3]);
    int groups = (n + MAX_GROUP - 1) / MAX_GROUP;
    if (n < 0 || groups > MAX_GROUPS || strpbrk(worker, "\"\\") || strpbrk(sock, "\"\\")) {
        fprintf(stderr, "peer_lib_host: bad arguments\n");
        return 2;
    }
    size_t cap = (size_t)groups * (strlen(worker) + strlen(sock) + 400) + 8, len = 0;
    char *json = malloc(cap);
    char names_buf[MAX_GROUPS][16];
    const char *names[MAX_GROUPS];
    if (json == NULL)
        return 1;
    json[len++] = '[';
    for (int g = 0; g < groups; g++) {
        snprintf(names_buf[g], sizeof names_buf[g], "peer%d", g + 1);
        names[g] = names_buf[g];
        len += (size_t)snprintf(json + len, cap - len,
                                "%s{\"name\":\"%s\",\"workers\":%d,\"argv\":[\"%s\",\"%s\"],"
                                "\"inherit_env\":false,\"control_channel\":\"off\",\"readiness\":\"warmup\","
                                "\"warmup_ms\":0,\"restart\":\"always\",\"restart_delay_ms\":0,"
                                "\"restart_delay_max_ms\":0,\"max_restarts\":1000000000,"
                                "\"restart_window_ms\":1000}",
                                g ? "," : "", names[g], n / groups + (g < n % groups ? 1 : 0), worker, sock);
    }
    snprintf(json + len, cap - len, "]");

    mpsup_supervisor sup;
    check(mpsup_supervisor_new(&sup), "mpsup_supervisor_new");
    if (groups > 0)
        check(mpsup_configure_process_groups(sup, json), "mpsup_configure_process_groups");
    reply("idle");

    char line[64];
    while (fgets(line, sizeof line, stdin) != NULL) {
        if (strcmp(line, "start\n") == 0) {
            if (groups > 0)
                check(mpsup_start_groups(sup, names, (size_t)groups), "mpsup_start_groups");
            reply("started");
        } else if (strcmp(line, "tick\n") == 0) {
            char *events = NULL;
            check(mpsup_drain_events_json(sup, 0, &events), "mpsup_drain_events_json");
            mpsup_string_free(events);
            reply("ok");
        } else if (strcmp(line, "stop\n") == 0) {
            if (groups > 0)
                check(mpsup_stop_groups(sup, 60.0, false), "mpsup_stop_groups");
            reply("stopped");
        } else {
            fprintf(stderr, "peer_lib_host: unknown command %s", line);
            return 2;
        }
    }
    if (groups > 0)
        check(mpsup_force_terminate_groups(sup, names, (size_t)groups), "mpsup_force_terminate_groups");
    check(mpsup_supervisor_free(sup), "mpsup_supervisor_free");
    free(json);
    return 0;
}
