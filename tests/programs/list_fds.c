/* Prints "fd N TARGET" for every descriptor it has, the listing's own excepted. It never uses
 * the library: what it has, a program the host starts inherited. */
#define _GNU_SOURCE
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(void) {
    DIR *dir = opendir("/proc/self/fd");
    if (!dir) return 2;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] == '.' || atoi(entry->d_name) == dirfd(dir)) continue;
        char path[300], target[PATH_MAX];
        snprintf(path, sizeof path, "/proc/self/fd/%s", entry->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        target[n < 0 ? 0 : n] = '\0';
        printf("fd %s %s\n", entry->d_name, target);
    }
    closedir(dir);
    return 0;
}
