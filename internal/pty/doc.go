// Package pty makes pseudo-terminal pairs: a program plays the PLC on the
// master while the gateway opens the slave by its path with the real serial
// library, as it would open /dev/ttyUSB0. The demo and the bridge tests use
// it; tests that need two named devices use socat instead. Only Linux has
// it, as only Linux runs plcmail as a gateway.
package pty
