package mpsupervisor_test

import (
	"errors"
	"fmt"
	"log"
	"time"

	mpsupervisor "github.com/mpsupervisor/mpsupervisor/bindings/go"
)

// Compiled by go test (no Output comment, so it is not run).
func Example() {
	sup, err := mpsupervisor.New()
	if err != nil {
		log.Fatal(err)
	}
	defer sup.Close() // kills and reaps whatever is still running
	err = sup.Configure([]mpsupervisor.Group{{
		Name: "ingest", Workers: 2, Readiness: mpsupervisor.ReadinessNotify,
		Argv: []string{"/bin/sh", "-c", "echo READY >&3; read -r l <&3"},
	}})
	if err != nil {
		log.Fatal(err)
	}
	if err := sup.Start("ingest"); err != nil {
		log.Fatal(err)
	}
	if ready, err := sup.WaitReady(5 * time.Second); err != nil || !ready {
		log.Fatal("not ready: ", err)
	}
	snap, _ := sup.Snapshot()
	fmt.Println(len(snap["ingest"]), "workers ready")
	if err := sup.Stop(5*time.Second, true); errors.Is(err, mpsupervisor.ErrTimeout) {
		_ = sup.ForceTerminate("ingest")
	}
	events, _ := sup.DrainEvents(0)
	for _, e := range events {
		fmt.Println(e.Seq, e.Kind, e.WorkerID)
	}
}
