// PlcMailSmtp: a small, correct SMTP client over Arduino's abstract Client
// (EthernetClient, WiFiClient, ...), for sending a mail to the plcmail
// gateway's port 25 on the local network. No TLS and no AUTH: the gateway
// relays upstream over TLS with the provider's credentials.
//
//   EthernetClient eth;
//   PlcMailSmtp smtp(eth);
//   uint8_t step = smtp.send(gateway, 25, "plc@example.com",
//                            "ops@example.com", "Pump 3 overload", "Motor current 14.2 A\n");
//   if (step != PLCMAIL_SMTP_OK) { /* smtp.code() is the server's reply, 0 = none */ }
//
// Unlike the sketches that circulate for this job, it waits for the greeting,
// reads every reply line (multi-line replies too) and checks its code, falls
// back from EHLO to HELO, writes the headers and the blank line before the
// body, turns bare LF/CR into CRLF, dot-stuffs, ends with CRLF.CRLF and QUITs.
//
// send() blocks until the dialogue ends, at most about 7 replies x the reply
// timeout (10 s by default). Use it outside time-critical loops, or from the
// gateway path only when the serial link is not available.
#ifndef PLCMAIL_SMTP_H
#define PLCMAIL_SMTP_H

#include <Arduino.h>
#include <Client.h>

// Which step failed; PLCMAIL_SMTP_OK when the server accepted the message.
enum PlcMailSmtpStep {
  PLCMAIL_SMTP_OK = 0,
  PLCMAIL_SMTP_CONNECT = 1,    // no connection (code 0)
  PLCMAIL_SMTP_GREETING = 2,   // no 220 greeting
  PLCMAIL_SMTP_HELLO = 3,      // EHLO and HELO refused
  PLCMAIL_SMTP_MAIL_FROM = 4,  // sender refused
  PLCMAIL_SMTP_RCPT_TO = 5,    // a recipient refused
  PLCMAIL_SMTP_DATA = 6,       // DATA refused (no 354)
  PLCMAIL_SMTP_MESSAGE = 7     // message refused after the final dot
};

// Writes the body of a mail; everything printed to out is sent with line
// ends normalised to CRLF and lines starting with '.' dot-stuffed.
typedef void (*PlcMailBodyWriter)(Print& out);

class PlcMailSmtp {
 public:
  explicit PlcMailSmtp(Client& client) : client_(client), helo_("plc"), timeoutMs_(10000), code_(0) {}

  // Name sent with EHLO/HELO (a host name of the PLC); default "plc".
  void setHeloName(const char* name) { helo_ = name; }
  // How long to wait for each reply, in milliseconds; default 10000.
  void setTimeout(uint16_t ms) { timeoutMs_ = ms; }

  // Sends one mail and returns PLCMAIL_SMTP_OK or the failed step. to may
  // list several recipients separated by commas. subject may be 0; CR and LF
  // in it are replaced, so it cannot add headers.
  uint8_t send(IPAddress server, uint16_t port, const char* from, const char* to, const char* subject,
               const char* body);
  uint8_t send(const char* host, uint16_t port, const char* from, const char* to, const char* subject,
               const char* body);
  // The same with a body writer, for bodies built from live values or kept
  // in flash.
  uint8_t send(IPAddress server, uint16_t port, const char* from, const char* to, const char* subject,
               PlcMailBodyWriter body);
  uint8_t send(const char* host, uint16_t port, const char* from, const char* to, const char* subject,
               PlcMailBodyWriter body);

  // The server's reply code for the last step (250, 451, 550, ...), or 0 when
  // there was none (no connection, timeout, garbage, connection closed).
  uint16_t code() const { return code_; }

  // Short name of a step for logs, from flash: "ok", "connect", "greeting", ...
  static const __FlashStringHelper* stepName(uint8_t step);

 private:
  uint8_t dialogue(const char* from, const char* to, const char* subject, const char* text,
                   PlcMailBodyWriter body);
  bool expect(uint16_t lo, uint16_t hi);
  uint16_t readReply();
  int readByte(uint32_t deadline);
  uint8_t fail(uint8_t step);

  Client& client_;
  const char* helo_;
  uint16_t timeoutMs_;
  uint16_t code_;
};

#endif  // PLCMAIL_SMTP_H
