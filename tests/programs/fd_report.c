/* A test worker: prints the descriptors it inherited (one per line, on stdout), says READY,
 * then waits for the supervisor to close or stop it. */
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
        printf("%s\n", entry->d_name);
    }
    closedir(dir);
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
