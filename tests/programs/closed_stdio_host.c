/* A host that closes its descriptors 0, 1 and 2, as a daemon does: `before` closes them before
 * mpsup_supervisor_new, `after` between it and the start. It starts one worker (this program,
 * run as `worker REPORT`), waits for its exit, frees the supervisor, and writes DIR/host:
 * "started", then "host fd N TARGET" for 0, 1 and 2 ("closed" when closed), or the error.
 * The worker writes "fd N TARGET" for its own 0, 1 and 2 to REPORT.
 * Usage: closed_stdio_host before|after DIR */
#define _GNU_SOURCE
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpsupervisor.h"

static FILE *out;

static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(out, fmt, ap);
    va_end(ap);
    fputc('\n', out);
    fclose(out);
    exit(2);
}

static void check(mpsup_result r, const char *what) {
    if (r != MPSUP_OK) fail("%s: %s: %s", what, mpsup_result_name(r), mpsup_last_error_message());
}

/* Writes "PREFIX N TARGET" for descriptors 0, 1 and 2 of this process. */
static void describe(FILE *to, const char *prefix) {
    for (int fd = 0; fd <= 2; fd++) {
        char path[64], target[PATH_MAX] = "closed";
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n >= 0) target[n] = '\0';
        fprintf(to, "%s %d %s\n", prefix, fd, target);
    }
}

static void close_stdio(void) {
    for (int fd = 0; fd <= 2; fd++) close(fd);
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "worker") == 0) {
        /* Looked at before anything is opened here. */
        char text[3 * (PATH_MAX + 16)];
        FILE *mem = fmemopen(text, sizeof text, "w");
        if (!mem) return 3;
        describe(mem, "fd");
        fclose(mem);
        FILE *report = fopen(argv[2], "w");
        if (!report) return 3;
        fputs(text, report);
        return fclose(report) == 0 ? 0 : 3;
    }
    if (argc != 3) return 2;
    int before = strcmp(argv[1], "before") == 0;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/host", argv[2]);
    /* Opened while 0, 1 and 2 are open, so its descriptor is above them. */
    out = fopen(path, "w");
    if (!out) return 2;
    setvbuf(out, NULL, _IONBF, 0);
    if (before) close_stdio();
    mpsup_supervisor sup;
    check(mpsup_supervisor_new(&sup), "new");
    if (!before) close_stdio();
    char groups[3 * PATH_MAX];
    snprintf(groups, sizeof groups,
             "[{\"name\":\"w\",\"argv\":[\"%s\",\"worker\",\"%s/worker\"],"
             "\"control_channel\":\"off\",\"warmup_ms\":60000}]",
             argv[0], argv[2]);
    check(mpsup_configure_process_groups(sup, groups), "configure");
    int event_fd;
    check(mpsup_event_fd(sup, &event_fd), "event_fd");
    const char *names[] = {"w"};
    check(mpsup_start_groups(sup, names, 1), "start_groups");
    fprintf(out, "started\n");
    for (int ended = 0; !ended;) {
        struct pollfd p = {.fd = event_fd, .events = POLLIN};
        if (poll(&p, 1, 60000) != 1) fail("no events for 60 s");
        char *json = NULL;
        check(mpsup_drain_events_json(sup, 0, &json), "drain");
        ended = strstr(json, "\"kind\":\"worker_failed\"") != NULL;
        mpsup_string_free(json);
    }
    describe(out, "host fd");
    check(mpsup_supervisor_free(sup), "free");
    fclose(out);
    return 0;
}
