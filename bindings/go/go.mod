module github.com/mpsupervisor/mpsupervisor/bindings/go

go 1.19
