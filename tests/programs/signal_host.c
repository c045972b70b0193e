/* A host that does what every event loop does: after creating its supervisor (and so the
 * library's threads), it blocks SIGTERM in its own thread and reads it with sigwaitinfo.
 * Usage: signal_host CYCLES LOG_PATH. Per cycle it starts workers, prints "cycle N", reads a line
 * from stdin (the test sends it after kill(SIGTERM)), checks that SIGTERM is pending for the
 * process, stops the workers, takes SIGTERM with sigwaitinfo and prints "got N". A SIGTERM
 * delivered to a library thread that does not block it kills the host instead. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>

#include "mpsupervisor.h"

static void check(mpsup_result r, const char *what) {
    if (r != MPSUP_OK) {
        fprintf(stderr, "%s: %s: %s\n", what, mpsup_result_name(r), mpsup_last_error_message());
        exit(2);
    }
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    int cycles = atoi(argv[1]);
    mpsup_supervisor sup;
    check(mpsup_supervisor_new(&sup), "new");
    char settings[4096];
    snprintf(settings, sizeof settings,
             "{\"exporters\":[{\"kind\":\"jsonl\",\"settings\":{\"path\":\"%s\"}}]}", argv[2]);
    check(mpsup_configure_lifecycle_logging(sup, settings), "configure_lifecycle_logging");
    check(mpsup_configure_process_groups(
              sup, "[{\"name\":\"g\",\"workers\":3,\"readiness\":\"notify\",\"argv\":[\"/bin/sh\","
                   "\"-c\",\"echo READY >&3; read -r l <&3\"]}]"),
          "configure_process_groups");

    /* Only now, with the library's threads running, does the host block SIGTERM. */
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    if (pthread_sigmask(SIG_BLOCK, &term, NULL) != 0) return 2;

    const char *names[] = {"g"};
    char line[64];
    for (int i = 0; i < cycles; i++) {
        check(mpsup_start_groups(sup, names, 1), "start_groups");
        bool ready = false;
        check(mpsup_wait_ready(sup, 60.0, &ready), "wait_ready");
        if (!ready) return 2;
        printf("cycle %d\n", i);
        fflush(stdout);
        if (!fgets(line, sizeof line, stdin)) return 2;
        sigset_t pending;
        sigpending(&pending);
        if (!sigismember(&pending, SIGTERM)) {
            fprintf(stderr, "SIGTERM is not pending after kill\n");
            return 4;
        }
        check(mpsup_stop_groups(sup, 30.0, true), "stop_groups");
        siginfo_t info;
        if (sigwaitinfo(&term, &info) != SIGTERM) return 3;
        printf("got %d from %d\n", i, (int)info.si_pid);
        fflush(stdout);
    }
    check(mpsup_supervisor_free(sup), "free");
    return 0;
}
