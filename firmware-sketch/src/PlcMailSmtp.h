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
// send() blocks until the dialogue ends: at most about 7 replies x the reply
// timeout (10 s by default), plus the wait for the answer to the final dot
// (RFC 5321's 10 minutes by default, see setFinalTimeout). Use it outside
// time-critical loops, or only when the serial link is not available.
#ifndef PLCMAIL_SMTP_H
#define PLCMAIL_SMTP_H

#include <Arduino.h>

// Which step failed; PLCMAIL_SMTP_OK when the server accepted the message.
enum PlcMailSmtpStep {
  PLCMAIL_SMTP_OK = 0,
  PLCMAIL_SMTP_CONNECT = 1,    // no connection (code 0)
  PLCMAIL_SMTP_GREETING = 2,   // no 220 greeting
  PLCMAIL_SMTP_HELLO = 3,      // EHLO and HELO refused
  PLCMAIL_SMTP_MAIL_FROM = 4,  // sender refused
  PLCMAIL_SMTP_RCPT_TO = 5,    // every recipient refused (code: the first refusal)
  PLCMAIL_SMTP_DATA = 6,       // DATA refused (no 354)
  PLCMAIL_SMTP_MESSAGE = 7,    // message refused after the final dot
  // No answer after the final dot (timeout, connection lost): the server may
  // have queued the mail. Not a failure to retry blindly: a second send may
  // deliver it twice.
  PLCMAIL_SMTP_UNKNOWN = 8,
  // from or to holds CR, LF, '<', '>', another control or an 8-bit byte, or
  // to names nobody: refused before anything was sent (code 0).
  PLCMAIL_SMTP_ADDRESS = 9
};

// Writes the body of a mail; everything printed to out is sent with line
// ends normalised to CRLF and lines starting with '.' dot-stuffed.
typedef void (*PlcMailBodyWriter)(Print& out);

// The dialogue itself, over any Stream that is already connected. It lives in
// PlcMailSmtp.cpp and knows nothing of Client: the AVR core's Client.h pulls
// in IPAddress.h, which defines a constant with a constructor in every file
// including it and so would add IPAddress's printing code (about 440 bytes)
// to every sketch linking this library, mail or not. Use PlcMailSmtp.
class PlcMailSmtpSession {
 public:
  typedef uint8_t (*IsOpen)(Stream& io);  // false once the peer hung up
  PlcMailSmtpSession(Stream& io, IsOpen open)
      : helo_("plc"),
        date_(0),
        timeoutMs_(10000),
        finalTimeoutMs_(600000UL),
        code_(0),
        rejected_(0),
        eightBit_(false),
        io_(io),
        open_(open) {}
  uint8_t run(const char* from, const char* to, const char* subject, const char* text, PlcMailBodyWriter body);
  static const __FlashStringHelper* stepName(uint8_t step);
  static bool badAddresses(const char* from, const char* to);

  const char* helo_;
  const char* date_;  // optional Date header value
  uint32_t timeoutMs_;
  uint32_t finalTimeoutMs_;
  uint16_t code_;
  uint8_t rejected_;

 private:
  bool expect(uint16_t lo, uint16_t hi, bool ehlo = false);
  uint16_t readReply(uint32_t timeoutMs, bool ehlo = false);
  int readByte(uint32_t start, uint32_t timeoutMs);
  uint8_t fail(uint8_t step, Print& out);  // QUIT (through out's buffer) unless the server left

  bool eightBit_;  // the server announced 8BITMIME
  Stream& io_;
  IsOpen open_;
};

#if !defined(PLCMAIL_SMTP_SESSION_ONLY)
#include <Client.h>

class PlcMailSmtp {
 public:
  explicit PlcMailSmtp(Client& client) : client_(client), session_(client, isOpen) {}

  // Name sent with EHLO/HELO (a host name of the PLC); default "plc".
  void setHeloName(const char* name) { session_.helo_ = name; }
  // How long to wait for each reply, in milliseconds; default 10000, enough
  // for the gateway on the local network. RFC 5321 4.5.3.2 asks for 5
  // minutes (300000) towards an arbitrary server.
  void setTimeout(uint32_t ms) { session_.timeoutMs_ = ms; }
  // How long to wait for the answer to the final dot; default 600000 (RFC
  // 5321's 10 minutes: the server may be writing the mail to disk). When it
  // passes, send() returns PLCMAIL_SMTP_UNKNOWN, not a failure.
  void setFinalTimeout(uint32_t ms) { session_.finalTimeoutMs_ = ms; }
  // A Date header for the next mails, RFC 5322 form ("Tue, 3 Mar 2026
  // 14:05:00 +0100"), e.g. from the Controllino's RTC; 0 (the default) leaves
  // it out and the gateway adds the time it received the mail.
  void setDate(const char* date) { session_.date_ = date; }

  // Sends one mail and returns PLCMAIL_SMTP_OK or the failed step. to may
  // list several recipients separated by commas; the mail goes to those the
  // server accepts (rejected() counts the others). subject may be 0; CR and
  // LF in it are replaced, so it cannot add headers; 8-bit text (UTF-8) is
  // fine in the subject (RFC 2047 encoded) and the body (8BITMIME when the
  // server announces it, else quoted-printable). Lines longer than 998
  // octets are broken.
  uint8_t send(IPAddress server, uint16_t port, const char* from, const char* to, const char* subject,
               const char* body) {
    return connected(client_.connect(server, port)) ? finish(session_.run(from, to, subject, body, 0))
                                                    : (uint8_t)PLCMAIL_SMTP_CONNECT;
  }
  uint8_t send(const char* host, uint16_t port, const char* from, const char* to, const char* subject,
               const char* body) {
    return connected(client_.connect(host, port)) ? finish(session_.run(from, to, subject, body, 0))
                                                  : (uint8_t)PLCMAIL_SMTP_CONNECT;
  }
  // The same with a body writer, for bodies built from live values or kept
  // in flash.
  uint8_t send(IPAddress server, uint16_t port, const char* from, const char* to, const char* subject,
               PlcMailBodyWriter body) {
    return connected(client_.connect(server, port)) ? finish(session_.run(from, to, subject, 0, body))
                                                    : (uint8_t)PLCMAIL_SMTP_CONNECT;
  }
  uint8_t send(const char* host, uint16_t port, const char* from, const char* to, const char* subject,
               PlcMailBodyWriter body) {
    return connected(client_.connect(host, port)) ? finish(session_.run(from, to, subject, 0, body))
                                                  : (uint8_t)PLCMAIL_SMTP_CONNECT;
  }

  // The server's reply code for the last step (250, 451, 550, ...), or 0 when
  // there was none (no connection, timeout, garbage, connection closed).
  uint16_t code() const { return session_.code_; }
  // Recipients the server refused in the last send().
  uint8_t rejected() const { return session_.rejected_; }

  // Short name of a step for logs, from flash: "ok", "connect", "greeting", ...
  static const __FlashStringHelper* stepName(uint8_t step) { return PlcMailSmtpSession::stepName(step); }

 private:
  static uint8_t isOpen(Stream& io) { return static_cast<Client&>(io).connected(); }
  bool connected(int ok) {
    session_.code_ = 0;
    return ok > 0;  // EthernetClient returns negative codes for DNS failures
  }
  uint8_t finish(uint8_t step) {
    client_.stop();
    return step;
  }

  Client& client_;
  PlcMailSmtpSession session_;
};
#endif  // !PLCMAIL_SMTP_SESSION_ONLY

#endif  // PLCMAIL_SMTP_H
