/*
 * handover_bench: the time a handover takes (API.md part 9) and the gap in event delivery it
 * causes, for N notify-readiness tiny workers.
 *
 * usage: handover_bench WORKER N [ROUNDS]
 * The first image starts N workers (groups of at most 4,096), waits until they are ready, then
 * hands them over ROUNDS times (5 by default): each round is mpsup_handover_prepare, execv of
 * this program, mpsup_supervisor_adopt in the new image, and the first mpsup_drain_events_json
 * there. The last image checks that every worker kept its pid, stops them (STOP NOW) and prints
 * one JSON line: per phase the median and the maximum over the rounds, in ms:
 *   prepare  mpsup_handover_prepare (threads stopped, state written to the memfd);
 *   exec     from the prepare's return to main() of the new image (the kernel's execve and the
 *            dynamic loader: the host's part, not the library's);
 *   adopt    mpsup_supervisor_adopt;
 *   total    prepare + exec + adopt;
 *   gap      from the start of the prepare (the last moment the old image could drain an event)
 *            to the return of the new image's first drain, which holds supervisor_adopted: the
 *            longest time no event can be delivered.
 * The state's size in bytes is printed too.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mpsupervisor.h"
#include "bench_lib.h"
#include "bench_util.h"

#define MAX_GROUP 4096
#define MAX_ROUNDS 64

/* Every worker pid of a snapshot, in order, as one string (to compare across images). */
static char *pids_of(mpsup_supervisor sup)
{
    char *json = NULL;
    check(mpsup_snapshot_json(sup, &json), "snapshot");
    size_t cap = strlen(json) / 8 + 16, len = 0;
    char *out = calloc(cap, 1);
    for (const char *p = strstr(json, "\"pid\":"); p; p = strstr(p + 1, "\"pid\":"))
        len += (size_t)snprintf(out + len, cap - len, "%d,", atoi(p + 6));
    mpsup_string_free(json);
    return out;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    double s[MAX_ROUNDS];
    memcpy(s, v, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof(double), cmp);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static double maximum(double *v, int n)
{
    double m = 0;
    for (int i = 0; i < n; i++)
        m = v[i] > m ? v[i] : m;
    return m;
}

/* The rounds' figures travel from image to image in the environment, as text. */
static void append(const char *name, double value)
{
    const char *old = getenv(name);
    char buf[4096];
    snprintf(buf, sizeof buf, "%s%s%.3f", old ? old : "", old ? "," : "", value);
    setenv(name, buf, 1);
}

static int values(const char *name, double *out)
{
    const char *s = getenv(name);
    int n = 0;
    while (s && *s && n < MAX_ROUNDS) {
        out[n++] = strtod(s, (char **)&s);
        if (*s == ',')
            s++;
    }
    return n;
}

static void hand_over(mpsup_supervisor sup, char **argv)
{
    double t0 = now_ms();
    int fd = -1;
    check(mpsup_handover_prepare(sup, &fd), "handover_prepare");
    double t1 = now_ms();
    struct stat st;
    if (fstat(fd, &st) == 0) {
        char size[32];
        snprintf(size, sizeof size, "%lld", (long long)st.st_size);
        setenv("BENCH_STATE_BYTES", size, 1);
    }
    append("BENCH_PREPARE", t1 - t0);
    char number[16], start[32], prepared[32];
    snprintf(number, sizeof number, "%d", fd);
    snprintf(start, sizeof start, "%.6f", t0);
    snprintf(prepared, sizeof prepared, "%.6f", t1);
    setenv("MPSUP_HANDOVER_FD", number, 1);
    setenv("BENCH_T0", start, 1);
    setenv("BENCH_T1", prepared, 1);
    execv("/proc/self/exe", argv);
    perror("handover_bench: execv");
    check(mpsup_handover_abort(sup), "handover_abort");
    exit(1);
}

int main(int argc, char **argv)
{
    double entered = now_ms();
    if (argc < 3) {
        fprintf(stderr, "usage: handover_bench WORKER N [ROUNDS]\n");
        return 2;
    }
    int n = atoi(argv[2]);
    int rounds = argc > 3 ? atoi(argv[3]) : 5;
    if (n < 1 || rounds < 1 || rounds > MAX_ROUNDS)
        return 2;
    raise_nofile();
    mpsup_supervisor sup;
    const char *number = getenv("MPSUP_HANDOVER_FD");
    if (!number) {
        int groups = (n + MAX_GROUP - 1) / MAX_GROUP;
        size_t cap = (size_t)groups * (strlen(argv[1]) + 128) + 8, len = 0;
        char *json = malloc(cap);
        json[len++] = '[';
        const char *names[64];
        char names_buf[64][16];
        for (int g = 0; g < groups; g++) {
            int size = n / groups + (g < n % groups ? 1 : 0);
            snprintf(names_buf[g], sizeof names_buf[g], "bench%d", g + 1);
            names[g] = names_buf[g];
            len += (size_t)snprintf(json + len, cap - len,
                                    "%s{\"name\":\"bench%d\",\"workers\":%d,\"argv\":[\"%s\"],"
                                    "\"readiness\":\"notify\",\"inherit_env\":false}",
                                    g ? "," : "", g + 1, size, argv[1]);
        }
        snprintf(json + len, cap - len, "]");
        check(mpsup_supervisor_new(&sup), "new");
        check(mpsup_configure_process_groups(sup, json), "configure");
        check(mpsup_start_groups(sup, names, (size_t)groups), "start");
        bool ready = false;
        check(mpsup_wait_ready(sup, 300, &ready), "wait_ready");
        if (!ready) {
            fprintf(stderr, "handover_bench: not ready\n");
            return 1;
        }
        char *json_events = NULL;
        check(mpsup_drain_events_json(sup, 0, &json_events), "drain");
        mpsup_string_free(json_events);
        setenv("BENCH_PIDS", pids_of(sup), 1);
        hand_over(sup, argv);
    }
    double t0 = strtod(getenv("BENCH_T0"), NULL);
    double t1 = strtod(getenv("BENCH_T1"), NULL);
    int fd = atoi(number);
    unsetenv("MPSUP_HANDOVER_FD");
    double a0 = now_ms();
    check(mpsup_supervisor_adopt(fd, &sup), "adopt");
    double a1 = now_ms();
    char *json_events = NULL;
    check(mpsup_drain_events_json(sup, 0, &json_events), "drain");
    double drained = now_ms();
    if (!strstr(json_events, "\"supervisor_adopted\"")) {
        fprintf(stderr, "handover_bench: no supervisor_adopted in %s\n", json_events);
        return 1;
    }
    mpsup_string_free(json_events);
    append("BENCH_EXEC", entered - t1);
    append("BENCH_ADOPT", a1 - a0);
    append("BENCH_TOTAL", a1 - t0);
    append("BENCH_GAP", drained - t0);
    double prepare[MAX_ROUNDS];
    if (values("BENCH_PREPARE", prepare) < rounds)
        hand_over(sup, argv);
    char *pids = pids_of(sup);
    if (strcmp(pids, getenv("BENCH_PIDS")) != 0) {
        fprintf(stderr, "handover_bench: the workers' pids changed\n");
        return 1;
    }
    check(mpsup_stop_groups(sup, 60, false), "stop");
    check(mpsup_supervisor_free(sup), "free");
    double v[MAX_ROUNDS];
    printf("{\"impl\":\"handover\",\"n\":%d,\"rounds\":%d,\"state_bytes\":%s", n, rounds,
           getenv("BENCH_STATE_BYTES"));
    const char *phases[] = {"prepare", "exec", "adopt", "total", "gap"};
    const char *vars[] = {"BENCH_PREPARE", "BENCH_EXEC", "BENCH_ADOPT", "BENCH_TOTAL", "BENCH_GAP"};
    for (int i = 0; i < 5; i++) {
        int k = values(vars[i], v);
        printf(",\"%s_ms\":%.3f,\"%s_max_ms\":%.3f", phases[i], median(v, k), phases[i],
               maximum(v, k));
    }
    printf("}\n");
    return 0;
}
