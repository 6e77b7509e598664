// Alarms over the RS-485 port of a Controllino MAXI or MEGA (Serial3, driver
// enable DE on PJ5 and receiver enable /RE on PJ6 - pins 75 and 76 in the
// CONTROLLINO board package) to a plcmail gateway with a USB RS-485 adapter.
//
// Input A0 (digital use, 24 V logic) is an emergency-stop chain: alarm 100
// while it is open.
// Built with the CONTROLLINO board package, use its library; define
// PLCMAIL_USE_CONTROLLINO if your version names the boards differently.
#if defined(PLCMAIL_USE_CONTROLLINO) || defined(CONTROLLINO_MAXI) || defined(CONTROLLINO_MEGA) || \
    defined(CONTROLLINO_MAXI_AUTOMATION) || defined(ARDUINO_AVR_CONTROLLINO_MAXI) ||          \
    defined(ARDUINO_AVR_CONTROLLINO_MEGA)
#include <Controllino.h>
#define HAVE_CONTROLLINO 1
#endif
#include <PlcMail.h>

#if !defined(HAVE_SERIAL3) && !defined(UBRR3H)
#error "this example needs a board with Serial3 (ATmega2560: Controllino MAXI/MEGA, Arduino Mega)"
#endif

PlcMail alarms(Serial3);

#if defined(HAVE_CONTROLLINO)
const uint8_t kStopChain = CONTROLLINO_A0;
void rs485(bool transmit) {
  if (transmit)
    Controllino_RS485TxEnable();
  else
    Controllino_RS485RxEnable();
}
#else
// The plain Arduino Mega core has no pin numbers for PJ5/PJ6: drive the port.
const uint8_t kStopChain = A0;
void rs485(bool transmit) {
  if (transmit)
    PORTJ |= _BV(5) | _BV(6);  // DE on, /RE off (receiver disabled)
  else
    PORTJ &= ~(_BV(5) | _BV(6));
}
#endif

bool stopped;

void setup() {
#if defined(HAVE_CONTROLLINO)
  Controllino_RS485Init(115200);  // sets up Serial3 and the DE//RE pins
#else
  DDRJ |= _BV(5) | _BV(6);
  Serial3.begin(115200);
#endif
  rs485(false);
  pinMode(kStopChain, INPUT);
  alarms.setDirectionCallback(rs485);
  alarms.begin();
  stopped = digitalRead(kStopChain) == LOW;
  if (stopped) alarms.raise(100, PLCMAIL_CRITICAL);
}

void loop() {
  bool s = digitalRead(kStopChain) == LOW;
  if (s != stopped) {
    stopped = s;
    if (s)
      alarms.raise(100, PLCMAIL_CRITICAL, F("emergency stop chain open"));
    else
      alarms.clear(100);
  }
  alarms.poll();
}
