package mpsupervisor_test

import (
	"context"
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
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if ready, err := sup.WaitReady(ctx); err != nil || !ready {
		log.Fatal("not ready: ", err)
	}
	snap, _ := sup.Snapshot()
	fmt.Println(len(snap["ingest"]), "workers ready")
	stopCtx, cancelStop := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelStop()
	if err := sup.Stop(stopCtx, true); errors.Is(err, mpsupervisor.ErrTimeout) {
		_ = sup.ForceTerminate("ingest")
	}
	events, _ := sup.DrainEvents(0)
	for _, e := range events {
		fmt.Println(e.Seq, e.Kind, e.WorkerID)
	}
}
