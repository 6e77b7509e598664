// plcmail serial protocol codec; see plcmail_protocol.h and protocol/SPEC.md.
#include "plcmail_protocol.h"

#include <string.h>

#if defined(__AVR__)
#include <util/crc16.h>
#endif

namespace plcmail {

// Not inlined: the sender calls it from three places (frames out, frames in,
// boot entropy), and on AVR a call is smaller than another copy.
__attribute__((noinline)) uint16_t crc16Update(uint16_t crc, uint8_t b) {
#if defined(__AVR__)
  return _crc_ccitt_update(crc, b);
#else
  // Same algorithm as avr-libc documents for _crc_ccitt_update.
  b ^= (uint8_t)crc;
  b ^= (uint8_t)(b << 4);
  return (uint16_t)((((uint16_t)b << 8) | (crc >> 8)) ^ (uint8_t)(b >> 4) ^ ((uint16_t)b << 3));
#endif
}

uint16_t crc16(const uint8_t* data, size_t len) {
  uint16_t crc = 0xFFFF;
  while (len--) crc = crc16Update(crc, *data++);
  return (uint16_t)(crc ^ 0xFFFF);
}

size_t cobsEncode(const uint8_t* src, size_t len, uint8_t* dst) {
  size_t out = 1, codePos = 0;
  uint8_t code = 1;
  for (size_t i = 0; i < len; i++) {
    if (src[i] == 0) {
      dst[codePos] = code;
      codePos = out++;
      code = 1;
      continue;
    }
    dst[out++] = src[i];
    if (++code == 0xFF) {
      dst[codePos] = code;
      codePos = out++;
      code = 1;
    }
  }
  dst[codePos] = code;
  return out;
}

int cobsDecode(const uint8_t* src, size_t len, uint8_t* dst) {
  size_t in = 0, out = 0;
  while (in < len) {
    uint8_t code = src[in++];
    if (code == 0 || in + code - 1 > len) return -1;
    for (uint8_t i = 1; i < code; i++) {
      uint8_t b = src[in++];
      if (b == 0) return -1;
      dst[out++] = b;
    }
    // A block shorter than 254 data bytes stands for a zero, except at the end.
    if (code != 0xFF && in < len) dst[out++] = 0;
  }
  return (int)out;
}

uint8_t* cobsEncodeInPlace(uint8_t* code, uint8_t* end) {
  // Walk backwards remembering where the next zero (or the end) is.
  uint8_t* next = end;
  for (uint8_t* p = end - 1; p != code; p--) {
    if (*p == 0) {
      *p = (uint8_t)(next - p);
      next = p;
    }
  }
  *code = (uint8_t)(next - code);
  *end = 0;
  return end + 1;
}

void FrameWriter::bytes(const uint8_t* p, uint8_t n) {
  if (len_ + n <= cap_) memcpy(buf_ + len_, p, n);
  len_ = (uint8_t)(len_ + n > 0xFF ? 0xFF : len_ + n);
}

void FrameWriter::header(uint8_t type, uint32_t boot, uint32_t seq) {
  // cap_ is at least kMaxFrame wherever frames are built.
  buf_[0] = kVersion;
  buf_[1] = type;
  memcpy(buf_ + 2, &boot, 4);
  memcpy(buf_ + 6, &seq, 4);
  len_ = kHeaderLen;
}

uint8_t FrameWriter::finish() {
  if (len_ + kCrcLen > cap_ || len_ + kCrcLen > kMaxFrame) return 0;
  uint16_t crc = crc16(buf_, len_);
  u16(crc);
  return len_;
}

int Decoder::push(uint8_t b) {
  if (ready_) {  // the previous frame has been consumed
    ready_ = false;
    len_ = 0;
  }
  if (b == 0) {
    uint8_t n = len_;
    if (discard_ || n == 0) {
      discard_ = false;
      return kOK;
    }
    len_ = 0;
    // In-place COBS decoding for frames shorter than 254 bytes: follow the
    // chain of code bytes; each one after the first stands for a zero in
    // the frame, which is then buf_[1 .. n). (A 0xFF code, a block without
    // zero, cannot fit in kMaxEncoded bytes: the range check rejects it.)
    uint8_t p = 0;
    for (;;) {
      uint8_t code = buf_[p];
      if (p) buf_[p] = 0;
      uint16_t q = (uint16_t)(p + code);
      if (code == 0 || q > n) return kErrBadCOBS;
      if (q == n) break;
      p = (uint8_t)q;
    }
    len_ = (uint8_t)(n - 1);
    ready_ = true;
    return kFrameReady;
  }
  if (discard_) return kOK;
  if (len_ == kMaxEncoded) {
    len_ = 0;
    discard_ = true;
    return kErrTooLong;
  }
  buf_[len_++] = b;
  return kOK;
}

// Not inlined or cloned for a global object: its members are then reached
// through `this` in a pointer register, 26 bytes less on AVR than through
// their absolute addresses.
__attribute__((noinline, noclone)) bool Receiver::push(uint8_t b) {
  if (b == 0) {
    // A frame's CRC register, run over the CRC too, ends at X-25's residue.
    // (A frame that grew too long has len_ 0xFF: out of range too.)
    const uint8_t kMin = kHeaderLen + kCrcLen;
    bool ok = code_ && !left_ && (uint8_t)(len_ - kMin) <= kMaxFrame - kMin && crc_ == 0xF0B8 &&
              buf_[0] == kVersion;
    // raw() and rawLen() stay valid until the next frame starts.
    code_ = left_ = 0;
    return ok;
  }
  if (left_) {
    left_--;
  } else {
    // A code byte: the block before it stood for a zero. (Unless it was a
    // full 0xFF block, but that one is longer than kMaxFrame: discarded.)
    uint8_t before = code_;
    code_ = b;
    left_ = (uint8_t)(b - 1);
    if (!before) {  // the first byte after a delimiter
      len_ = 0;
      crc_ = 0xFFFF;
      return false;
    }
    b = 0;
  }
  if (len_ >= kMaxFrame) {  // too long: drop the rest up to the delimiter
    len_ = 0xFF;
    return false;
  }
  if (len_ < kKeep) buf_[len_] = b;
  len_++;
  crc_ = crc16Update(crc_, b);
  return false;
}

Error checkRaw(const uint8_t* raw, uint8_t len) {
  if (len > kMaxFrame) return kErrTooLong;
  if (len < kHeaderLen + kCrcLen) return kErrShort;
  if (crc16(raw, len - kCrcLen) != get16(raw + len - kCrcLen)) return kErrBadCRC;
  if (raw[0] != kVersion) return kErrVersion;
  return kOK;
}

namespace {

// Reads the payload of f->type; bytes after the known fields are ignored
// (SPEC.md 5). Range checks are left to validate().
Error parsePayload(const uint8_t* p, uint8_t n, Frame* f) {
  switch (f->type) {
    case kTypeHello:
      if (n < 7) return kErrMalformed;
      f->uptime = get32(p);
      f->resetCause = p[4];
      f->activeTotal = p[5];
      f->nActive = p[6];
      if (f->nActive > kMaxActive || n < 7 + 3 * f->nActive) return kErrMalformed;
      for (uint8_t i = 0; i < f->nActive; i++) {
        f->active[i].code = get16(p + 7 + 3 * i);
        f->active[i].severity = p[9 + 3 * i];
      }
      if (n > 7 + 3 * f->nActive) f->features = p[7 + 3 * f->nActive];  // optional (SPEC.md 3.1)
      break;
    case kTypeEvent: {
      if (n < 10) return kErrMalformed;
      f->code = get16(p);
      f->event = p[2];
      f->severity = p[3];
      f->uptime = get32(p + 4);
      f->nValues = p[8];
      if (f->nValues > kMaxValues) return kErrMalformed;
      uint8_t off = (uint8_t)(9 + 5 * f->nValues);
      if (n < off + 1) return kErrMalformed;
      for (uint8_t i = 0; i < f->nValues; i++) {
        f->values[i].kind = p[9 + 5 * i];
        f->values[i].bits = get32(p + 10 + 5 * i);
      }
      f->textLen = p[off];
      if (f->textLen > kMaxText || n < off + 1 + f->textLen) return kErrMalformed;
      memcpy(f->text, p + off + 1, f->textLen);
      break;
    }
    case kTypeHeartbeat:
      if (n < 5) return kErrMalformed;
      f->uptime = get32(p);
      f->activeTotal = p[4];
      break;
    case kTypeAck:
      if (n < 1) return kErrMalformed;
      f->ackResult = p[0];
      break;
    case kTypeNak:
      if (n < 1) return kErrMalformed;
      f->nakReason = p[0];
      break;
    case kTypeDelivery:
      if (n < 3) return kErrMalformed;
      f->status = p[0];
      f->smtpCode = get16(p + 1);
      if (n >= 4) f->via = p[3];  // optional (SPEC.md 3.6)
      break;
  }
  return kOK;
}

}  // namespace

Error validate(const Frame* f) {
  if (f->version != kVersion) return kErrVersion;
  switch (f->type) {
    case kTypeHello:
      if (f->boot == 0 || f->seq == 0 || f->nActive > kMaxActive || f->activeTotal < f->nActive)
        return kErrMalformed;
      for (uint8_t i = 0; i < f->nActive; i++)
        if (f->active[i].severity > 3) return kErrMalformed;
      return kOK;
    case kTypeEvent:
      if (f->boot == 0 || f->seq == 0 || f->event < kEventRaise || f->event > kEventAcknowledge ||
          f->severity > 3 || f->nValues > kMaxValues || f->textLen > kMaxText)
        return kErrMalformed;
      for (uint8_t i = 0; i < f->nValues; i++) {
        uint8_t k = f->values[i].kind;
        if (k < kValueInt32 || k > kValueBool || (k == kValueBool && f->values[i].bits > 1))
          return kErrMalformed;
      }
      return kOK;
    case kTypeHeartbeat:
      return f->boot == 0 ? kErrMalformed : kOK;
    case kTypeAck:
      return f->ackResult > 1 ? kErrMalformed : kOK;
    case kTypeNak:
      return f->nakReason < kNakBadFrame || f->nakReason > kNakBusy ? kErrMalformed : kOK;
    case kTypeDelivery:
      return f->status < kDeliveryAccepted || f->status > kDeliveryFailed ? kErrMalformed : kOK;
  }
  return kErrUnknownType;
}

Error parseRaw(const uint8_t* raw, uint8_t len, Frame* f) {
  memset(f, 0, sizeof(*f));
  Error err = checkRaw(raw, len);
  if (err != kOK && err != kErrVersion) return err;
  // Every version keeps this header layout, so even a newer frame can be
  // NAKed by its boot and seq.
  f->version = raw[0];
  f->type = raw[1];
  f->boot = get32(raw + 2);
  f->seq = get32(raw + 6);
  if (err != kOK) return err;
  err = parsePayload(raw + kHeaderLen, (uint8_t)(len - kHeaderLen - kCrcLen), f);
  if (err != kOK) return err;
  return validate(f);
}

uint8_t encodeRaw(const Frame* f, uint8_t* raw) {
  // validate() also holds nActive, nValues and textLen to their limits and
  // the version to kVersion, which header() writes.
  if (validate(f) != kOK) return 0;
  FrameWriter w(raw, kMaxFrame);
  w.header(f->type, f->boot, f->seq);
  switch (f->type) {
    case kTypeHello:
      w.u32(f->uptime);
      w.u8(f->resetCause);
      w.u8(f->activeTotal);
      w.u8(f->nActive);
      for (uint8_t i = 0; i < f->nActive; i++) {
        w.u16(f->active[i].code);
        w.u8(f->active[i].severity);
      }
      if (f->features) w.u8(f->features);  // left out when 0, as older firmware sends it
      break;
    case kTypeEvent:
      w.u16(f->code);
      w.u8(f->event);
      w.u8(f->severity);
      w.u32(f->uptime);
      w.u8(f->nValues);
      for (uint8_t i = 0; i < f->nValues; i++) {
        w.u8(f->values[i].kind);
        w.u32(f->values[i].bits);
      }
      w.u8(f->textLen);
      w.bytes(f->text, f->textLen);
      break;
    case kTypeHeartbeat:
      w.u32(f->uptime);
      w.u8(f->activeTotal);
      break;
    case kTypeAck:
      w.u8(f->ackResult);
      break;
    case kTypeNak:
      w.u8(f->nakReason);
      break;
    case kTypeDelivery:
      w.u8(f->status);
      w.u16(f->smtpCode);
      if (f->via) w.u8(f->via);  // left out when 0, as older receivers expect
      break;
    default:
      return 0;
  }
  return w.finish();
}

}  // namespace plcmail
