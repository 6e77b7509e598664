// Mail from an Ethernet Controllino (or Arduino + W5100/W5500 shield) through
// the plcmail gateway's SMTP listener on port 25: the gateway relays it to
// the provider over TLS with the account's password, which never has to live
// in the PLC. This is the classic "send_mail" sketch done right: it waits for
// the greeting, reads and checks every reply, writes the header and the
// blank line, dot-stuffs the body, ends with CRLF.CRLF and says QUIT.
//
// Needs the Arduino Ethernet library (Library Manager: "Ethernet"; it is not
// part of this library). Pin 2 to ground sends one mail.
#include <Ethernet.h>
#include <PlcMailSmtp.h>

byte mac[] = {0xDE, 0xAD, 0xBE, 0xEF, 0xFE, 0x02};
IPAddress ip(192, 168, 1, 177);
IPAddress gateway(192, 168, 1, 1);  // where `plcmail serve` listens ([smtp] listen)

EthernetClient eth;
PlcMailSmtp smtp(eth);

const uint8_t kButton = 2;
bool wasPressed;

void body(Print& out) {
  out.print(F("Tank 2 level switch tripped.\n"));
  out.print(F("Analog input A0: "));
  out.print(analogRead(A0));
  out.print(F("\nUptime: "));
  out.print(millis() / 1000);
  out.print(F(" s\n"));
}

void setup() {
  Serial.begin(115200);
  pinMode(kButton, INPUT_PULLUP);
  Ethernet.begin(mac, ip);
  smtp.setHeloName("plc-tank2");
  smtp.setTimeout(10000);
}

void loop() {
  bool pressed = digitalRead(kButton) == LOW;
  if (pressed && !wasPressed) {
    uint8_t step = smtp.send(gateway, 25, "plc-tank2@example.com", "ops@example.com",
                             "Tank 2 level high", body);
    if (step == PLCMAIL_SMTP_OK) {
      Serial.println(F("mail queued by the gateway"));
    } else if (step == PLCMAIL_SMTP_UNKNOWN) {
      // No answer after the message was sent: the gateway may have it.
      // Sending it again could deliver it twice; a fault lamp is better.
      Serial.println(F("mail state unknown"));
    } else {
      // Which step failed and the server's code (0: no answer): e.g.
      // "rcpt-to 550" means the gateway refused the recipient.
      Serial.print(F("mail failed at "));
      Serial.print(PlcMailSmtp::stepName(step));
      Serial.print(' ');
      Serial.println(smtp.code());
    }
  }
  wasPressed = pressed;
}
