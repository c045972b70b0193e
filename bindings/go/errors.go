package mpsupervisor

// #include <mpsupervisor.h>
import "C"

import "fmt"

// Code is a library result code (mpsup_result). The numbers never change.
type Code uint32

// The library's result codes; the numbers are fixed forever.
const (
	CodeOK              Code = 0
	CodeInvalidHandle   Code = 1
	CodeInvalidArgument Code = 2
	CodeInvalidConfig   Code = 3
	CodeUnknownGroup    Code = 4
	CodeSpawn           Code = 5
	CodeTimeout         Code = 6
	CodeOS              Code = 7
	CodePanic           Code = 8
	CodeNotReady        Code = 9
	CodeUnsupported     Code = 10
)

// Compile-time checks against the header: an index other than 0 is out of range.
var (
	_ = [1]struct{}{}[CodeOK-C.MPSUP_OK]
	_ = [1]struct{}{}[CodeInvalidHandle-C.MPSUP_ERR_INVALID_HANDLE]
	_ = [1]struct{}{}[CodeInvalidArgument-C.MPSUP_ERR_INVALID_ARGUMENT]
	_ = [1]struct{}{}[CodeInvalidConfig-C.MPSUP_ERR_INVALID_CONFIG]
	_ = [1]struct{}{}[CodeUnknownGroup-C.MPSUP_ERR_UNKNOWN_GROUP]
	_ = [1]struct{}{}[CodeSpawn-C.MPSUP_ERR_SPAWN]
	_ = [1]struct{}{}[CodeTimeout-C.MPSUP_ERR_TIMEOUT]
	_ = [1]struct{}{}[CodeOS-C.MPSUP_ERR_OS]
	_ = [1]struct{}{}[CodePanic-C.MPSUP_ERR_PANIC]
	_ = [1]struct{}{}[CodeNotReady-C.MPSUP_ERR_NOT_READY]
	_ = [1]struct{}{}[CodeUnsupported-C.MPSUP_ERR_UNSUPPORTED]
)

// String returns the library's name for the code, such as "MPSUP_ERR_TIMEOUT"
// (mpsup_result_name; "MPSUP_ERR_UNKNOWN" for a number it does not know).
func (c Code) String() string {
	return C.GoString(C.mpsup_result_name(C.uint32_t(c)))
}

// Error is a failed call: the library's result code and its message (from
// mpsup_last_error_message, which names the group, the JSON path or the errno text).
//
// Use errors.Is with the sentinel errors below to test the kind of failure, and errors.As to
// get at the message:
//
//	if errors.Is(err, mpsupervisor.ErrTimeout) { ... }
type Error struct {
	Code    Code
	Message string
	cause   error // the context error that ended a wait (Stop), for errors.Is
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "mpsupervisor: " + e.Code.String()
	}
	return fmt.Sprintf("mpsupervisor: %s: %s", e.Code, e.Message)
}

// Is reports whether target is an *Error with the same Code, so that
// errors.Is(err, ErrTimeout) holds for every timeout, whatever its message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Unwrap returns the context error that ended the wait, if that is how the error came about:
// a Stop whose ctx was done gives an error matching both ErrTimeout and ctx.Err().
func (e *Error) Unwrap() error { return e.cause }

// Sentinel errors, one per result code, for errors.Is.
var (
	ErrInvalidHandle   = &Error{Code: CodeInvalidHandle}   // zero, freed (closed) or stale handle
	ErrInvalidArgument = &Error{Code: CodeInvalidArgument} // bad argument (NUL in a name, a negative duration, ...)
	ErrInvalidConfig   = &Error{Code: CodeInvalidConfig}   // groups rejected; the old configuration stays
	ErrUnknownGroup    = &Error{Code: CodeUnknownGroup}    // a group name that was never configured
	ErrSpawn           = &Error{Code: CodeSpawn}           // posix_spawn failed; nothing from the call is left running
	ErrTimeout         = &Error{Code: CodeTimeout}         // a graceful stop did not finish in time
	ErrOS              = &Error{Code: CodeOS}              // another system call failed
	ErrPanic           = &Error{Code: CodePanic}           // a bug inside the library, caught at its boundary
	ErrNotReady        = &Error{Code: CodeNotReady}        // StartWork before every named worker is ready
	ErrUnsupported     = &Error{Code: CodeUnsupported}     // what a group asks cannot be had here (privilege, cgroup controller)
)

// argError is an error found on the Go side before calling the library.
func argError(format string, args ...interface{}) error {
	return &Error{Code: CodeInvalidArgument, Message: fmt.Sprintf(format, args...)}
}
