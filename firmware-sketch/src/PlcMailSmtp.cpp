// PlcMailSmtp: see PlcMailSmtp.h.

// Only the Stream-based session: see PlcMailSmtpSession for why this file
// must not include Client.h.
#define PLCMAIL_SMTP_SESSION_ONLY
#include "PlcMailSmtp.h"

namespace {

// RFC 5322 2.1.1: at most 998 octets per line, CRLF not counted.
const uint16_t kMaxLine = 998;
// RFC 2045 6.7: quoted-printable lines of at most 76 octets, the soft
// break's '=' included.
const uint8_t kMaxQpLine = 76;

// Out buffers what goes to the Client, so that a network chip sends one
// packet per line rather than per byte, and applies the rules of the part
// being written: header values lose CR and LF and are folded before 998
// octets, the body gets CRLF line ends, dot-stuffing (RFC 5321 4.5.2), no
// line longer than 998 octets, and quoted-printable when the server cannot
// take 8-bit text.
class Out : public Print {
 public:
  enum Mode { kRaw, kHeader, kBody, kBodyQp };
  explicit Out(Stream& c) : c_(c), n_(0), mode_(kRaw), lineStart_(true), cr_(false), col_(0) {}

  void mode(Mode m) {
    mode_ = m;
    lineStart_ = true;
    cr_ = false;
  }
  // Ends the body on a line boundary: a body without its final line end
  // would otherwise glue the dot to its last line.
  void endBody() {
    if (!lineStart_) crlf();
    mode_ = kRaw;
  }
  size_t write(uint8_t b) override {
    if (mode_ == kRaw) {
      put(b);
    } else if (mode_ == kHeader) {
      if (col_ >= kMaxLine) {  // fold: CRLF and a space continue the field
        crlf();
        put(' ');
      }
      put(b == '\r' || b == '\n' ? ' ' : b);
    } else if (b == '\n' && cr_) {  // the LF of a CRLF already sent
      cr_ = false;
    } else {
      cr_ = b == '\r';
      if (b == '\r' || b == '\n') {
        crlf();
        lineStart_ = true;
        return 1;
      }
      bool encode = mode_ == kBodyQp && (b >= 0x7F || b == '=' || (b < ' ' && b != '\t'));
      uint16_t room = mode_ == kBodyQp ? kMaxQpLine - 1 : kMaxLine;
      if (col_ + (encode ? 3 : 1) > room) {
        // Too long for one line: a soft break in quoted-printable, else a
        // line break (the text gains a line end rather than the server
        // refusing the mail).
        if (mode_ == kBodyQp) put('=');
        crlf();
        lineStart_ = true;
      }
      if (lineStart_ && b == '.') put('.');
      lineStart_ = false;
      if (encode) {
        put('=');
        hex(b >> 4);
        hex(b & 15);
      } else {
        put(b);
      }
    }
    return 1;
  }
  using Print::write;
  void flush() override {
    if (n_) c_.write(buf_, n_);
    n_ = 0;
  }
  void crlf() {
    put('\r');
    put('\n');
  }
  void hex(uint8_t d) { put((uint8_t)(d < 10 ? '0' + d : 'A' - 10 + d)); }

 private:
  void put(uint8_t b) {
    if (n_ == sizeof buf_) flush();
    buf_[n_++] = b;
    col_ = b == '\n' ? 0 : (uint16_t)(col_ + 1);
  }

  Stream& c_;
  uint8_t buf_[64];
  uint8_t n_;
  uint8_t mode_;
  bool lineStart_, cr_;
  uint16_t col_;  // octets in the current line
};

void crlf(Print& p) { p.print(F("\r\n")); }

bool has8bit(const char* s) {
  for (; *s; s++)
    if ((uint8_t)*s >= 0x80) return true;
  return false;
}

// One header field; CR and LF in the value become spaces, so a value from a
// sketch (a subject with a sensor reading) can never start another field.
void header(Out& out, const __FlashStringHelper* name, const char* value) {
  out.print(name);
  out.mode(Out::kHeader);
  out.print(value);
  out.mode(Out::kRaw);
  out.crlf();
}

// A subject with 8-bit text (UTF-8) as RFC 2047 "Q" encoded-words of at most
// 75 octets, one per folded line, never splitting a UTF-8 sequence.
void subjectQ(Out& out, const char* s) {
  out.print(F("Subject: =?UTF-8?Q?"));
  uint8_t n = 0;
  for (; *s; s++) {
    uint8_t b = (uint8_t)*s;
    if (n >= 45 && (b & 0xC0) != 0x80) {  // 12 + 3 * 45 + 2 < 76 per line
      out.print(F("?=\r\n =?UTF-8?Q?"));
      n = 0;
    }
    if (b == ' ' || b == '\r' || b == '\n') {
      out.write('_');
    } else if ((b >= '0' && b <= '9') || ((b | 0x20) >= 'a' && (b | 0x20) <= 'z')) {
      out.write(b);
    } else {
      out.write('=');
      out.hex(b >> 4);
      out.hex(b & 15);
    }
    n++;
  }
  out.print(F("?=\r\n"));
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
    case PLCMAIL_SMTP_UNKNOWN: return F("unknown");
    case PLCMAIL_SMTP_ADDRESS: return F("address");
  }
  return F("?");
}

bool PlcMailSmtpSession::badAddresses(const char* from, const char* to) {
  // CR or LF would end the command and start another (SMTP injection); < >
  // would end the path; 8-bit needs SMTPUTF8, which this client does not
  // speak. An empty sender is the null reverse-path, allowed.
  for (const char* s = from; *s; s++) {
    uint8_t b = (uint8_t)*s;
    if (b <= ' ' || b >= 0x7F || b == '<' || b == '>' || b == ',') return true;
  }
  bool any = false;
  for (const char* s = to; *s; s++) {
    uint8_t b = (uint8_t)*s;
    if (b < ' ' || b >= 0x7F || b == '<' || b == '>') return true;
    if (b != ' ' && b != ',') any = true;
  }
  return !any;
}

uint8_t PlcMailSmtpSession::run(const char* from, const char* to, const char* subject, const char* text,
                                PlcMailBodyWriter body) {
  Out out(io_);
  rejected_ = 0;
  if (badAddresses(from, to)) {
    code_ = 0;
    return PLCMAIL_SMTP_ADDRESS;
  }
  if (!expect(220, 220)) return fail(PLCMAIL_SMTP_GREETING, out);

  out.print(F("EHLO "));
  out.print(helo_);
  crlf(out);
  out.flush();
  eightBit_ = false;
  if (!expect(250, 250, true)) {
    // RFC 5321 4.1.4: a server that does not know EHLO answers 5xx; HELO
    // then still works. 4xx or silence means it is going away.
    if (code_ < 500) return fail(PLCMAIL_SMTP_HELLO, out);
    eightBit_ = false;
    out.print(F("HELO "));
    out.print(helo_);
    crlf(out);
    out.flush();
    if (!expect(250, 250)) return fail(PLCMAIL_SMTP_HELLO, out);
  }

  out.print(F("MAIL FROM:<"));
  out.print(from);
  // RFC 6152: 8-bit text only to a server that announced 8BITMIME; for any
  // other the body is sent quoted-printable.
  out.print(eightBit_ ? F("> BODY=8BITMIME\r\n") : F(">\r\n"));
  out.flush();
  if (!expect(250, 250)) return fail(PLCMAIL_SMTP_MAIL_FROM, out);

  // One RCPT per comma-separated address. A refused recipient does not stop
  // the others (the mail still reaches those accepted; rejected() counts
  // the refusals); only when all are refused does the mail fail, with the
  // first refusal's code. A 421 or no reply ends the dialogue at once.
  uint8_t accepted = 0;
  uint16_t refusal = 0;
  for (const char* p = to; *p;) {
    while (*p == ' ' || *p == ',') p++;
    if (!*p) break;
    out.print(F("RCPT TO:<"));
    while (*p && *p != ',' && *p != ' ') out.write((uint8_t)*p++);
    out.print(F(">\r\n"));
    out.flush();
    if (expect(250, 251)) {
      accepted++;
      continue;
    }
    if (code_ == 0 || code_ == 421) return fail(PLCMAIL_SMTP_RCPT_TO, out);
    if (!refusal) refusal = code_;
    rejected_++;
  }
  if (!accepted) {
    code_ = refusal;
    return fail(PLCMAIL_SMTP_RCPT_TO, out);
  }

  out.print(F("DATA\r\n"));
  out.flush();
  if (!expect(354, 354)) return fail(PLCMAIL_SMTP_DATA, out);

  header(out, F("From: "), from);
  header(out, F("To: "), to);
  if (subject) {
    if (has8bit(subject))
      subjectQ(out, subject);
    else
      header(out, F("Subject: "), subject);
  }
  if (date_) header(out, F("Date: "), date_);
  out.print(F("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: "));
  out.print(eightBit_ ? F("8bit\r\n") : F("quoted-printable\r\n"));
  // The blank line that separates the header from the body.
  out.print(F("\r\n"));
  out.mode(eightBit_ ? Out::kBody : Out::kBodyQp);
  if (text) out.print(text);
  if (body) body(out);
  out.endBody();
  out.print(F(".\r\n"));
  out.flush();
  // RFC 5321 4.5.3.2.6: up to 10 minutes for the server to take the mail.
  code_ = readReply(finalTimeoutMs_);
  // No answer: the server may have queued the mail before the line or the
  // timer failed. Unknown, not failed: sending it again may deliver it twice.
  if (!code_) return PLCMAIL_SMTP_UNKNOWN;
  if (code_ != 250) return fail(PLCMAIL_SMTP_MESSAGE, out);

  // The mail is accepted; QUIT is courtesy and its answer changes nothing.
  uint16_t ok = code_;
  out.print(F("QUIT\r\n"));
  out.flush();
  readReply(timeoutMs_);
  code_ = ok;
  return PLCMAIL_SMTP_OK;
}

uint8_t PlcMailSmtpSession::fail(uint8_t step, Print& out) {
  uint16_t code = code_;
  if (open_(io_) && code != 421) {
    out.print(F("QUIT\r\n"));
    out.flush();
    readReply(timeoutMs_);
  }
  code_ = code;
  return step;
}

bool PlcMailSmtpSession::expect(uint16_t lo, uint16_t hi, bool ehlo) {
  code_ = readReply(timeoutMs_, ehlo);
  return code_ >= lo && code_ <= hi;
}

int PlcMailSmtpSession::readByte(uint32_t start, uint32_t timeout) {
  while (!io_.available()) {
    if (!open_(io_) || millis() - start >= timeout) return -1;
  }
  return io_.read();
}

// Reads one complete reply, all its lines ("250-..." continues, "250 ..."
// or "250" ends), and returns its code; 0 on timeout, a closed connection
// or a line that does not start with three digits. With ehlo, notes whether
// a line announces 8BITMIME.
uint16_t PlcMailSmtpSession::readReply(uint32_t timeout, bool ehlo) {
  static const char k8bit[] PROGMEM = "8BITMIME";
  uint32_t start = millis();
  for (;;) {
    uint16_t code = 0;
    uint8_t pos = 0, match = 0;
    bool last = true;
    for (;;) {
      int c = readByte(start, timeout);
      if (c < 0) return 0;
      if (c == '\n') break;
      if (pos < 3) {
        if (c < '0' || c > '9') return 0;
        code = (uint16_t)(code * 10 + (c - '0'));
      } else if (pos == 3) {
        last = c != '-';
      } else if (ehlo) {
        // The line's keyword, letter by letter: 8 letters of 8BITMIME and
        // then its end (space or CR); 0xFF once it differs.
        if (pos == 12 && match == 8) {
          match = c == ' ' || c == '\r' ? 9 : 0xFF;
        } else if (match == pos - 4 && match < 8) {
          if (c >= 'a' && c <= 'z') c -= 'a' - 'A';
          match = c == (char)pgm_read_byte(k8bit + match) ? match + 1 : 0xFF;
        }
      }
      if (pos < 0xFF) pos++;
    }
    if (pos < 3) return 0;
    if (code == 250 && (match == 9 || (match == 8 && pos == 12))) eightBit_ = true;
    if (last) return code;
  }
}
