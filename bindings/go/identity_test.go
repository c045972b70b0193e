package mpsupervisor

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// procFields are the "Key:\tvalue" lines of /proc/<pid>/status, values with single spaces.
func procFields(t *testing.T, pid int) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("/proc", itoa(pid), "status"))
	if err != nil {
		t.Fatalf("status of %d: %v", pid, err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		key, value, _ := strings.Cut(line, ":")
		out[key] = strings.Join(strings.Fields(value), " ")
	}
	return out
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestIdentityJSON(t *testing.T) {
	g := Group{
		Name: "g", Argv: []string{"x"}, User: "nobody", Group: "65534",
		SupplementaryGroups: &[]ID{"7", "wheel"},
		Rlimits:             &Rlimits{Nofile: &Rlimit{Soft: 64, Hard: RlimitInfinity}, Core: SameLimit(0)},
	}
	data, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"user":"nobody"`, `"group":65534`, `"supplementary_groups":[7,"wheel"]`,
		`"rlimits":{"nofile":[64,"infinity"],"core":0}`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("%s lacks %s", data, want)
		}
	}
	var back Group
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back.Group != "65534" || *back.Rlimits.Nofile != (Rlimit{64, RlimitInfinity}) || (*back.SupplementaryGroups)[1] != "wheel" {
		t.Errorf("round trip: %+v", back)
	}
	// No SupplementaryGroups: absent (the user's); an empty one: [] (cleared).
	data, _ = json.Marshal(Group{Name: "g", SupplementaryGroups: &[]ID{}})
	if !strings.Contains(string(data), `"supplementary_groups":[]`) {
		t.Errorf("%s", data)
	}
	data, _ = json.Marshal(Group{Name: "g"})
	if strings.Contains(string(data), "supplementary_groups") || strings.Contains(string(data), "rlimits") {
		t.Errorf("%s", data)
	}
}

func TestIdentityAndEnvFilesReachTheWorker(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching to nobody needs root")
	}
	envFile := filepath.Join(t.TempDir(), "app.env")
	if err := os.WriteFile(envFile, []byte("SECRET='from the file'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := shellGroup("id", 1, politeScript)
	g.User = "nobody"
	g.SupplementaryGroups = &[]ID{}
	g.Umask = "0027"
	g.NoNewPrivileges = true
	g.Rlimits = &Rlimits{Nofile: &Rlimit{Soft: 100, Hard: 200}}
	g.EnvFiles = []string{envFile}
	s := started(t, g)
	snap, err := s.Snapshot()
	if err != nil || len(snap["id"]) != 1 {
		t.Fatalf("Snapshot = %+v, %v", snap, err)
	}
	pid := snap["id"][0].PID
	status := procFields(t, pid)
	want := map[string]string{"Uid": "65534 65534 65534 65534", "Gid": "65534 65534 65534 65534",
		"Groups": "", "Umask": "0027", "NoNewPrivs": "1"}
	for key, value := range want {
		if status[key] != value {
			t.Errorf("%s: %q, want %q", key, status[key], value)
		}
	}
	limits, _ := os.ReadFile(filepath.Join("/proc", itoa(pid), "limits"))
	if !strings.Contains(strings.Join(strings.Fields(string(limits)), " "), "Max open files 100 200 files") {
		t.Errorf("limits: %s", limits)
	}
	environ, _ := os.ReadFile(filepath.Join("/proc", itoa(pid), "environ"))
	if !strings.Contains(string(environ), "\x00SECRET=from the file\x00") {
		t.Errorf("environ: %q", environ)
	}
	if err := s.ForceTerminate("id"); err != nil {
		t.Fatal(err)
	}
}

func TestUnknownUserIsInvalidConfig(t *testing.T) {
	s := newSupervisor(t)
	g := shellGroup("id", 1, politeScript)
	g.User = "no-such-user-mpsup"
	if err := s.Configure([]Group{g}); err != nil {
		t.Fatal(err)
	}
	e := wantCode(t, s.Start("id"), ErrInvalidConfig)
	if !strings.Contains(e.Message, `user: no user "no-such-user-mpsup"`) {
		t.Errorf("message %q does not name the user", e.Message)
	}
}
