// Alarms over the USB serial port to a plcmail gateway (`plcmail serve` with a
// [[serial]] link on /dev/ttyACM0 or /dev/ttyUSB0).
//
// Pin 2 is a door contact to ground (alarm 17 while open, i.e. pin high is
// closed); pin 3 an overtemperature switch (alarm 18, critical). The board's
// LED mirrors the gateway's answers: on while frames wait for an ACK.
#include <PlcMail.h>

PlcMail alarms(Serial);

const uint8_t kDoorPin = 2;
const uint8_t kOverTempPin = 3;
bool doorOpen, overTemp;
uint16_t openings;

void status(uint8_t what, uint32_t seq, uint16_t detail) {
  // A real sketch might count failures or light a fault lamp here.
  (void)what;
  (void)seq;
  (void)detail;
}

void setup() {
  Serial.begin(115200);
  pinMode(kDoorPin, INPUT_PULLUP);
  pinMode(kOverTempPin, INPUT_PULLUP);
  pinMode(LED_BUILTIN, OUTPUT);
  alarms.onStatus(status);
  alarms.begin();
  // What is active at boot goes into the HELLO snapshot.
  doorOpen = digitalRead(kDoorPin) == LOW;
  overTemp = digitalRead(kOverTempPin) == LOW;
  if (doorOpen) alarms.raise(17, PLCMAIL_ALARM);
  if (overTemp) alarms.raise(18, PLCMAIL_CRITICAL);
}

void loop() {
  bool open = digitalRead(kDoorPin) == LOW;
  if (open != doorOpen) {
    doorOpen = open;
    if (open) {
      openings++;
      alarms.raise(17, PLCMAIL_ALARM, openings);
    } else {
      alarms.clear(17);
    }
  }
  bool hot = digitalRead(kOverTempPin) == LOW;
  if (hot != overTemp) {
    overTemp = hot;
    if (hot)
      alarms.raise(18, PLCMAIL_CRITICAL, 95.5f, F("overtemperature"));
    else
      alarms.clear(18);
  }
  alarms.poll();
  digitalWrite(LED_BUILTIN, alarms.pending() ? HIGH : LOW);
}
