// Stand-in for the CONTROLLINO board library's Controllino.h, so that the
// Controllino branch of examples/ControllinoRS485Alarms compiles and runs in
// the tests without the CONTROLLINO core (not packaged for Debian). Same
// names and the same port bits as the real library on the MAXI/MEGA: the
// RS-485 driver enable DE on PJ5, the receiver enable /RE (active low) on
// PJ6, the transceiver on Serial3. Only what the example uses.
#ifndef PLCMAIL_STUB_CONTROLLINO_H
#define PLCMAIL_STUB_CONTROLLINO_H
#include <Arduino.h>

#define CONTROLLINO_A0 A0

// Serial3 at baud, DE and /RE outputs, receiving.
inline char Controllino_RS485Init(long baud) {
  DDRJ |= _BV(5) | _BV(6);
  PORTJ &= (uint8_t)~(_BV(5) | _BV(6));
  Serial3.begin(baud);
  return 0;
}
// DE on, /RE high: transmit, receiver off (no echo of our own bytes).
inline void Controllino_RS485TxEnable() { PORTJ |= _BV(5) | _BV(6); }
// DE off, /RE low: receive.
inline void Controllino_RS485RxEnable() { PORTJ &= (uint8_t)~(_BV(5) | _BV(6)); }
#endif
