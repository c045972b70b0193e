/*
 * cpp_host: a C++17 host for libmpsupervisor, using the C header directly through a tiny
 * RAII wrapper (a move-only Supervisor owning the handle, JsonString freeing the library's
 * strings, exceptions carrying the result name and the library's message).
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
#include <mpsupervisor.h>

#include <cstdio>
#include <exception>
#include <filesystem>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace mpsup {

/* A failed call: what() is "<call>: <MPSUP_ERR_...>: <the library's message>". */
class Error : public std::runtime_error {
public:
    Error(const char *call, mpsup_result code)
        : std::runtime_error(std::string(call) + ": " +
                             mpsup_result_name(static_cast<uint32_t>(code)) + ": " +
                             /* This thread's detail of the call that just failed. */
                             mpsup_last_error_message()),
          code_(code)
    {
    }
    mpsup_result code() const noexcept { return code_; }

private:
    mpsup_result code_;
};

inline void check(const char *call, mpsup_result rc)
{
    if (rc != MPSUP_OK)
        throw Error(call, rc);
}

/* JSON text from the library, freed with mpsup_string_free (never free or delete). */
struct StringFree {
    void operator()(char *s) const noexcept { mpsup_string_free(s); }
};
using JsonString = std::unique_ptr<char, StringFree>;

/* Owns one supervisor handle; move-only. Destroying it force-terminates and reaps every
 * worker still running (mpsup_supervisor_free does that). */
class Supervisor {
public:
    Supervisor() { check("mpsup_supervisor_new", mpsup_supervisor_new(&handle_)); }
    ~Supervisor() { reset(); }

    Supervisor(const Supervisor &) = delete;
    Supervisor &operator=(const Supervisor &) = delete;
    Supervisor(Supervisor &&other) noexcept : handle_(std::exchange(other.handle_, {})) {}
    Supervisor &operator=(Supervisor &&other) noexcept
    {
        if (this != &other) {
            reset();
            handle_ = std::exchange(other.handle_, {});
        }
        return *this;
    }

    void configure(const std::string &groups_json)
    {
        check("mpsup_configure_process_groups",
              mpsup_configure_process_groups(handle_, groups_json.c_str()));
    }
    void start(const std::vector<std::string> &names)
    {
        auto ptrs = c_strings(names);
        check("mpsup_start_groups", mpsup_start_groups(handle_, ptrs.data(), ptrs.size()));
    }
    bool wait_ready(double timeout_seconds)
    {
        bool ready = false;
        check("mpsup_wait_ready", mpsup_wait_ready(handle_, timeout_seconds, &ready));
        return ready;
    }
    /* Throws Error with code() == MPSUP_ERR_TIMEOUT when a worker did not stop in time. */
    void stop(double graceful_timeout_seconds, bool drain_inflight)
    {
        check("mpsup_stop_groups",
              mpsup_stop_groups(handle_, graceful_timeout_seconds, drain_inflight));
    }
    void force_terminate(const std::vector<std::string> &names)
    {
        auto ptrs = c_strings(names);
        check("mpsup_force_terminate_groups",
              mpsup_force_terminate_groups(handle_, ptrs.data(), ptrs.size()));
    }
    JsonString snapshot()
    {
        char *json = nullptr;
        check("mpsup_snapshot_json", mpsup_snapshot_json(handle_, &json));
        return JsonString(json);
    }
    JsonString drain_events(size_t max_events = 0)
    {
        char *json = nullptr;
        check("mpsup_drain_events_json", mpsup_drain_events_json(handle_, max_events, &json));
        return JsonString(json);
    }
    /* Frees the supervisor now, reporting a failure the destructor would have to swallow. */
    void close()
    {
        mpsup_supervisor handle = std::exchange(handle_, {});
        if (handle.id != 0)
            check("mpsup_supervisor_free", mpsup_supervisor_free(handle));
    }
    mpsup_supervisor get() const noexcept { return handle_; }

private:
    void reset() noexcept
    {
        if (handle_.id != 0)
            (void)mpsup_supervisor_free(std::exchange(handle_, {}));
    }
    static std::vector<const char *> c_strings(const std::vector<std::string> &names)
    {
        std::vector<const char *> ptrs;
        ptrs.reserve(names.size());
        for (const auto &name : names)
            ptrs.push_back(name.c_str());
        return ptrs;
    }

    mpsup_supervisor handle_{}; /* id 0: no supervisor (never a valid handle) */
};

} // namespace mpsup

namespace {

constexpr double READY_TIMEOUT_SECONDS = 10.0;
constexpr double STOP_TIMEOUT_SECONDS = 5.0;

/* s as a JSON string literal. */
std::string json_string(const std::string &s)
{
    std::string out = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        } else {
            out += static_cast<char>(c);
        }
    }
    return out + "\"";
}

int run(const std::string &shell_worker)
{
    const std::vector<std::string> groups{"shell"};
    mpsup::Supervisor sup;
    sup.configure("[{\"name\": \"shell\", \"workers\": 2, \"readiness\": \"notify\", \"argv\": [" +
                  json_string(shell_worker) + "]}]");
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
