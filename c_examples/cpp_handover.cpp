/*
 * cpp_handover: a C++17 host that upgrades itself without restarting a worker (API.md part 9),
 * through the RAII wrapper of mpsupervisor.hpp.
 *
 *   cpp_handover [SHELL_WORKER]
 *
 * The first image starts the group "shell" of two copies of SHELL_WORKER (default:
 * shell_worker.sh next to this executable), waits until both are ready, prints the snapshot,
 * prepares the handover and execs itself (/proc/self/exe, or CPP_HANDOVER_EXE: a new build
 * would be another path) with the state's memfd in MPSUP_HANDOVER_FD. The new image adopts the supervisor (same
 * workers, same pids), prints the snapshot again, stops the workers gracefully over the
 * control sockets the first image made, and prints every event drained (those of the first
 * image included, then supervisor_adopted).
 *
 * If the exec fails, handover_abort() gives the handle back and the first image stops the
 * workers gracefully itself and prints the events.
 *
 * stdout carries JSON only: the first image's snapshot, the new image's snapshot, the events,
 * one per line (without the second snapshot when the exec failed). Status goes to stderr.
 * Exit status: 0 clean run; 1 an mpsup call failed, the workers were not all ready or the exec
 * failed; 2 bad arguments.
 */
#include "mpsupervisor.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <iostream>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

constexpr double READY_TIMEOUT_SECONDS = 10.0;
constexpr double STOP_TIMEOUT_SECONDS = 5.0;
constexpr const char *HANDOVER_FD = "MPSUP_HANDOVER_FD";

/* The new image: adopt, check, stop gracefully. */
int adopted(int fd)
{
    mpsup::Supervisor sup = mpsup::Supervisor::adopt(fd);
    std::cerr << "cpp_handover: adopted\n";
    std::cout << sup.snapshot().get() << std::endl;
    sup.stop(STOP_TIMEOUT_SECONDS, true);
    std::cout << sup.drain_events().get() << std::endl;
    sup.close();
    return 0;
}

/* The first image: start, prepare, exec; abort if the exec fails. */
int first(char **argv, const std::string &shell_worker)
{
    mpsup::Supervisor sup;
    sup.configure("[{\"name\": \"shell\", \"workers\": 2, \"readiness\": \"notify\", \"argv\": [" +
                  mpsup::json_string(shell_worker) + "]}]");
    sup.start({"shell"});
    if (!sup.wait_ready(READY_TIMEOUT_SECONDS)) {
        std::cerr << "cpp_handover: the workers did not get ready\n";
        return 1;
    }
    std::cout << sup.snapshot().get() << std::endl;

    const char *next = std::getenv("CPP_HANDOVER_EXE");
    const int fd = sup.handover_prepare();
    setenv(HANDOVER_FD, std::to_string(fd).c_str(), 1);
    execv(next ? next : "/proc/self/exe", argv);
    /* Still here: the exec failed. The handle works again, nothing was lost. */
    const int err = errno;
    unsetenv(HANDOVER_FD);
    sup.handover_abort();
    std::cerr << "cpp_handover: exec: " << std::strerror(err) << "; aborted\n";
    sup.stop(STOP_TIMEOUT_SECONDS, true);
    std::cout << sup.drain_events().get() << std::endl;
    sup.close();
    return 1;
}

} // namespace

int main(int argc, char **argv)
{
    try {
        if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
            std::cerr << "usage: cpp_handover [SHELL_WORKER]\n";
            return 2;
        }
        if (const char *fd = std::getenv(HANDOVER_FD)) {
            const int number = std::atoi(fd);
            unsetenv(HANDOVER_FD); /* not for the workers this image may spawn */
            return adopted(number);
        }
        const std::string shell_worker =
            argc == 2 ? std::string(argv[1])
                      : (std::filesystem::read_symlink("/proc/self/exe").parent_path() /
                         "shell_worker.sh")
                            .string();
        return first(argv, shell_worker);
    } catch (const std::exception &e) {
        std::cerr << "cpp_handover: " << e.what() << '\n';
        return 1;
    }
}
