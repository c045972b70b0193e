/* A test worker that reports how it was started, on stdout:
 *   fd N          one line per inherited descriptor
 *   SigBlk: HEX   its signal mask, from /proc/self/status
 *   SigIgn: HEX   the signals it ignores
 *   SigCgt: HEX   the signals it catches
 *   pgid P pid Q  its process group and pid
 *   ppid P        its parent
 *   cwd DIR       its working directory
 *   0::PATH       its cgroup v2, from /proc/self/cgroup
 * then says READY and waits until the supervisor stops it or closes the channel. */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    DIR *dir = opendir("/proc/self/fd");
    if (!dir) return 2;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] == '.') continue;
        if (atoi(entry->d_name) == dirfd(dir)) continue; /* the listing's own descriptor */
        printf("fd %s\n", entry->d_name);
    }
    closedir(dir);
    FILE *status = fopen("/proc/self/status", "re");
    if (!status) return 2;
    char line[256];
    while (fgets(line, sizeof line, status))
        if (strncmp(line, "SigBlk:", 7) == 0 || strncmp(line, "SigIgn:", 7) == 0 ||
            strncmp(line, "SigCgt:", 7) == 0)
            fputs(line, stdout);
    fclose(status);
    printf("pgid %d pid %d\n", (int)getpgrp(), (int)getpid());
    printf("ppid %d\n", (int)getppid());
    char cwd[4096];
    printf("cwd %s\n", getcwd(cwd, sizeof cwd) ? cwd : "?");
    FILE *cgroup = fopen("/proc/self/cgroup", "re");
    if (!cgroup) return 2;
    while (fgets(line, sizeof line, cgroup))
        if (strncmp(line, "0::", 3) == 0) fputs(line, stdout);
    fclose(cgroup);
    fflush(stdout);
    const char *fd_text = getenv("MPSUP_CONTROL_FD");
    if (!fd_text) return 0;
    int fd = atoi(fd_text);
    if (write(fd, "READY\n", 6) != 6) return 3;
    char buf[64];
    while (read(fd, buf, sizeof buf) > 0) {
        if (strncmp(buf, "STOP", 4) == 0) break;
    }
    return 0;
}
