module mpsupervisor

go 1.19
