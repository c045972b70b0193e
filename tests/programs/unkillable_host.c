#define _POSIX_C_SOURCE 200809L
/* An unprivileged host whose worker it may not kill: force_terminate_groups and free must
 * return within their bound and name the worker. Prints one line per step for the test. */
#include <mpsupervisor.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    if (setgid(65534) != 0 || setuid(65534) != 0) {
        perror("dropping privileges");
        return 2;
    }
    mpsup_supervisor sup;
    if (mpsup_supervisor_new(&sup) != MPSUP_OK) return 3;
    char groups[4096];
    snprintf(groups, sizeof groups,
             "[{\"name\": \"u\", \"argv\": [\"%s\"], \"control_channel\": \"off\", \"warmup_ms\": 100}]",
             argv[1]);
    const char *names[] = {"u"};
    bool ready = false;
    if (mpsup_configure_process_groups(sup, groups) != MPSUP_OK ||
        mpsup_start_groups(sup, names, 1) != MPSUP_OK ||
        mpsup_wait_ready(sup, 30.0, &ready) != MPSUP_OK || !ready) {
        fprintf(stderr, "start: %s\n", mpsup_last_error_message());
        return 4;
    }
    char *snapshot = NULL;
    mpsup_snapshot_json(sup, &snapshot);
    printf("snapshot %s\n", snapshot);
    mpsup_string_free(snapshot);
    fflush(stdout);

    double t0 = now_ms();
    mpsup_result r = mpsup_force_terminate_groups(sup, names, 1);
    printf("force %s %.0f %s\n", mpsup_result_name(r), now_ms() - t0, mpsup_last_error_message());
    char *events = NULL;
    mpsup_drain_events_json(sup, 0, &events);
    printf("events %s\n", events);
    mpsup_string_free(events);
    fflush(stdout);

    t0 = now_ms();
    r = mpsup_supervisor_free(sup);
    printf("free %s %.0f %s\n", mpsup_result_name(r), now_ms() - t0, mpsup_last_error_message());
    fflush(stdout);
    return 0;
}
