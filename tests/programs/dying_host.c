/* A host that dies without freeing its supervisor: `dying_host MODE GROUPS_JSON NAME...`.
 * It starts the named groups, waits until they are ready, prints "STATUS <json>" and
 * "SNAPSHOT <json>" (one line each), and then, by MODE:
 * Then it waits for a line on stdin (the test looks at every process meanwhile) and:
 *   sigkill       SIGKILLs itself;
 *   free          frees it and returns 0 (so does every mode at end of file);
 *   exit          calls exit(0) without mpsup_supervisor_free;
 *   fork-sigkill  forks a child that does not exec and sleeps (printing "FORKED <pid>"), then
 *                 SIGKILLs itself;
 *   thread-sigkill makes the supervisor and starts the groups on a thread that then exits,
 *                 and SIGKILLs itself after that thread is joined. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpsupervisor.h"

static const char *config;
static const char **names;
static size_t n_names;
static struct mpsup_supervisor sup;

static void check(enum mpsup_result r, const char *what) {
    if (r != MPSUP_OK) {
        fprintf(stderr, "%s: %s: %s\n", what, mpsup_result_name(r), mpsup_last_error_message());
        exit(3);
    }
}

static void *start(void *arg) {
    (void)arg;
    check(mpsup_supervisor_new(&sup), "new");
    check(mpsup_configure_process_groups(sup, config), "configure");
    check(mpsup_start_groups(sup, names, n_names), "start");
    bool ready = false;
    check(mpsup_wait_ready(sup, 60.0, &ready), "wait_ready");
    if (!ready) {
        fprintf(stderr, "not ready\n");
        exit(3);
    }
    return NULL;
}

static void print(const char *tag, enum mpsup_result (*call)(struct mpsup_supervisor, char **)) {
    char *json = NULL;
    check(call(sup, &json), tag);
    printf("%s %s\n", tag, json);
    mpsup_string_free(json);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: dying_host MODE GROUPS_JSON NAME...\n");
        return 2;
    }
    const char *mode = argv[1];
    config = argv[2];
    names = (const char **)&argv[3];
    n_names = (size_t)(argc - 3);
    if (strcmp(mode, "thread-sigkill") == 0) {
        pthread_t t;
        if (pthread_create(&t, NULL, start, NULL) != 0 || pthread_join(t, NULL) != 0) {
            return 3;
        }
    } else {
        start(NULL);
    }
    print("STATUS", mpsup_status_json);
    print("SNAPSHOT", mpsup_snapshot_json);
    if (strcmp(mode, "fork-sigkill") == 0) {
        pid_t child = fork();
        if (child == 0) {
            for (;;) {
                pause();
            }
        }
        printf("FORKED %d\n", (int)child);
    }
    printf("WAITING\n");
    fflush(stdout);
    /* The test looks at every process first, then says go. */
    char line[16];
    /* End of file (the test is gone) or "free": the supervisor is freed, as a host should. */
    if (fgets(line, sizeof line, stdin) == NULL || strcmp(mode, "free") == 0) {
        check(mpsup_supervisor_free(sup), "free");
        return 0;
    }
    if (strcmp(mode, "exit") == 0) {
        exit(0);
    }
    kill(getpid(), SIGKILL);
    return 4;
}
