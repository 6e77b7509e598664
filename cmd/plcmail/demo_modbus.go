//go:build !nodemo

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"sync/atomic"
	"time"

	mb "github.com/simonvetter/modbus"
)

// The demo's Modbus part: a tank level on a simulated Modbus TCP device,
// polled by the same gateway, crosses its high limit and comes back.

const (
	demoDevice  = "tank-1"
	demoModbusM = 2 // mails of the Modbus part: the raise and the clear
	// demoModbusConfig is appended to demoConfig with the device's address.
	demoModbusConfig = `
# A Modbus TCP device (simulated in this process): the level of tank 1 in
# holding register 0, in tenths of a percent.
[[modbus]]
name          = "tank-1"
mode          = "tcp"
address       = %q
poll_interval = "200ms"
label         = "Tank 1"

[[modbus.tag]]
name    = "level"
table   = "holding"
address = 0
type    = "uint16"
scale   = 0.1
unit    = "%%"

[[modbus.tag.alarm]]
limit    = "H"
setpoint = 90
deadband = 2                        # clears below 88 %%
severity = "warning"
code     = 500

[[alarm]]
code    = 500
name    = "Tank 1 level high"
subject = "[{{.Severity}}] {{.Label}}: {{.Name}} ({{.Event}}, {{index .Values 0}} {{.Unit}})"
to      = ["maintenance@example.com"]
`
)

// demoModbus is the simulated device: simonvetter/modbus's server with a
// handler that has one holding register.
type demoModbus struct {
	srv   *mb.ModbusServer
	addr  string
	level atomic.Uint32 // holding register 0
	reads atomic.Uint64
}

// startDemoModbus starts the device on a free loopback port. The library
// does not tell the port it bound, so a free one is picked first; another
// process taking it in between is retried.
func startDemoModbus() (*demoModbus, error) {
	d := &demoModbus{}
	d.level.Store(850)
	var err error
	for range 5 {
		var l net.Listener
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, err
		}
		d.addr = l.Addr().String()
		l.Close()
		d.srv, err = mb.NewServer(&mb.ServerConfiguration{URL: "tcp://" + d.addr, Timeout: 30 * time.Second, MaxClients: 4,
			Logger: log.New(io.Discard, "", 0)}, d)
		if err != nil {
			return nil, err
		}
		if err = d.srv.Start(); err == nil {
			return d, nil
		}
	}
	return nil, fmt.Errorf("demo: modbus device: %w", err)
}

func (d *demoModbus) Close() { d.srv.Stop() }

// HandleHoldingRegisters answers reads of register 0.
func (d *demoModbus) HandleHoldingRegisters(req *mb.HoldingRegistersRequest) ([]uint16, error) {
	if req.IsWrite {
		return nil, mb.ErrIllegalFunction
	}
	if req.Addr != 0 || req.Quantity != 1 {
		return nil, mb.ErrIllegalDataAddress
	}
	d.reads.Add(1)
	return []uint16{uint16(d.level.Load())}, nil
}

// HandleCoils refuses: the device has no coils.
func (d *demoModbus) HandleCoils(*mb.CoilsRequest) ([]bool, error) { return nil, mb.ErrIllegalFunction }

// HandleDiscreteInputs refuses: the device has no discrete inputs.
func (d *demoModbus) HandleDiscreteInputs(*mb.DiscreteInputsRequest) ([]bool, error) {
	return nil, mb.ErrIllegalFunction
}

// HandleInputRegisters refuses: the device has no input registers.
func (d *demoModbus) HandleInputRegisters(*mb.InputRegistersRequest) ([]uint16, error) {
	return nil, mb.ErrIllegalFunction
}

// runScript moves the level over the limit and back, each time waiting
// until the gateway has queued the mail (as `plcmail status` tells).
func (d *demoModbus) runScript(ctx context.Context, pr *demoPrinter, spoolDir string, pace time.Duration) error {
	steps := []struct {
		level uint32
		say   string
	}{
		{950, "level rises to 95.0 %: at or above the H limit 90 %"},
		{870, "level falls to 87.0 %: below the limit minus its 2 % deadband"},
	}
	for i, s := range steps {
		if err := sleepCtx(ctx, pace); err != nil {
			return err
		}
		d.level.Store(s.level)
		pr.printf("MODBUS %s (holding register 0 = %d): %s\n", demoDevice, s.level, s.say)
		err := waitUntil(ctx, func() bool {
			c, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			st, err := readStatus(c, spoolDir)
			return err == nil && len(st.Modbus) == 1 && st.Modbus[0].Mailed >= uint64(i+1)
		}, 30*time.Second)
		if err != nil {
			if errors.Is(err, ctx.Err()) {
				return err
			}
			return fmt.Errorf("demo: the gateway did not mail the Modbus alarm's %s: %w", []string{"raise", "clear"}[i], err)
		}
		pr.printf("MODBUS %s: the gateway polled the change and queued the %s mail\n", demoDevice, []string{"raise", "clear"}[i])
	}
	return nil
}
