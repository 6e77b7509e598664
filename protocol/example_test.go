package protocol_test

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/plcmail/plcmail/protocol"
)

// A gateway link: bytes from the port go into Feed; frames come out with
// their boot and seq for the ACK, errors with the NAK reason to send.
func ExampleDecoder() {
	ev := protocol.Frame{Type: protocol.TypeEvent, Boot: 7, Seq: 3, Code: 17,
		Event: protocol.EventRaise, Severity: protocol.SeverityAlarm}
	ev.AddValue(protocol.Int32Value(42))
	ev.SetText("Motor overload")
	var line bytes.Buffer
	line.WriteString("boot noise\x00") // bootloader garbage, ended by the sender's 0x00
	protocol.WriteFrame(&line, &ev)

	d := protocol.NewDecoder()
	d.Feed(line.Bytes(), func(f *protocol.Frame, err error) {
		var fe *protocol.FrameError
		switch {
		case errors.As(err, &fe):
			fmt.Printf("error %s at offset %d: NAK %v\n", protocol.ErrorName(err), fe.Offset, fe.NakReason())
		default:
			fmt.Printf("%v boot %d seq %d code %d %v %v %v %q\n", f.Type, f.Boot, f.Seq, f.Code, f.Event, f.Severity, f.ValueList(), f.TextString())
		}
	})
	fmt.Printf("%+v\n", d.Stats())
	// Output:
	// error bad-cobs at offset 0: NAK bad-frame
	// event boot 7 seq 3 code 17 raise alarm [42] "Motor overload"
	// {Frames:1 BadCOBS:1 BadCRC:0 Short:0 TooLong:0 Version:0 UnknownType:0 Malformed:0 Bytes:54}
}
