/*
 * demo_host: a small host program for libmpsupervisor.
 *
 *   demo_host [--json] [--worker PATH] [--shell-worker PATH] [--seconds N] [CONFIG.json GROUP...]
 *
 * It configures process groups (from CONFIG.json, starting the GROUPs named after
 * it, or a built-in configuration with the groups "ingest" and "cpu"), starts them,
 * waits until the workers are ready, prints the snapshot once, then prints the
 * lifecycle events as they arrive until N seconds have passed (default 3), a group
 * fails (group_failed: nothing of it will run again), or SIGINT/SIGTERM arrives, and
 * stops the workers gracefully.
 *
 * stdout: by default the library's console exporter writes one aligned line per event
 * for people,
 *   12:00:01.234 ingest#2     = worker_ready             generation=1 pid=123
 * (UTC time, the worker or group, the kind, the other fields), and one per line the
 * workers of the built-in configuration write to stderr (captured),
 *   12:00:01.240 ingest#2     | [worker ingest#2 pid 123] ready
 * and the demo prints the snapshot as one line per worker. With --json: each event as the
 * library's JSON object on one line, and the snapshot as one JSON line (the workers' stderr
 * is then the demo's). Status (what it is waiting for) goes to stderr.
 *
 * Exit status: 0 clean run; 1 an mpsup call failed or the workers were not all
 * ready; 2 bad arguments; 3 the graceful stop timed out and the workers were
 * force-terminated; 4 a group failed.
 */
#define _GNU_SOURCE /* signalfd, strsignal */

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "mpsupervisor.h"

#define READY_TIMEOUT_SECONDS 10.0
#define STOP_TIMEOUT_SECONDS 5.0

struct args {
    bool json;                /* --json: the library's JSON lines instead of the console format */
    const char *worker;       /* example_worker, for the built-in configuration */
    const char *shell_worker; /* shell_worker.sh, for the built-in configuration */
    double seconds;
    const char *config_path;  /* NULL: built-in configuration */
    const char **groups;
    size_t group_count;
};

static const char *default_groups[] = {"ingest", "cpu"};

/* Prints a failed call's result name and message; true when rc is MPSUP_OK. */
static bool check(mpsup_result rc, const char *call)
{
    if (rc == MPSUP_OK)
        return true;
    fprintf(stderr, "demo_host: %s failed: %s: %s\n", call, mpsup_result_name((uint32_t)rc),
            mpsup_last_error_message());
    return false;
}

static void usage(void)
{
    fprintf(stderr, "usage: demo_host [--json] [--worker PATH] [--shell-worker PATH] "
                    "[--seconds N] [CONFIG.json GROUP...]\n");
}

/* The directory of this executable, so that the bundled workers are found next to it. */
static bool own_directory(char *dir, size_t size)
{
    ssize_t n = readlink("/proc/self/exe", dir, size - 1);
    if (n < 0) {
        perror("demo_host: readlink /proc/self/exe");
        return false;
    }
    dir[n] = '\0';
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    return true;
}

/* Parses the command line; positional arguments are collected into `positional`,
 * which has room for argc entries. Returns false on a usage error. */
static bool parse_args(int argc, char **argv, const char **positional, struct args *a)
{
    size_t n_positional = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--json") == 0) {
            a->json = true;
        } else if (strcmp(arg, "--worker") == 0 && next) {
            a->worker = next;
            i++;
        } else if (strcmp(arg, "--shell-worker") == 0 && next) {
            a->shell_worker = next;
            i++;
        } else if (strcmp(arg, "--seconds") == 0) {
            char *end = NULL;
            a->seconds = next ? strtod(next, &end) : -1.0;
            /* A bound keeps the millisecond arithmetic below far from overflow. */
            if (!next || end == next || *end != '\0' || !(a->seconds >= 0.0 && a->seconds <= 1e9))
                return false;
            i++;
        } else if (arg[0] == '-' && arg[1] != '\0') {
            return false;
        } else {
            positional[n_positional++] = arg;
        }
    }
    if (n_positional == 0) {
        a->groups = default_groups;
        a->group_count = sizeof default_groups / sizeof default_groups[0];
        return true;
    }
    /* A configuration file names its groups; we would need a JSON parser to read
     * them back, so the command line names the ones to start. */
    a->config_path = positional[0];
    a->groups = positional + 1;
    a->group_count = n_positional - 1;
    if (a->group_count == 0)
        fprintf(stderr, "demo_host: name the groups of %s to start\n", a->config_path);
    return a->group_count > 0;
}

/* Writes s as a JSON string literal. */
static void put_json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

/* The built-in configuration; the caller frees the text with free(). */
static char *default_config(const char *worker, const char *shell_worker, bool capture)
{
    const char *output = capture ? ", \"stderr\": \"capture\"" : "";
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (!out)
        return NULL;
    fputs("[{\"name\": \"ingest\", \"workers\": 2, \"readiness\": \"notify\", \"argv\": [", out);
    put_json_string(out, worker);
    fprintf(out, ", \"--drain-ms\", \"50\"]%s},\n", output);
    fputs(" {\"name\": \"cpu\", \"workers\": 2, \"readiness\": \"notify\", \"argv\": [", out);
    put_json_string(out, shell_worker);
    fprintf(out, "]%s}]", output);
    if (fclose(out) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* The whole file as a NUL-terminated string; the caller frees it with free(). */
static char *read_file(const char *path)
{
    FILE *in = fopen(path, "r");
    if (!in) {
        fprintf(stderr, "demo_host: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    bool ok = out != NULL;
    char buf[4096];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0)
        ok = fwrite(buf, 1, n, out) == n;
    ok = ok && !ferror(in);
    fclose(in);
    if (out && fclose(out) != 0)
        ok = false;
    if (!ok) {
        fprintf(stderr, "demo_host: cannot read %s\n", path);
        free(text);
        return NULL;
    }
    return text;
}

/* The console format reads the library's own output: an event, or a snapshot entry, is one
 * flat JSON object ({"key": value, ...} whose values are strings, numbers, true, false or
 * null, never nested), printed compactly by the library. This is not a general JSON reader,
 * only a walk over that shape; string values are shown as the library escaped them. */
struct field {
    const char *key;
    int key_len;
    const char *value; /* for a string, its text between the quotes */
    int value_len;
};

/* The end of the JSON string whose opening quote is at p: the closing quote. */
static const char *string_end(const char *p)
{
    for (p++; *p && *p != '"'; p++)
        if (*p == '\\' && p[1])
            p++;
    return p;
}

/* Reads the next "key": value of a flat object at *p (just after '{' or a ','); false at the
 * closing brace or at anything this shape does not allow. */
static bool next_field(const char **p, struct field *f)
{
    const char *s = *p;
    while (*s == ' ' || *s == ',')
        s++;
    if (*s != '"')
        return false;
    const char *key_end = string_end(s);
    if (*key_end != '"' || key_end[1] != ':')
        return false;
    f->key = s + 1;
    f->key_len = (int)(key_end - s - 1);
    s = key_end + 2;
    while (*s == ' ')
        s++;
    if (*s == '"') {
        const char *end = string_end(s);
        if (*end != '"')
            return false;
        f->value = s + 1;
        f->value_len = (int)(end - s - 1);
        s = end + 1;
    } else {
        if (*s == '{' || *s == '[')
            return false;
        f->value = s;
        while (*s && *s != ',' && *s != '}')
            s++;
        f->value_len = (int)(s - f->value);
    }
    *p = s;
    return true;
}

static bool key_is(const struct field *f, const char *key)
{
    return (size_t)f->key_len == strlen(key) && strncmp(f->key, key, (size_t)f->key_len) == 0;
}

/* Finds `key` in the flat object starting at `object` ('{'). */
static bool find_field(const char *object, const char *key, struct field *out)
{
    const char *p = object + 1;
    struct field f;
    while (next_field(&p, &f)) {
        if (key_is(&f, key)) {
            *out = f;
            return true;
        }
    }
    return false;
}

/* Drains the queued events one at a time; with --json prints each as one JSON line (otherwise
 * the library's console exporter has written them already). A drain of at most one event
 * returns "[{...}]", so the event is the text between the outer brackets. Sets *group_failed
 * when a group_failed event was among them. */
static bool print_events(mpsup_supervisor sup, bool json, bool *group_failed)
{
    for (;;) {
        char *text = NULL;
        if (!check(mpsup_drain_events_json(sup, 1, &text), "mpsup_drain_events_json"))
            return false;
        size_t len = strlen(text);
        bool empty = len <= 2;
        if (!empty && json)
            printf("%.*s\n", (int)(len - 2), text + 1);
        /* Keys and strings are the library's: this pattern can only be the kind itself. */
        if (!empty && strstr(text, "\"kind\":\"group_failed\""))
            *group_failed = true;
        mpsup_string_free(text);
        if (empty)
            break;
    }
    fflush(stdout);
    return true;
}

/* The snapshot: one JSON line (--json), or one line per worker entry. */
static bool print_snapshot(mpsup_supervisor sup, bool json)
{
    char *text = NULL;
    if (!check(mpsup_snapshot_json(sup, &text), "mpsup_snapshot_json"))
        return false;
    if (json) {
        printf("%s\n", text);
    } else {
        /* {"group": [{entry}, ...], ...}: the entries are the objects two levels down. */
        int depth = 0;
        for (const char *p = text; *p; p++) {
            if (*p == '"') {
                p = string_end(p);
                if (!*p)
                    break;
            } else if (*p == '{' || *p == '[') {
                if (++depth == 3) {
                    static const char *const keys[] = {"pid", "state", "control_channel",
                                                       "restarts"};
                    struct field id = {0}, f;
                    find_field(p, "worker_id", &id);
                    printf("snapshot     %-12.*s =", id.value_len, id.value);
                    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
                        if (find_field(p, keys[k], &f))
                            printf(" %s=%.*s", keys[k], f.value_len, f.value);
                    putchar('\n');
                }
            } else if (*p == '}' || *p == ']') {
                depth--;
            }
        }
    }
    fflush(stdout);
    mpsup_string_free(text);
    return true;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Prints events as they arrive until `seconds` have passed, a group has failed, or a signal
 * comes in. */
static bool print_events_until_stop(mpsup_supervisor sup, const struct args *a, int event_fd,
                                    int signal_fd, bool *group_failed)
{
    long long deadline = now_ms() + (long long)(a->seconds * 1000.0);
    struct pollfd fds[2] = {{.fd = event_fd, .events = POLLIN}, {.fd = signal_fd, .events = POLLIN}};

    fprintf(stderr, "demo_host: running; stopping in %g s, or on Ctrl-C\n", a->seconds);
    for (;;) {
        if (*group_failed) {
            fprintf(stderr, "demo_host: a group failed and will not restart, stopping\n");
            return true;
        }
        long long left = deadline - now_ms();
        if (left <= 0) {
            fprintf(stderr, "demo_host: %g seconds passed, stopping\n", a->seconds);
            return true;
        }
        int n = poll(fds, 2, left > INT_MAX ? INT_MAX : (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            perror("demo_host: poll");
            return false;
        }
        if (fds[1].revents & POLLIN) {
            struct signalfd_siginfo info;
            if (read(signal_fd, &info, sizeof info) != (ssize_t)sizeof info) {
                perror("demo_host: read signalfd");
                return false;
            }
            fprintf(stderr, "demo_host: got %s, stopping\n", strsignal((int)info.ssi_signo));
            return true;
        }
        if (fds[0].revents & (POLLERR | POLLNVAL)) {
            fprintf(stderr, "demo_host: the event descriptor failed\n");
            return false;
        }
        /* The descriptor stays readable until the queue is drained. */
        if ((fds[0].revents & POLLIN) && !print_events(sup, a->json, group_failed))
            return false;
    }
}

/* Everything between creating and freeing the supervisor; returns the exit status. */
static int run(mpsup_supervisor sup, const struct args *a, const char *config, int signal_fd)
{
    int event_fd = -1;
    bool ready = false;
    bool group_failed = false;

    /* The console exporter: lines for people on stdout, coloured on a terminal. */
    static const char console[] = "{\"exporters\": [{\"kind\": \"console\"}]}";
    if (!a->json &&
        !check(mpsup_configure_lifecycle_logging(sup, console), "mpsup_configure_lifecycle_logging"))
        return 1;
    if (!check(mpsup_configure_process_groups(sup, config), "mpsup_configure_process_groups") ||
        !check(mpsup_event_fd(sup, &event_fd), "mpsup_event_fd") ||
        !check(mpsup_start_groups(sup, a->groups, a->group_count), "mpsup_start_groups") ||
        !print_events(sup, a->json, &group_failed))
        return 1;

    /* wait_ready blocks; events queued meanwhile are printed right after it. */
    fprintf(stderr, "demo_host: waiting up to %g s for the workers to be ready\n",
            READY_TIMEOUT_SECONDS);
    if (!check(mpsup_wait_ready(sup, READY_TIMEOUT_SECONDS, &ready), "mpsup_wait_ready"))
        return 1;
    fprintf(stderr, "demo_host: workers ready: %s\n", ready ? "yes" : "no");
    if (!print_events(sup, a->json, &group_failed) || !print_snapshot(sup, a->json) ||
        !print_events_until_stop(sup, a, event_fd, signal_fd, &group_failed))
        return 1;

    int status = group_failed ? 4 : ready ? 0 : 1;
    fprintf(stderr, "demo_host: stopping the workers (up to %g s)\n", STOP_TIMEOUT_SECONDS);
    mpsup_result rc = mpsup_stop_groups(sup, STOP_TIMEOUT_SECONDS, true);
    if (rc == MPSUP_ERR_TIMEOUT) {
        fprintf(stderr, "demo_host: %s; forcing\n", mpsup_last_error_message());
        if (!check(mpsup_force_terminate_groups(sup, a->groups, a->group_count),
                   "mpsup_force_terminate_groups"))
            return 1;
        status = 3;
    } else if (!check(rc, "mpsup_stop_groups")) {
        return 1;
    }
    if (!print_events(sup, a->json, &group_failed))
        return 1;
    fprintf(stderr, "demo_host: all workers stopped\n");
    return status;
}

int main(int argc, char **argv)
{
    char dir[PATH_MAX];
    char worker[PATH_MAX + 32];
    char shell_worker[PATH_MAX + 32];
    struct args a = {.json = false, .worker = worker, .shell_worker = shell_worker, .seconds = 3.0};
    const char **positional = calloc((size_t)argc, sizeof *positional);

    if (!positional || !own_directory(dir, sizeof dir)) {
        free(positional);
        return 1;
    }
    snprintf(worker, sizeof worker, "%s/example_worker", dir);
    snprintf(shell_worker, sizeof shell_worker, "%s/shell_worker.sh", dir);
    if (!parse_args(argc, argv, positional, &a)) {
        usage();
        free(positional);
        return 2;
    }

    char *config = a.config_path ? read_file(a.config_path) : default_config(a.worker, a.shell_worker, !a.json);
    if (!config) {
        free(positional);
        return 1;
    }

    /* Block the stop signals before the library starts any thread, so that every
     * thread inherits the mask and the signals reach us only through the signalfd.
     * (Workers start with an empty mask: the library resets it.) */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    int signal_fd = -1;
    if (sigprocmask(SIG_BLOCK, &stop_signals, NULL) != 0 ||
        (signal_fd = signalfd(-1, &stop_signals, SFD_CLOEXEC)) < 0) {
        perror("demo_host: signalfd");
        free(config);
        free(positional);
        return 1;
    }

    fprintf(stderr, "demo_host: mpsupervisor %s\n", mpsup_version());
    mpsup_supervisor sup;
    int status = 1;
    if (check(mpsup_supervisor_new(&sup), "mpsup_supervisor_new")) {
        status = run(sup, &a, config, signal_fd);
        /* Also force-terminates whatever an early failure left running. */
        if (!check(mpsup_supervisor_free(sup), "mpsup_supervisor_free"))
            status = 1;
    }

    close(signal_fd);
    free(config);
    free(positional);
    return status;
}
