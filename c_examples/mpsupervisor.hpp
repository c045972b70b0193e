/*
 * mpsupervisor.hpp: a tiny C++17 RAII wrapper over the C header, shared by the C++ examples
 * (cpp_host.cpp, cpp_handover.cpp): a move-only Supervisor owning the handle, JsonString freeing
 * the library's strings, exceptions carrying the result name and the library's message.
 */
#ifndef MPSUPERVISOR_HPP
#define MPSUPERVISOR_HPP

#include <mpsupervisor.h>

#include <cstdio>
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

    /* In the host's new image: the supervisor handover_prepare() wrote into memfd fd, with the
     * same workers (API.md part 9). */
    static Supervisor adopt(int fd)
    {
        Supervisor sup(Adopted{});
        check("mpsup_supervisor_adopt", mpsup_supervisor_adopt(fd, &sup.handle_));
        return sup;
    }

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
    /* Hands every worker to the next image of this process: returns the memfd to pass (in
     * MPSUP_HANDOVER_FD) to the program exec'd next, which calls adopt(). Every other call
     * throws MPSUP_ERR_INVALID_HANDLE until handover_abort(). */
    int handover_prepare()
    {
        int fd = -1;
        check("mpsup_handover_prepare", mpsup_handover_prepare(handle_, &fd));
        return fd;
    }
    /* The exec failed: the handle works on as before. */
    void handover_abort() { check("mpsup_handover_abort", mpsup_handover_abort(handle_)); }
    /* Frees the supervisor now, reporting a failure the destructor would have to swallow. */
    void close()
    {
        mpsup_supervisor handle = std::exchange(handle_, {});
        if (handle.id != 0)
            check("mpsup_supervisor_free", mpsup_supervisor_free(handle));
    }
    mpsup_supervisor get() const noexcept { return handle_; }

private:
    struct Adopted {};
    explicit Supervisor(Adopted) noexcept {}
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

/* s as a JSON string literal. */
inline std::string json_string(const std::string &s)
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

} // namespace mpsup

#endif
