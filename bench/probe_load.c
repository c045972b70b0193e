/*
 * probe_load: the host's calls and the CPU of TCP readiness probes next to a crash loop
 * (API.md part 8 against part 4), and the same connects made by a bare C loop, in one process.
 *
 * usage: probe_load [--refused] WORKER [WORKERS [CRASHERS [SECONDS [PERIOD_MS]]]]
 *        (defaults 1000 300 5 100)
 *
 * Three phases, each with WORKERS tiny workers (readiness "notify") ready and CRASHERS workers
 * running /bin/true with restart "always" and a 1 ms delay (crash_loop.c's loop), started after
 * the workers are ready and given 0.5 s to reach their pace; for SECONDS the host times
 * mpsup_snapshot_json + mpsup_drain_events_json every 2 ms and the process's CPU is read:
 *   a. baseline: the workers have no probe;
 *   b. probes: each worker has a TCP readiness probe every PERIOD_MS (failure_threshold 1000:
 *      refused probes keep it ready for the run);
 *   c. bare loop: as a, plus a thread of this program that makes WORKERS non-blocking
 *      connect()s every PERIOD_MS to the same target, spread over the period, through its
 *      own epoll set (socket, connect, wait for writable, SO_ERROR, close): the floor of a probe.
 * The target is a listener on 127.0.0.1 whose connections a child process accepts and closes
 * (it counts them in shared memory: the probes made in b are counted, not assumed); with
 * --refused, a port bound but not listening (the kernel refuses at once, nothing accepts; the
 * probes of b are then counted as WORKERS * SECONDS * 1000 / PERIOD_MS).
 * The library's CPU per probe is (CPU of b - CPU of a) / probes; the bare loop's per connect is
 * (CPU of c - CPU of a) / connects, and its own thread's CPU per connect. Prints one JSON line.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mpsupervisor.h"
#include "bench_lib.h"
#include "bench_util.h"

#define USAGE "usage: probe_load [--refused] WORKER [WORKERS [CRASHERS [SECONDS [PERIOD_MS]]]]\n"
#define MAX_CALLS 200000

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The target of every connect, and what accepts there. */
struct target {
    int port;
    int fd;                      /* the listener, or the bound socket that never listens */
    pid_t child;                 /* the acceptor, 0 with --refused */
    _Atomic unsigned long *accepted; /* in memory shared with the acceptor */
};

static struct target open_target(bool refused)
{
    struct target t = {0};
    t.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (t.fd < 0 || bind(t.fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(t.fd, (struct sockaddr *)&a, &len) != 0)
        die("target socket");
    t.port = ntohs(a.sin_port);
    if (refused)
        return t;
    if (listen(t.fd, 4096) != 0)
        die("listen");
    t.accepted = mmap(NULL, sizeof *t.accepted, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (t.accepted == MAP_FAILED)
        die("mmap");
    t.child = fork();
    if (t.child < 0)
        die("fork");
    if (t.child == 0) {
        /* Dies with this process; accepts and closes until then. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() == 1)
            _exit(1);
        for (;;) {
            int c = accept4(t.fd, NULL, NULL, SOCK_CLOEXEC);
            if (c >= 0) {
                close(c);
                atomic_fetch_add(t.accepted, 1);
            }
        }
    }
    return t;
}

static unsigned long accepted(const struct target *t)
{
    return t->accepted ? atomic_load(t->accepted) : 0;
}

static void close_target(struct target *t)
{
    if (t->child > 0) {
        kill(t->child, SIGKILL);
        waitpid(t->child, NULL, 0);
    }
    close(t->fd);
}

/* CPU time (ms, from schedstat: nanoseconds on a CPU) of this process's threads named `comm`. */
static double threads_cpu_ms(const char *comm)
{
    double total = 0;
    DIR *tasks = opendir("/proc/self/task");
    if (!tasks)
        die("/proc/self/task");
    for (struct dirent *t; (t = readdir(tasks)) != NULL;) {
        if (t->d_name[0] == '.')
            continue;
        char path[288], name[64] = "";
        unsigned long long ns = 0;
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", t->d_name);
        FILE *f = fopen(path, "re");
        if (!f)
            continue;
        if (!fgets(name, sizeof name, f))
            name[0] = 0;
        fclose(f);
        name[strcspn(name, "\n")] = 0;
        if (strcmp(name, comm) != 0)
            continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/schedstat", t->d_name);
        f = fopen(path, "re");
        if (f && fscanf(f, "%llu", &ns) == 1)
            total += (double)ns / 1e6;
        if (f)
            fclose(f);
    }
    closedir(tasks);
    return total;
}

/* ---- the bare loop: WORKERS connects every PERIOD_MS, spread over the period ---- */

struct bare {
    int port, workers;
    double period_ms;
    atomic_bool stop;
    unsigned long connects, refused, failed;
    double thread_cpu_ms;
    pthread_t thread;
};

static double thread_cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void finish(struct bare *b, int ep, int fd)
{
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    b->connects++;
    if (err == ECONNREFUSED)
        b->refused++;
    else if (err != 0)
        b->failed++;
}

static void start_connect(struct bare *b, int ep)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        b->failed++;
        return;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)b->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 || errno != EINPROGRESS) {
        int err = errno;
        close(fd);
        b->connects++;
        if (err == ECONNREFUSED)
            b->refused++;
        else if (err != 0 && err != EINPROGRESS && err != EISCONN)
            b->failed++;
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.fd = fd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        close(fd);
        b->failed++;
    }
}

static void *bare_loop(void *arg)
{
    struct bare *b = arg;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    double cpu0 = thread_cpu_ms(), start = now_ms(), step = b->period_ms / b->workers;
    unsigned long next = 0; /* the next connect to start: number `next` is due at start + next * step */
    struct epoll_event events[256];
    while (!atomic_load(&b->stop)) {
        double due = start + (double)next * step, now = now_ms();
        int timeout = due > now ? (int)(due - now) + 1 : 0;
        int n = epoll_wait(ep, events, 256, timeout > 10 ? 10 : timeout);
        for (int i = 0; i < n; i++)
            finish(b, ep, events[i].data.fd);
        for (now = now_ms(); start + (double)next * step <= now; next++)
            start_connect(b, ep);
    }
    b->thread_cpu_ms = thread_cpu_ms() - cpu0;
    close(ep); /* connects still in flight are dropped with it: at most a handful */
    return NULL;
}

/* ---- the phases ---- */

struct phase {
    double p50, p99, max, own_p99, queued_p99, blocked_p99, blocked_max, cpu_ms, probe_thread_ms,
        seconds;
    int calls, respawns;
    unsigned long accepted;
};

static int count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* This thread's time on a CPU and waiting on a run queue (ms), from its schedstat. */
static void sched_ms(int fd, double *on_cpu, double *queued)
{
    char buf[96] = "";
    unsigned long long run = 0, wait = 0;
    if (pread(fd, buf, sizeof buf - 1, 0) > 0)
        sscanf(buf, "%llu %llu", &run, &wait);
    *on_cpu = (double)run / 1e6;
    *queued = (double)wait / 1e6;
}

static double p99_of(double *values, int n)
{
    qsort(values, (size_t)n, sizeof *values, by_value);
    return values[(n * 99) / 100];
}

static void measure(mpsup_supervisor sup, double seconds, double *samples, struct phase *ph,
                    const struct target *t)
{
    /* Per call: its own CPU, its time waiting for a CPU, and the rest of its wall time, when
     * it was blocked (on the engine's lock, or a page fault): where a slow call's time went. */
    static double own[MAX_CALLS], queued[MAX_CALLS], blocked[MAX_CALLS];
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/schedstat", gettid());
    int sched = open(path, O_RDONLY | O_CLOEXEC);
    if (sched < 0)
        die(path);
    struct timespec pause = {0, 2000000};
    unsigned long accepted0 = accepted(t);
    double probe0 = threads_cpu_ms("mpsup-probes");
    double cpu0 = self_cpu_ms(), t0 = now_ms(), until = t0 + seconds * 1e3;
    while (now_ms() < until && ph->calls < MAX_CALLS) {
        char *snapshot = NULL, *events = NULL;
        double run0, wait0, run1, wait1;
        sched_ms(sched, &run0, &wait0);
        double c0 = now_ms();
        check(mpsup_snapshot_json(sup, &snapshot), "snapshot");
        check(mpsup_drain_events_json(sup, 0, &events), "drain");
        double wall = now_ms() - c0;
        sched_ms(sched, &run1, &wait1);
        samples[ph->calls] = wall;
        own[ph->calls] = run1 - run0;
        queued[ph->calls] = wait1 - wait0;
        blocked[ph->calls++] = wall - (run1 - run0) - (wait1 - wait0);
        ph->respawns += count(events, "\"worker_spawned\"");
        mpsup_string_free(snapshot);
        mpsup_string_free(events);
        nanosleep(&pause, NULL);
    }
    ph->cpu_ms = self_cpu_ms() - cpu0;
    ph->probe_thread_ms = threads_cpu_ms("mpsup-probes") - probe0;
    ph->seconds = (now_ms() - t0) / 1e3;
    ph->accepted = accepted(t) - accepted0;
    qsort(samples, (size_t)ph->calls, sizeof *samples, by_value);
    ph->p50 = samples[ph->calls / 2];
    ph->p99 = samples[(ph->calls * 99) / 100];
    ph->max = samples[ph->calls - 1];
    ph->own_p99 = p99_of(own, ph->calls);
    ph->queued_p99 = p99_of(queued, ph->calls);
    ph->blocked_p99 = p99_of(blocked, ph->calls);
    ph->blocked_max = blocked[ph->calls - 1];
    close(sched);
}

/* One phase: `group` (WORKERS workers) ready, then the crash loop for 0.5 s, then measured
 * (with the bare loop running when `bare` is given); then all stopped. */
static struct phase run_phase(mpsup_supervisor sup, const char *group, double seconds,
                              double *samples, const struct target *t, struct bare *bare)
{
    struct phase ph = {0};
    const char *workers[] = {group}, *crash[] = {"crash"};
    check(mpsup_start_groups(sup, workers, 1), "start workers");
    bool ready = false;
    check(mpsup_wait_ready(sup, 120.0, &ready), "wait_ready");
    if (!ready) {
        fprintf(stderr, "probe_load: the workers of %s did not get ready\n", group);
        exit(1);
    }
    check(mpsup_start_groups(sup, crash, 1), "start crash");
    struct timespec settle = {0, 500000000};
    nanosleep(&settle, NULL);
    char *events = NULL;
    check(mpsup_drain_events_json(sup, 0, &events), "drain");
    mpsup_string_free(events);
    if (bare && pthread_create(&bare->thread, NULL, bare_loop, bare) != 0)
        die("pthread_create");
    measure(sup, seconds, samples, &ph, t);
    if (bare) {
        atomic_store(&bare->stop, true);
        pthread_join(bare->thread, NULL);
    }
    check(mpsup_force_terminate_groups(sup, crash, 1), "force crash");
    check(mpsup_stop_groups(sup, 60.0, false), "stop workers");
    return ph;
}

static void print_phase(const char *name, const struct phase *ph)
{
    printf("\"%s\":{\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"calls\":%d,\"respawns\":%d,"
           "\"own_cpu_p99_ms\":%.3f,\"queued_p99_ms\":%.3f,\"blocked_p99_ms\":%.3f,"
           "\"blocked_max_ms\":%.3f,\"cpu_ms\":%.1f,\"probe_thread_ms\":%.1f,\"seconds\":%.3f},",
           name, ph->p50, ph->p99, ph->max, ph->calls, ph->respawns, ph->own_p99, ph->queued_p99,
           ph->blocked_p99, ph->blocked_max, ph->cpu_ms, ph->probe_thread_ms,
           ph->seconds);
}

int main(int argc, char **argv)
{
    bool refused = argc > 1 && strcmp(argv[1], "--refused") == 0;
    argv += refused;
    argc -= refused;
    if (argc < 2 || argc > 6 || strpbrk(argv[1], "\"\\") != NULL) {
        fprintf(stderr, USAGE);
        return 2;
    }
    int workers = argc > 2 ? parse_count(argv[2], USAGE) : 1000;
    int crashers = argc > 3 ? parse_count(argv[3], USAGE) : 300;
    double seconds = argc > 4 ? atof(argv[4]) : 5.0;
    int period = argc > 5 ? parse_count(argv[5], USAGE) : 100;
    if (seconds <= 0 || workers > 4096) {
        fprintf(stderr, USAGE);
        return 2;
    }
    raise_nofile();
    static double samples[MAX_CALLS];
    struct target t = open_target(refused);

    mpsup_supervisor sup;
    check(mpsup_supervisor_new(&sup), "supervisor_new");
    char groups[4096];
    const char *tiny = "\"workers\":%d,\"argv\":[\"%s\"],\"readiness\":\"notify\",\"inherit_env\":false";
    char plain[512], probed[512];
    snprintf(plain, sizeof plain, tiny, workers, argv[1]);
    snprintf(probed, sizeof probed, tiny, workers, argv[1]);
    snprintf(groups, sizeof groups,
             "[{\"name\":\"plain\",%s},"
             "{\"name\":\"probed\",%s,\"readiness_probe\":{\"tcp\":\"127.0.0.1:%d\",\"period_ms\":%d,"
             "\"failure_threshold\":1000}},"
             "{\"name\":\"crash\",\"workers\":%d,\"argv\":[\"/bin/true\"],\"restart\":\"always\","
             "\"restart_delay_ms\":1,\"restart_delay_max_ms\":1,\"max_restarts\":100000000,"
             "\"restart_window_ms\":1000,\"control_channel\":\"off\"}]",
             plain, probed, t.port, period, crashers);
    check(mpsup_configure_process_groups(sup, groups), "configure");

    struct phase base = run_phase(sup, "plain", seconds, samples, &t, NULL);
    struct phase probes = run_phase(sup, "probed", seconds, samples, &t, NULL);
    struct bare bare = {.port = t.port, .workers = workers, .period_ms = period};
    struct phase loop = run_phase(sup, "plain", seconds, samples, &t, &bare);
    check(mpsup_supervisor_free(sup), "supervisor_free");
    close_target(&t);

    /* Probes made while measuring: counted by the acceptor, else as scheduled. */
    double made = refused ? workers * probes.seconds * 1000.0 / period : (double)probes.accepted;
    /* The library's probe thread (its sockets, epoll, the results told to the core under the
     * engine's lock) per probe, against the bare loop's thread per connect: both exact. */
    double lib_thread_us = probes.probe_thread_ms * 1e3 / made;
    double bare_thread_us = bare.thread_cpu_ms * 1e3 / (double)bare.connects;
    /* The whole process's CPU over the baseline's (scaled to each phase's length): everything
     * the probes cost, but noisy, as the crash loop's own CPU varies with its pace. */
    double base_rate = base.cpu_ms / base.seconds;
    double lib_us = (probes.cpu_ms - base_rate * probes.seconds) * 1e3 / made;
    double bare_us = (loop.cpu_ms - base_rate * loop.seconds) * 1e3 / (double)bare.connects;
    printf("{\"impl\":\"probe_load\",\"target\":\"%s\",\"workers\":%d,\"crashers\":%d,\"period_ms\":%d,",
           refused ? "refused" : "accepted", workers, crashers, period);
    print_phase("baseline", &base);
    print_phase("probed", &probes);
    print_phase("bare", &loop);
    printf("\"p50_ratio\":%.2f,\"p99_ratio\":%.2f,\"probes_made\":%.0f,\"probes_expected\":%.0f,"
           "\"connects\":%lu,\"connects_failed\":%lu,"
           "\"lib_thread_us_per_probe\":%.2f,\"bare_thread_us_per_connect\":%.2f,\"lib_over_bare\":%.2f,"
           "\"lib_process_us_per_probe\":%.2f,\"bare_process_us_per_connect\":%.2f}\n",
           probes.p50 / base.p50, probes.p99 / base.p99, made,
           workers * probes.seconds * 1000.0 / period, bare.connects, bare.failed, lib_thread_us,
           bare_thread_us, lib_thread_us / bare_thread_us, lib_us, bare_us);
    return 0;
}
