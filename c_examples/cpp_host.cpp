/*
 * cpp_host: a C++17 host for libmpsupervisor, using the C header directly through a tiny
 * RAII wrapper (mpsupervisor.hpp next to it: a move-only Supervisor owning the handle,
 * JsonString freeing the library's strings, exceptions carrying the result name and the
 * library's message).
 *
 *   cpp_host [SHELL_WORKER]
 *
 * It configures one group, "shell", of two copies of SHELL_WORKER (default: shell_worker.sh
 * next to this executable), starts it, waits until both are ready, prints the snapshot, stops
 * them gracefully and prints every lifecycle event.
 *
 * stdout carries JSON only: the snapshot object on one line, then the array of drained events
 * on one line. Status goes to stderr.
 *
 * Exit status: 0 clean run; 1 an mpsup call failed or the workers were not all ready;
 * 2 bad arguments; 3 the graceful stop timed out and the workers were force-terminated.
 */
#include "mpsupervisor.hpp"

#include <exception>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

namespace {

constexpr double READY_TIMEOUT_SECONDS = 10.0;
constexpr double STOP_TIMEOUT_SECONDS = 5.0;

int run(const std::string &shell_worker)
{
    const std::vector<std::string> groups{"shell"};
    mpsup::Supervisor sup;
    sup.configure("[{\"name\": \"shell\", \"workers\": 2, \"readiness\": \"notify\", \"argv\": [" +
                  mpsup::json_string(shell_worker) + "]}]");
    sup.start(groups);

    const bool ready = sup.wait_ready(READY_TIMEOUT_SECONDS);
    std::cerr << "cpp_host: workers ready: " << (ready ? "yes" : "no") << '\n';
    std::cout << sup.snapshot().get() << std::endl;

    int status = ready ? 0 : 1;
    try {
        sup.stop(STOP_TIMEOUT_SECONDS, true);
    } catch (const mpsup::Error &e) {
        if (e.code() != MPSUP_ERR_TIMEOUT)
            throw;
        std::cerr << "cpp_host: " << e.what() << "; forcing\n";
        sup.force_terminate(groups);
        status = 3;
    }
    std::cout << sup.drain_events().get() << std::endl;
    sup.close();
    std::cerr << "cpp_host: all workers stopped\n";
    return status;
}

} // namespace

int main(int argc, char **argv)
{
    try {
        if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
            std::cerr << "usage: cpp_host [SHELL_WORKER]\n";
            return 2;
        }
        const std::string shell_worker =
            argc == 2 ? std::string(argv[1])
                      : (std::filesystem::read_symlink("/proc/self/exe").parent_path() /
                         "shell_worker.sh")
                            .string();
        std::cerr << "cpp_host: mpsupervisor " << mpsup_version() << '\n';
        return run(shell_worker);
    } catch (const std::exception &e) {
        std::cerr << "cpp_host: " << e.what() << '\n';
        return 1;
    }
}
