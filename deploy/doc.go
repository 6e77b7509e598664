// Package deploy holds no Go code: it is where the service files, the install
// script and their tests live. The tests run the real script, systemd's own
// verifier and the real Makefile, so what deploy/README.md promises is checked
// by `go test ./...`.
package deploy
