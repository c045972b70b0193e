package mpsupervisor

import (
	"encoding/json"
	"errors"
	"strconv"
)

// ID is a user or a group, as Group.User, Group.Group and Group.SupplementaryGroups take it:
// a name ("nobody") or a number in decimal ("65534"), which is written to the library as a
// JSON number (a uid or gid).
type ID string

// MarshalJSON writes a decimal ID as a number and any other as a string.
func (id ID) MarshalJSON() ([]byte, error) {
	if n, err := strconv.ParseUint(string(id), 10, 32); err == nil {
		return []byte(strconv.FormatUint(n, 10)), nil
	}
	return json.Marshal(string(id))
}

// UnmarshalJSON accepts a number or a string.
func (id *ID) UnmarshalJSON(data []byte) error {
	var n uint32
	if err := json.Unmarshal(data, &n); err == nil {
		*id = ID(strconv.FormatUint(uint64(n), 10))
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return errors.New("mpsupervisor: a user or group must be a name or a number")
	}
	*id = ID(s)
	return nil
}

// RlimitInfinity is no limit ("infinity", RLIM_INFINITY).
const RlimitInfinity = ^uint64(0)

// Rlimit is a resource limit: Soft at most Hard, either of them RlimitInfinity.
type Rlimit struct {
	Soft, Hard uint64
}

// SameLimit is a Rlimit whose soft and hard limits are both n.
func SameLimit(n uint64) *Rlimit { return &Rlimit{Soft: n, Hard: n} }

func limitJSON(n uint64) string {
	if n == RlimitInfinity {
		return `"infinity"`
	}
	return strconv.FormatUint(n, 10)
}

// MarshalJSON writes one bound when Soft and Hard are equal, else [soft, hard].
func (r Rlimit) MarshalJSON() ([]byte, error) {
	if r.Soft == r.Hard {
		return []byte(limitJSON(r.Soft)), nil
	}
	return []byte("[" + limitJSON(r.Soft) + "," + limitJSON(r.Hard) + "]"), nil
}

// UnmarshalJSON accepts what MarshalJSON gives.
func (r *Rlimit) UnmarshalJSON(data []byte) error {
	var pair []json.RawMessage
	if err := json.Unmarshal(data, &pair); err == nil {
		if len(pair) != 2 {
			return errors.New("mpsupervisor: a limit pair must be [soft, hard]")
		}
		var soft, hard uint64
		if err := unmarshalLimit(pair[0], &soft); err != nil {
			return err
		}
		if err := unmarshalLimit(pair[1], &hard); err != nil {
			return err
		}
		*r = Rlimit{Soft: soft, Hard: hard}
		return nil
	}
	var n uint64
	if err := unmarshalLimit(data, &n); err != nil {
		return err
	}
	*r = Rlimit{Soft: n, Hard: n}
	return nil
}

func unmarshalLimit(data []byte, out *uint64) error {
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		if s != "infinity" {
			return errors.New(`mpsupervisor: a limit must be a number or "infinity", got "` + s + `"`)
		}
		*out = RlimitInfinity
		return nil
	}
	return json.Unmarshal(data, out)
}

// Rlimits are the resource limits (setrlimit) a group's workers start with; nil ones are the
// host's.
type Rlimits struct {
	Nofile  *Rlimit `json:"nofile,omitempty"`  // open descriptors
	Core    *Rlimit `json:"core,omitempty"`    // core file size, bytes
	Nproc   *Rlimit `json:"nproc,omitempty"`   // processes of the worker's real uid
	As      *Rlimit `json:"as,omitempty"`      // address space, bytes
	Memlock *Rlimit `json:"memlock,omitempty"` // locked memory, bytes
	Stack   *Rlimit `json:"stack,omitempty"`   // stack size, bytes
	CPU     *Rlimit `json:"cpu,omitempty"`     // CPU time, seconds
	Fsize   *Rlimit `json:"fsize,omitempty"`   // size of a file written, bytes
}
