/* A worker that uses up what a cgroup limit bounds: `hog MODE [ARG]`.
 *   mem MIB          allocates and touches 1 MiB at a time, MIB of them, then exits 0 (a
 *                    memory_max below that ends it first: the OOM killer's SIGKILL);
 *   fork N FILE      forks up to N children that wait, then writes "COUNT ERRNO" (how many
 *                    forks succeeded, the errno of the first that failed or 0) to FILE and waits;
 *                    its children die with its process group;
 *   spin             burns CPU until killed. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "mem") == 0) {
        int n = atoi(argv[2]);
        for (int i = 0; i < n; i++) {
            char *p = malloc(1 << 20);
            if (p == NULL) {
                return 2;
            }
            memset(p, i & 0xff, 1 << 20);
        }
        return 0;
    }
    if (argc >= 4 && strcmp(argv[1], "fork") == 0) {
        int n = atoi(argv[2]), count = 0, err = 0;
        for (int i = 0; i < n; i++) {
            pid_t pid = fork();
            if (pid == 0) {
                pause();
                _exit(0);
            }
            if (pid < 0) {
                err = errno;
                break;
            }
            count++;
        }
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", argv[3]);
        FILE *f = fopen(tmp, "w");
        if (f == NULL) {
            return 3;
        }
        fprintf(f, "%d %d\n", count, err);
        fclose(f);
        rename(tmp, argv[3]);
        for (;;) {
            pause();
        }
    }
    if (argc >= 2 && strcmp(argv[1], "spin") == 0) {
        volatile unsigned long x = 0;
        for (;;) {
            x++;
        }
    }
    return 64;
}
