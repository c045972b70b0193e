/* A host that hands its workers to its next image (API.md part 9):
 *   handover_host MODE GROUPS_JSON [ROUNDS]
 * makes a supervisor, starts group "g" (or "web" in mode http), waits until it is ready, prints
 * "SNAPSHOT <json>" and "STATUS <json>", prepares the handover and execs itself as
 *   handover_host --adopted MODE GROUPS_JSON [ROUNDS]
 * with MPSUP_HANDOVER_FD set. The new image adopts, prints "ADOPTED", "INHERITABLE <fd>" for
 * each descriptor above 2 left without close-on-exec, "MEMFD_OPEN" if the memfd's number is
 * still open, then waits until ready, prints "SNAPSHOT", stops gracefully and prints "EVENTS
 * <json>" (all events, from the first image on) and "DONE". Modes:
 *   basic      as above;
 *   meanwhile  after the prepare, SIGTERMs the first worker and waits for it to be a zombie
 *              before the exec; the new image waits for its respawn before the rest;
 *   abort      no exec: a call on the prepared handle must fail ("LOCKED <result>"), abort, then
 *              the rest on the same handle;
 *   die        prints "PREPARED" and waits to be killed;
 *   dieafter   the new image adopts, prints "ADOPTED" and its descriptors, "SNAPSHOT", and
 *              waits to be killed;
 *   badversion rewrites the state's format before the exec; the new image prints
 *              "REFUSED <result> <message>";
 *   rolling    before the prepare, begins a rolling restart of the group and waits for its
 *              first "worker_replaced" (printing the events so far as "EVENTS1 <json>"); the
 *              new image waits for "rollout_finished" before the rest;
 *   http       ROUNDS handovers one second apart (each image prints "SNAPSHOT"), then a rolling
 *              restart to the configuration in CONFIG2 ("ROLLED"), then, after a line on stdin,
 *              the rest. GROUP names the group (default "g").
 * With EVENT_FD=1 the first image takes the event fd before the prepare ("EVENT_FD <fd>"), and
 * the new image says which number it has after the adoption and whether it polls readable
 * ("EVENT_FD <fd> <0|1>"). With WAIT_FOR=PATH the new image waits (up to a minute) until PATH
 * exists before the rest. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mpsupervisor.h"

static struct mpsup_supervisor sup;
static const char *group = "g";
static char events[1 << 20];
static size_t events_len;

static void check(enum mpsup_result r, const char *what) {
    if (r != MPSUP_OK) {
        printf("ERROR %s: %s: %s\n", what, mpsup_result_name(r), mpsup_last_error_message());
        fflush(stdout);
        exit(3);
    }
}

static void print(const char *tag, enum mpsup_result (*call)(struct mpsup_supervisor, char **)) {
    char *json = NULL;
    check(call(sup, &json), tag);
    printf("%s %s\n", tag, json);
    fflush(stdout);
    mpsup_string_free(json);
}

/* Appends every undrained event to `events` (one JSON array per drain, joined by commas). */
static void drain(void) {
    char *json = NULL;
    check(mpsup_drain_events_json(sup, 0, &json), "drain");
    size_t n = strlen(json);
    if (n > 2 && events_len + n + 2 < sizeof events) {
        if (events_len)
            events[events_len++] = ',';
        memcpy(events + events_len, json, n);
        events_len += n;
        events[events_len] = 0;
    }
    mpsup_string_free(json);
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static void wait_ready(void) {
    bool ready = false;
    check(mpsup_wait_ready(sup, 60.0, &ready), "wait_ready");
    if (!ready) {
        print("SNAPSHOT", mpsup_snapshot_json);
        printf("ERROR not ready\n");
        exit(3);
    }
}

/* The first worker's pid, from a snapshot. */
static int first_pid(void) {
    char *json = NULL;
    check(mpsup_snapshot_json(sup, &json), "snapshot");
    const char *p = strstr(json, "\"pid\":");
    int pid = p ? atoi(p + 6) : 0;
    mpsup_string_free(json);
    return pid;
}

static char proc_state(int pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *close = strrchr(buf, ')');
    return close && close[1] ? close[2] : 0;
}

/* The state's format (one digit), rewritten to one no library writes. */
static void corrupt_format(int fd) {
    char buf[64];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = 0;
    /* Any one-digit format this library writes. */
    char *at = strstr(buf, "\"format\":");
    if (!at || at[9] < '0' || at[9] > '8' || at[10] != ',') {
        printf("ERROR no format in %s\n", buf);
        exit(3);
    }
    if (pwrite(fd, "9", 1, (at - buf) + 9) != 1)
        exit(3);
}

/* With EVENT_FD=1: the event fd's number (and in the new image, whether it polls readable). */
static void event_fd(bool adopted) {
    if (!getenv("EVENT_FD"))
        return;
    int fd = -1;
    check(mpsup_event_fd(sup, &fd), "event_fd");
    if (!adopted) {
        printf("EVENT_FD %d\n", fd);
    } else {
        struct pollfd p = {fd, POLLIN, 0};
        printf("EVENT_FD %d %d\n", fd, poll(&p, 1, 0) == 1);
    }
    fflush(stdout);
}

/* argv: {program, MODE, GROUPS_JSON, ...}. */
static void hand_over(char **argv, const char *rounds) {
    int fd = -1;
    event_fd(false);
    check(mpsup_handover_prepare(sup, &fd), "handover_prepare");
    const char *mode = argv[1];
    if (!strcmp(mode, "die")) {
        printf("PREPARED %d\n", fd);
        fflush(stdout);
        for (;;)
            pause();
    }
    if (!strcmp(mode, "meanwhile")) {
        /* The pid from before the prepare: the handle refuses every call now. */
        int pid = atoi(getenv("FIRST_PID"));
        kill(pid, SIGTERM);
        for (int i = 0; i < 10000 && proc_state(pid) != 'Z'; i++)
            sleep_ms(1);
        printf("EXITED %d %c\n", pid, proc_state(pid));
        fflush(stdout);
    }
    if (!strcmp(mode, "badversion"))
        corrupt_format(fd);
    char number[16];
    snprintf(number, sizeof number, "%d", fd);
    setenv("MPSUP_HANDOVER_FD", number, 1);
    char *next[] = {"handover_host", "--adopted", argv[1], argv[2], (char *)rounds, NULL};
    /* The path the first image was run by (not /proc/self/exe, which under valgrind names
     * valgrind itself). */
    const char *self = getenv("HANDOVER_HOST_EXE");
    execv(self ? self : "/proc/self/exe", next);
    perror("exec");
    printf("ERROR exec\n");
    check(mpsup_handover_abort(sup), "handover_abort");
    exit(3);
}

/* Prints "INHERITABLE <fd> <what>" for each descriptor above 2 without close-on-exec that the
 * host did not inherit itself (those are in PRE_FDS, written by the first image). */
static void report_descriptors(int memfd) {
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    const char *pre = getenv("PRE_FDS");
    while (d && (e = readdir(d))) {
        int fd = atoi(e->d_name);
        if (fd <= 2 || fd == dirfd(d))
            continue;
        char mine[16];
        snprintf(mine, sizeof mine, ",%d,", fd);
        if (pre && strstr(pre, mine))
            continue;
        int flags = fcntl(fd, F_GETFD);
        if (flags >= 0 && !(flags & FD_CLOEXEC)) {
            char path[64], what[256] = "";
            snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
            ssize_t n = readlink(path, what, sizeof what - 1);
            what[n > 0 ? n : 0] = 0;
            printf("INHERITABLE %d %s\n", fd, what);
        }
    }
    if (d)
        closedir(d);
    if (fcntl(memfd, F_GETFD) >= 0)
        printf("MEMFD_OPEN %d\n", memfd);
}

static void finish(void) {
    print("SNAPSHOT", mpsup_snapshot_json);
    check(mpsup_stop_groups(sup, 30.0, true), "stop");
    drain();
    printf("EVENTS [%s]\n", events_len ? events : "");
    check(mpsup_supervisor_free(sup), "free");
    printf("DONE\n");
    fflush(stdout);
}

static void adopted(char **argv) {
    const char *mode = argv[2];
    const char *number = getenv("MPSUP_HANDOVER_FD");
    int fd = number ? atoi(number) : -1;
    unsetenv("MPSUP_HANDOVER_FD");
    enum mpsup_result r = mpsup_supervisor_adopt(fd, &sup);
    if (!strcmp(mode, "badversion")) {
        printf("REFUSED %s %s\n", mpsup_result_name(r), mpsup_last_error_message());
        fflush(stdout);
        exit(r == MPSUP_OK ? 3 : 0);
    }
    check(r, "adopt");
    printf("ADOPTED\n");
    report_descriptors(fd);
    fflush(stdout);
    event_fd(true);
    if (!strcmp(mode, "dieafter")) {
        print("SNAPSHOT", mpsup_snapshot_json);
        for (;;)
            pause();
    }
    /* The test says when the workers have done what it waits for after the adoption. */
    const char *wait_for = getenv("WAIT_FOR");
    for (int i = 0; wait_for && i < 60000 && access(wait_for, F_OK) != 0; i++)
        sleep_ms(1);
    if (!strcmp(mode, "rolling")) {
        /* The rollout crossed in its middle: wait for its end. */
        for (int i = 0; i < 60000 && !strstr(events, "\"rollout_finished\""); i++) {
            drain();
            sleep_ms(1);
        }
    }
    if (!strcmp(mode, "meanwhile")) {
        /* The first worker exited during the exec: wait for its respawn. */
        const char *since = NULL;
        for (int i = 0; i < 60000; i++) {
            drain();
            since = strstr(events, "\"supervisor_adopted\"");
            if (since && strstr(since, "\"worker_spawned\""))
                break;
            sleep_ms(1);
        }
    }
    if (!strcmp(mode, "http")) {
        int rounds = atoi(argv[4]);
        print("SNAPSHOT", mpsup_snapshot_json);
        if (rounds > 0) {
            sleep_ms(1000);
            drain();
            events_len = 0;
            char left[16];
            snprintf(left, sizeof left, "%d", rounds - 1);
            hand_over(argv + 1, left);
        }
        /* The last image: a rolling restart to the new build's workers. */
        check(mpsup_configure_process_groups(sup, getenv("CONFIG2")), "configure 2");
        const char *names[] = {group};
        check(mpsup_restart_groups(sup, names, 1, NULL), "restart");
        wait_ready();
        printf("ROLLED\n");
        fflush(stdout);
        /* The test says when its client is done. */
        char line[16];
        if (!fgets(line, sizeof line, stdin))
            exit(3);
    }
    wait_ready();
    finish();
}

int main(int argc, char **argv) {
    if (getenv("GROUP"))
        group = getenv("GROUP");
    if (argc >= 5 && !strcmp(argv[1], "--adopted")) {
        adopted(argv);
        return 0;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: handover_host MODE GROUPS_JSON [ROUNDS]\n");
        return 2;
    }
    /* What this host inherited itself, before the library opened anything. */
    char pre[1024] = ",";
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        int fd = atoi(e->d_name);
        int flags = fcntl(fd, F_GETFD);
        if (fd > 2 && fd != dirfd(d) && flags >= 0 && !(flags & FD_CLOEXEC) &&
            strlen(pre) + 16 < sizeof pre)
            snprintf(pre + strlen(pre), 16, "%d,", fd);
    }
    if (d)
        closedir(d);
    setenv("PRE_FDS", pre, 1);
    if (strchr(argv[0], '/'))
        setenv("HANDOVER_HOST_EXE", argv[0], 1);
    const char *names[] = {group};
    check(mpsup_supervisor_new(&sup), "new");
    check(mpsup_configure_process_groups(sup, argv[2]), "configure");
    check(mpsup_start_groups(sup, names, 1), "start");
    wait_ready();
    print("SNAPSHOT", mpsup_snapshot_json);
    print("STATUS", mpsup_status_json);
    char first[16];
    snprintf(first, sizeof first, "%d", first_pid());
    setenv("FIRST_PID", first, 1);
    if (!strcmp(argv[1], "abort")) {
        int fd = -1;
        event_fd(false);
        check(mpsup_handover_prepare(sup, &fd), "handover_prepare");
        char *json = NULL;
        printf("LOCKED %s\n", mpsup_result_name(mpsup_snapshot_json(sup, &json)));
        check(mpsup_handover_abort(sup), "handover_abort");
        report_descriptors(fd);
        wait_ready();
        finish();
        return 0;
    }
    if (!strcmp(argv[1], "rolling")) {
        check(mpsup_restart_groups(sup, names, 1, NULL), "restart");
        for (int i = 0; i < 60000 && !strstr(events, "\"worker_replaced\""); i++) {
            drain();
            sleep_ms(1);
        }
        printf("EVENTS1 [%s]\n", events);
        fflush(stdout);
    }
    hand_over(argv, argc > 3 ? argv[3] : "0");
    return 3;
}
