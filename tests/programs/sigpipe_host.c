/* A C host with SIGPIPE at its default action (as every C program has it): 200 workers that exit
 * at once, each sent a BOOTSTRAP line, for a few cycles of start, wait for every exit, stop. A
 * control-socket write to a worker already gone must fail quietly, never raise SIGPIPE, which
 * would kill this host with status 141. Prints "ok" and exits 0. */
#define _GNU_SOURCE
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpsupervisor.h"

static void check(mpsup_result r, const char *what) {
    if (r != MPSUP_OK) {
        fprintf(stderr, "%s: %s: %s\n", what, mpsup_result_name(r), mpsup_last_error_message());
        exit(2);
    }
}

static int count(const char *haystack, const char *needle) {
    int n = 0;
    for (const char *p = haystack; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
    return n;
}

int main(void) {
    signal(SIGPIPE, SIG_DFL);
    mpsup_supervisor sup;
    check(mpsup_supervisor_new(&sup), "new");
    check(mpsup_configure_process_groups(
              sup, "[{\"name\":\"g\",\"workers\":200,\"argv\":[\"/bin/true\"],\"warmup_ms\":60000,"
                   "\"bootstrap\":{\"job\":\"short\",\"n\":[1,2,3]}}]"),
          "configure");
    int event_fd;
    check(mpsup_event_fd(sup, &event_fd), "event_fd");
    const char *names[] = {"g"};
    for (int cycle = 0; cycle < 3; cycle++) {
        check(mpsup_start_groups(sup, names, 1), "start_groups");
        int ended = 0;
        while (ended < 200) {
            struct pollfd p = {.fd = event_fd, .events = POLLIN};
            if (poll(&p, 1, 60000) != 1) {
                fprintf(stderr, "no events for 60 s (%d ended)\n", ended);
                return 2;
            }
            char *json = NULL;
            check(mpsup_drain_events_json(sup, 0, &json), "drain");
            ended += count(json, "\"kind\":\"worker_failed\"");
            mpsup_string_free(json);
        }
        check(mpsup_stop_groups(sup, 30.0, true), "stop_groups");
    }
    check(mpsup_supervisor_free(sup), "free");
    puts("ok");
    return 0;
}
