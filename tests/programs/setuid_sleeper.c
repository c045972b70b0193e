#define _DEFAULT_SOURCE
/* A worker its unprivileged host may not signal: installed set-user-ID root, it takes all of
 * root's ids (as sudo does), so kill() from the host fails with EPERM. */
#include <stdio.h>
#include <unistd.h>

int main(void) {
    if (setgid(0) != 0 || setuid(0) != 0) {
        perror("setuid");
        return 2;
    }
    for (;;) pause();
}
