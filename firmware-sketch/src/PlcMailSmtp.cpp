// PlcMailSmtp: see PlcMailSmtp.h.

// Only the Stream-based session: see PlcMailSmtpSession for why this file
// must not include Client.h.
#define PLCMAIL_SMTP_SESSION_ONLY
#include "PlcMailSmtp.h"

namespace {

// Out buffers what goes to the Client, so that a network chip sends one
// packet per line rather than per byte, and applies the rules of the part
// being written: header values lose CR and LF, the body gets CRLF line ends
// and dot-stuffing (RFC 5321 4.5.2).
class Out : public Print {
 public:
  enum Mode { kRaw, kHeader, kBody };
  explicit Out(Stream& c) : c_(c), n_(0), mode_(kRaw), lineStart_(true), cr_(false) {}

  void mode(Mode m) {
    mode_ = m;
    lineStart_ = true;
    cr_ = false;
  }
  // Ends the body on a line boundary: a body without its final line end
  // would otherwise glue the dot to its last line.
  void endBody() {
    if (!lineStart_) put2('\r', '\n');
    mode_ = kRaw;
  }
  size_t write(uint8_t b) override {
    switch (mode_) {
      case kRaw:
        put(b);
        break;
      case kHeader:
        put(b == '\r' || b == '\n' ? ' ' : b);
        break;
      case kBody:
        if (b == '\n' && cr_) {  // the LF of a CRLF already sent
          cr_ = false;
          break;
        }
        cr_ = b == '\r';
        if (b == '\r' || b == '\n') {
          put2('\r', '\n');
          lineStart_ = true;
          break;
        }
        if (lineStart_ && b == '.') put('.');
        lineStart_ = false;
        put(b);
        break;
    }
    return 1;
  }
  using Print::write;
  void flush() override {
    if (n_) c_.write(buf_, n_);
    n_ = 0;
  }

 private:
  void put(uint8_t b) {
    if (n_ == sizeof buf_) flush();
    buf_[n_++] = b;
  }
  void put2(uint8_t a, uint8_t b) {
    put(a);
    put(b);
  }

  Stream& c_;
  uint8_t buf_[64];
  uint8_t n_;
  uint8_t mode_;
  bool lineStart_, cr_;
};

void crlf(Print& p) { p.print(F("\r\n")); }

// One header field; CR and LF in the value become spaces, so a value from a
// sketch (a subject with a sensor reading) can never start another field.
void header(Out& out, const __FlashStringHelper* name, const char* value) {
  out.print(name);
  out.mode(Out::kHeader);
  out.print(value);
  out.mode(Out::kRaw);
  crlf(out);
}

}  // namespace

const __FlashStringHelper* PlcMailSmtpSession::stepName(uint8_t step) {
  switch (step) {
    case PLCMAIL_SMTP_OK: return F("ok");
    case PLCMAIL_SMTP_CONNECT: return F("connect");
    case PLCMAIL_SMTP_GREETING: return F("greeting");
    case PLCMAIL_SMTP_HELLO: return F("hello");
    case PLCMAIL_SMTP_MAIL_FROM: return F("mail-from");
    case PLCMAIL_SMTP_RCPT_TO: return F("rcpt-to");
    case PLCMAIL_SMTP_DATA: return F("data");
    case PLCMAIL_SMTP_MESSAGE: return F("message");
  }
  return F("?");
}

uint8_t PlcMailSmtpSession::run(const char* from, const char* to, const char* subject, const char* text,
                                PlcMailBodyWriter body) {
  Out out(io_);
  if (!expect(220, 220)) return fail(PLCMAIL_SMTP_GREETING, out);

  out.print(F("EHLO "));
  out.print(helo_);
  crlf(out);
  out.flush();
  if (!expect(250, 250)) {
    // RFC 5321 4.1.4: a server that does not know EHLO answers 5xx; HELO
    // then still works. 4xx or silence means it is going away.
    if (code_ < 500) return fail(PLCMAIL_SMTP_HELLO, out);
    out.print(F("HELO "));
    out.print(helo_);
    crlf(out);
    out.flush();
    if (!expect(250, 250)) return fail(PLCMAIL_SMTP_HELLO, out);
  }

  out.print(F("MAIL FROM:<"));
  out.print(from);
  out.print(F(">\r\n"));
  out.flush();
  if (!expect(250, 250)) return fail(PLCMAIL_SMTP_MAIL_FROM, out);

  // One RCPT per comma-separated address.
  for (const char* p = to; *p;) {
    while (*p == ' ' || *p == ',') p++;
    if (!*p) break;
    out.print(F("RCPT TO:<"));
    while (*p && *p != ',' && *p != ' ') out.write((uint8_t)*p++);
    out.print(F(">\r\n"));
    out.flush();
    if (!expect(250, 251)) return fail(PLCMAIL_SMTP_RCPT_TO, out);
  }

  out.print(F("DATA\r\n"));
  out.flush();
  if (!expect(354, 354)) return fail(PLCMAIL_SMTP_DATA, out);

  header(out, F("From: "), from);
  header(out, F("To: "), to);
  if (subject) header(out, F("Subject: "), subject);
  if (date_) header(out, F("Date: "), date_);
  // The blank line that separates the header from the body.
  out.print(F("\r\n"));
  out.mode(Out::kBody);
  if (text) out.print(text);
  if (body) body(out);
  out.endBody();
  out.print(F(".\r\n"));
  out.flush();
  if (!expect(250, 250)) return fail(PLCMAIL_SMTP_MESSAGE, out);

  // The mail is accepted; QUIT is courtesy and its answer changes nothing.
  uint16_t accepted = code_;
  out.print(F("QUIT\r\n"));
  out.flush();
  readReply();
  code_ = accepted;
  return PLCMAIL_SMTP_OK;
}

uint8_t PlcMailSmtpSession::fail(uint8_t step, Print& out) {
  uint16_t code = code_;
  if (open_(io_) && code != 421) {
    out.print(F("QUIT\r\n"));
    out.flush();
    readReply();
  }
  code_ = code;
  return step;
}

bool PlcMailSmtpSession::expect(uint16_t lo, uint16_t hi) {
  code_ = readReply();
  return code_ >= lo && code_ <= hi;
}

int PlcMailSmtpSession::readByte(uint32_t deadline) {
  while (!io_.available()) {
    if (!open_(io_) || (int32_t)(millis() - deadline) >= 0) return -1;
  }
  return io_.read();
}

// Reads one complete reply, all its lines ("250-..." continues, "250 ..."
// or "250" ends), and returns its code; 0 on timeout, a closed connection
// or a line that does not start with three digits.
uint16_t PlcMailSmtpSession::readReply() {
  uint32_t deadline = millis() + timeoutMs_;
  for (;;) {
    uint16_t code = 0;
    uint8_t pos = 0;
    bool last = true;
    for (;;) {
      int c = readByte(deadline);
      if (c < 0) return 0;
      if (c == '\n') break;
      if (pos < 3) {
        if (c < '0' || c > '9') return 0;
        code = (uint16_t)(code * 10 + (c - '0'));
      } else if (pos == 3) {
        last = c != '-';
      }
      if (pos < 4) pos++;
    }
    if (pos < 3) return 0;
    if (last) return code;
  }
}
