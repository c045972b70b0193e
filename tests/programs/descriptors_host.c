/* A host that starts a program of its own with system() while a supervisor has everything open:
 * its monitor's epoll set and eventfds, the event fd, control sockets and pidfds of running
 * workers, a jsonl log file, a worker's output file. Usage: descriptors_host LISTER DIR.
 * The lister's output (its descriptors) goes to DIR/fds; the library's must not be there. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpsupervisor.h"

static void check(mpsup_result r, const char *what) {
    if (r != MPSUP_OK) {
        fprintf(stderr, "%s: %s: %s\n", what, mpsup_result_name(r), mpsup_last_error_message());
        exit(2);
    }
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    /* Whatever this host inherited is not the library's: start from 0, 1 and 2 only. */
    for (int fd = 3; fd < 1024; fd++) close(fd);
    mpsup_supervisor sup;
    check(mpsup_supervisor_new(&sup), "new");
    char json[8192];
    snprintf(json, sizeof json,
             "{\"exporters\":[{\"kind\":\"jsonl\",\"settings\":{\"path\":\"%s/log.jsonl\"}}]}", argv[2]);
    check(mpsup_configure_lifecycle_logging(sup, json), "logging");
    snprintf(json, sizeof json,
             "[{\"name\":\"g\",\"workers\":3,\"readiness\":\"notify\",\"restart\":\"always\","
             "\"heartbeat_timeout_ms\":600000,\"stdout\":{\"file\":\"%s/out.log\"},"
             "\"argv\":[\"/bin/sh\",\"-c\",\"echo READY >&3; read -r l <&3\"]},"
             "{\"name\":\"plain\",\"control_channel\":\"off\",\"warmup_ms\":1,"
             "\"argv\":[\"/bin/sh\",\"-c\",\"exec sleep 1000000\"]}]",
             argv[2]);
    check(mpsup_configure_process_groups(sup, json), "configure");
    const char *names[] = {"g", "plain"};
    check(mpsup_start_groups(sup, names, 2), "start");
    bool ready = false;
    check(mpsup_wait_ready(sup, 60.0, &ready), "wait_ready");
    if (!ready) return 2;
    int event_fd;
    check(mpsup_event_fd(sup, &event_fd), "event_fd");
    char command[8192];
    snprintf(command, sizeof command, "exec '%s' > '%s/fds'", argv[1], argv[2]);
    if (system(command) != 0) return 3;
    check(mpsup_stop_groups(sup, 30.0, true), "stop");
    check(mpsup_supervisor_free(sup), "free");
    return 0;
}
