/*
 * example_worker: a worker process that speaks the mpsupervisor control protocol
 * through the library's worker helpers.
 *
 * With a control channel (the supervisor set MPSUP_CONTROL_FD) it says READY, then
 * waits for "STOP DRAIN", "STOP NOW" or end of file and exits 0. Without one it
 * waits for the group's stop_signal and dies of it: that is the supervisor's
 * fallback path.
 *
 * Flags, for tests and the demo:
 *   --no-ready          never say READY
 *   --exit-after-ms N   exit on its own after N ms, with the --exit-code value
 *   --exit-code C       exit code for --exit-after-ms (default 1)
 *   --ignore-stop       ignore STOP lines and SIGTERM: keep running until SIGKILL
 *   --spawn-child       fork a child that sleeps forever (it dies only when the
 *                       whole process group is killed)
 *   --drain-ms N        on STOP DRAIN, pretend to finish in-flight work for N ms
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mpsupervisor.h"

struct options {
    bool no_ready;
    long exit_after_ms; /* negative: never exit on its own */
    int exit_code;
    bool ignore_stop;
    bool spawn_child;
    long drain_ms;
};

static const char *worker_id = "standalone";

/* One line to stderr, prefixed with who we are. */
static void say(const char *format, ...)
{
    va_list args;
    fprintf(stderr, "[worker %s pid %ld] ", worker_id, (long)getpid());
    va_start(args, format);
    vfprintf(stderr, format, args);
    va_end(args);
    fputc('\n', stderr);
}

static void usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "example_worker: %s%s%s\n", what, arg ? ": " : "", arg ? arg : "");
    exit(2);
}

static long parse_long(const char *flag, const char *text, long min, long max)
{
    char *end = NULL;
    errno = 0;
    long value = text ? strtol(text, &end, 10) : 0;
    if (!text || errno != 0 || end == text || *end != '\0' || value < min || value > max)
        usage_error("bad or missing number after", flag);
    return value;
}

static struct options parse_options(int argc, char **argv)
{
    struct options o = {false, -1, 1, false, false, 0};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--no-ready") == 0) {
            o.no_ready = true;
        } else if (strcmp(arg, "--ignore-stop") == 0) {
            o.ignore_stop = true;
        } else if (strcmp(arg, "--spawn-child") == 0) {
            o.spawn_child = true;
        } else if (strcmp(arg, "--exit-after-ms") == 0) {
            o.exit_after_ms = parse_long(arg, next, 0, LONG_MAX / 2);
            i++;
        } else if (strcmp(arg, "--exit-code") == 0) {
            o.exit_code = (int)parse_long(arg, next, 0, 255);
            i++;
        } else if (strcmp(arg, "--drain-ms") == 0) {
            o.drain_ms = parse_long(arg, next, 0, LONG_MAX / 2);
            i++;
        } else {
            usage_error("unknown argument", arg);
        }
    }
    return o;
}

/* Simulated work (draining, or living for --exit-after-ms); never used to wait for
 * another process. */
static void pretend_to_work_ms(long ms)
{
    struct timespec left = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&left, &left) == -1 && errno == EINTR) {
    }
}

static void wait_for_signal(void)
{
    for (;;)
        pause();
}

static void fail(const char *call, mpsup_result rc)
{
    say("%s failed: %s: %s", call, mpsup_result_name((uint32_t)rc), mpsup_last_error_message());
    exit(3);
}

static void spawn_child(void)
{
    pid_t pid = fork();
    if (pid < 0) {
        say("fork failed: %s", strerror(errno));
        exit(3);
    }
    if (pid == 0) {
        /* The child stays in the worker's process group, so only a kill of that
         * group ends it. It drops its copy of the control socket: the channel
         * belongs to the worker alone. */
        const char *fd = getenv("MPSUP_CONTROL_FD");
        if (fd)
            close(atoi(fd));
        wait_for_signal();
    }
    say("spawned child pid %ld", (long)pid);
}

/* Fallback path: the supervisor stops us with stop_signal (SIGTERM by default),
 * whose default action ends the process. */
static int run_without_channel(const struct options *o)
{
    say("no control channel: waiting for the stop signal");
    if (o->exit_after_ms >= 0) {
        pretend_to_work_ms(o->exit_after_ms);
        say("exiting on its own with code %d", o->exit_code);
        return o->exit_code;
    }
    wait_for_signal(); /* the stop signal, or SIGKILL with --ignore-stop */
    return 0;
}

static int run_with_channel(const struct options *o)
{
    bool stop = false;
    bool drain = false;

    if (!o->no_ready) {
        mpsup_result rc = mpsup_worker_notify_ready();
        if (rc != MPSUP_OK)
            fail("mpsup_worker_notify_ready", rc);
    }

    /* A negative timeout waits forever. */
    double timeout = o->exit_after_ms >= 0 ? (double)o->exit_after_ms / 1000.0 : -1.0;
    mpsup_result rc = mpsup_worker_wait_stop(timeout, &stop, &drain);
    if (rc != MPSUP_OK)
        fail("mpsup_worker_wait_stop", rc);

    if (!stop) {
        say("exiting on its own with code %d", o->exit_code);
        return o->exit_code;
    }
    if (o->ignore_stop) {
        /* After a STOP or end of file there is nothing more to read: just stay. */
        say("ignoring the stop request (%s)", drain ? "drain" : "now");
        wait_for_signal();
    }
    if (drain) {
        say("stopping (drain)");
        if (o->drain_ms > 0) {
            pretend_to_work_ms(o->drain_ms);
            say("drained in-flight work");
        }
    } else {
        /* STOP NOW, or end of file (the supervisor is gone). */
        say("stopping (now)");
    }
    return 0;
}

int main(int argc, char **argv)
{
    /* Line-buffered, so that each line reaches the terminal in one write and does
     * not interleave with other workers' lines. */
    setvbuf(stderr, NULL, _IOLBF, 0);
    struct options o = parse_options(argc, argv);
    const char *id = getenv("MPSUP_WORKER_ID");
    if (id && *id)
        worker_id = id;

    /* Before the fork, so that the child ignores SIGTERM too. */
    if (o.ignore_stop)
        signal(SIGTERM, SIG_IGN);
    if (o.spawn_child)
        spawn_child();
    say("started");

    /* The helpers return an error when there is no control channel; checking the
     * variable first keeps their errors meaningful. */
    if (getenv("MPSUP_CONTROL_FD") == NULL)
        return run_without_channel(&o);
    return run_with_channel(&o);
}
