// Package hosttest runs the firmware library's checks from `go test ./...`:
// the C++ codec against the shared protocol vectors and the sender's state
// machine (host g++), the SMTP client against scripted servers, aiosmtpd and
// the real plcmail listener, the AVR builds with their flash and RAM use, and
// the AVR-built firmware in simavr talking to the real `plcmail serve`.
//
// Each test skips with the name of the missing tool when one is absent, and
// fails instead when the environment variable CI is set.
package hosttest
