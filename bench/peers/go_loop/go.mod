module peerloop

go 1.19
