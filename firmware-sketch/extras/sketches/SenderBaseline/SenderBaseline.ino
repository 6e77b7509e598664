// Size reference for the alarm sender: what examples/UsbSerialAlarms does
// without PlcMail (the serial port, pins, millis). The difference between
// the two builds is the cost of the library.
bool doorOpen, overTemp;
uint16_t openings;
uint32_t last;

void setup() {
  Serial.begin(115200);
  pinMode(2, INPUT_PULLUP);
  pinMode(3, INPUT_PULLUP);
  pinMode(LED_BUILTIN, OUTPUT);
}

void loop() {
  bool open = digitalRead(2) == LOW;
  if (open != doorOpen) {
    doorOpen = open;
    if (open) openings++;
  }
  overTemp = digitalRead(3) == LOW;
  while (Serial.available() > 0) last += Serial.read();
  if (millis() - last > 1000) {
    uint8_t b[2] = {(uint8_t)openings, overTemp};
    Serial.write(b, 2);
    Serial.flush();
  }
  digitalWrite(LED_BUILTIN, doorOpen ? HIGH : LOW);
}
