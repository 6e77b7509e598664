// plcmail serial protocol codec; see plcmail_protocol.h and protocol/SPEC.md.
#include "plcmail_protocol.h"

#include <string.h>

#if defined(__AVR__)
#include <util/crc16.h>
#endif

namespace plcmail {

uint16_t crc16Update(uint16_t crc, uint8_t b) {
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

uint8_t cobsEncodeInPlace(uint8_t* buf, uint8_t rawLen) {
  // Walk backwards remembering where the next zero (or the end) is.
  uint8_t next = (uint8_t)(rawLen + 1);
  for (uint8_t i = rawLen; i >= 1; i--) {
    if (buf[i] == 0) {
      buf[i] = (uint8_t)(next - i);
      next = i;
    }
  }
  buf[0] = next;
  buf[rawLen + 1] = 0;
  return (uint8_t)(rawLen + 2);
}

void FrameWriter::u8(uint8_t v) {
  if (len_ < cap_) buf_[len_] = v;
  if (len_ != 0xFF) len_++;
}

void FrameWriter::u16(uint16_t v) {
  u8((uint8_t)v);
  u8((uint8_t)(v >> 8));
}

void FrameWriter::u32(uint32_t v) {
  u16((uint16_t)v);
  u16((uint16_t)(v >> 16));
}

void FrameWriter::bytes(const uint8_t* p, uint8_t n) {
  while (n--) u8(*p++);
}

void FrameWriter::header(uint8_t type, uint32_t boot, uint32_t seq) {
  len_ = 0;
  u8(kVersion);
  u8(type);
  u32(boot);
  u32(seq);
}

uint8_t FrameWriter::finish() {
  if (len_ + kCrcLen > cap_ || len_ + kCrcLen > kMaxFrame) return 0;
  uint16_t crc = crc16(buf_, len_);
  u16(crc);
  return len_;
}

Error checkRaw(const uint8_t* raw, uint8_t len) {
  if (len < kHeaderLen + kCrcLen) return kErrShort;
  if (len > kMaxFrame) return kErrTooLong;
  if (crc16(raw, len - kCrcLen) != get16(raw + len - kCrcLen)) return kErrBadCRC;
  if (raw[0] != kVersion) return kErrVersion;
  return kOK;
}

Error parseRaw(const uint8_t* raw, uint8_t len, Frame* f) {
  memset(f, 0, sizeof(*f));
  Error err = checkRaw(raw, len);
  if (err != kOK && err != kErrVersion) return err;
  f->version = raw[0];
  f->type = raw[1];
  f->boot = get32(raw + 2);
  f->seq = get32(raw + 6);
  if (err != kOK) return err;
  const uint8_t* p = raw + kHeaderLen;
  uint8_t n = (uint8_t)(len - kHeaderLen - kCrcLen);
  switch (f->type) {
    case kTypeHello: {
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
      return kOK;
    }
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
        if (f->values[i].kind < kValueInt32 || f->values[i].kind > kValueBool) return kErrMalformed;
      }
      f->textLen = p[off];
      if (f->textLen > kMaxText || n < off + 1 + f->textLen) return kErrMalformed;
      memcpy(f->text, p + off + 1, f->textLen);
      return kOK;
    }
    case kTypeHeartbeat:
      if (n < 5) return kErrMalformed;
      f->uptime = get32(p);
      f->activeTotal = p[4];
      return kOK;
    case kTypeAck:
      if (n < 1) return kErrMalformed;
      f->ackResult = p[0];
      return kOK;
    case kTypeNak:
      if (n < 1) return kErrMalformed;
      f->nakReason = p[0];
      return kOK;
    case kTypeDelivery:
      if (n < 3) return kErrMalformed;
      f->status = p[0];
      f->smtpCode = get16(p + 1);
      return kOK;
  }
  return kErrUnknownType;
}

uint8_t encodeRaw(const Frame* f, uint8_t* raw) {
  FrameWriter w(raw, kMaxFrame);
  w.header(f->type, f->boot, f->seq);
  raw[0] = f->version;
  switch (f->type) {
    case kTypeHello:
      if (f->nActive > kMaxActive) return 0;
      w.u32(f->uptime);
      w.u8(f->resetCause);
      w.u8(f->activeTotal);
      w.u8(f->nActive);
      for (uint8_t i = 0; i < f->nActive; i++) {
        w.u16(f->active[i].code);
        w.u8(f->active[i].severity);
      }
      break;
    case kTypeEvent:
      if (f->nValues > kMaxValues || f->textLen > kMaxText) return 0;
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
      break;
    default:
      return 0;
  }
  return w.finish();
}

}  // namespace plcmail
