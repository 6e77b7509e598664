// plcmail serial protocol, version 1: the C++ codec shared by the firmware and
// the host tests. The wire format is specified in protocol/SPEC.md of the
// plcmail repository; this file must agree with it byte for byte, which the
// host tests prove against protocol/testdata/vectors.txt.
//
// Plain C++ with no Arduino dependency, so it compiles with host g++ as well as
// avr-g++. Nothing here allocates; buffers are the caller's.
#ifndef PLCMAIL_PROTOCOL_H
#define PLCMAIL_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "plcmail's codec copies integers as little-endian memory images"
#endif

namespace plcmail {

// Limits from SPEC.md section 1.2.
enum {
  kVersion = 1,
  kHeaderLen = 10,
  kCrcLen = 2,
  kMaxFrame = 80,    // unencoded: header + payload + CRC
  kMaxPayload = 68,  // kMaxFrame - kHeaderLen - kCrcLen
  kMaxEncoded = 81,  // COBS of kMaxFrame bytes, delimiter not counted
  kMaxText = 32,
  kMaxValues = 4,
  kMaxActive = 20
};

// Frame types (SPEC.md section 3). The high bit marks gateway -> PLC frames.
enum FrameType {
  kTypeHello = 0x01,
  kTypeEvent = 0x02,
  kTypeHeartbeat = 0x03,
  kTypeAck = 0x81,
  kTypeNak = 0x82,
  kTypeDelivery = 0x83
};

enum EventKind { kEventRaise = 1, kEventClear = 2, kEventAcknowledge = 3 };
enum ValueKind { kValueInt32 = 1, kValueUint32 = 2, kValueFloat32 = 3, kValueBool = 4 };
enum NakReason {
  kNakBadFrame = 1,
  kNakVersion = 2,
  kNakUnknownType = 3,
  kNakMalformed = 4,
  kNakBusy = 5
};
enum DeliveryStatus { kDeliveryAccepted = 1, kDeliveryFailed = 2 };
// Bits of a HELLO's optional features byte (SPEC.md 3.1). The library sends
// kFeatureVia: it understands DELIVERY's via byte, so the gateway may send it
// the DELIVERYs of fallback channels. Other bits are reserved (sent as 0).
enum Feature { kFeatureVia = 1 };

// Frame-level errors; the names match the Go codec's sentinels.
enum Error {
  kOK = 0,
  kErrBadCOBS,
  kErrBadCRC,
  kErrShort,
  kErrTooLong,
  kErrVersion,
  kErrUnknownType,
  kErrMalformed
};

// CRC-16/IBM-SDLC: init 0xFFFF, reflected poly 0x8408, xorout 0xFFFF.
// crc16Update is the raw register step (no final xor); on AVR it is avr-libc's
// _crc_ccitt_update, which computes exactly this without a table.
uint16_t crc16Update(uint16_t crc, uint8_t b);
uint16_t crc16(const uint8_t* data, size_t len);

// COBS. cobsEncode writes at most len + len/254 + 1 bytes to dst (no delimiter)
// and returns the count. cobsDecode returns the decoded length, or -1 when src
// is not valid COBS (a zero byte or a code pointing past the end); dst may
// equal src (in-place decoding).
size_t cobsEncode(const uint8_t* src, size_t len, uint8_t* dst);
int cobsDecode(const uint8_t* src, size_t len, uint8_t* dst);

// Finishes a frame for the line in place. The unencoded frame (header,
// payload, CRC) is (code, end): the bytes after code up to end; *code is
// scratch. On return code[0 .. end) is its COBS encoding and *end the 0x00
// delimiter; returns end + 1. Works in place because a frame is shorter than
// 254 bytes: COBS then only replaces every zero by the distance to the next
// one. (Pointers, not a length: cheaper on AVR for the firmware's caller.)
uint8_t* cobsEncodeInPlace(uint8_t* code, uint8_t* end);

// Builds an unencoded frame into a caller buffer, field by field; encodeRaw's
// helper. (The firmware builds its frames in place, see PlcMail::startFrame.)
class FrameWriter {
 public:
  FrameWriter(uint8_t* buf, uint8_t cap) : buf_(buf), cap_(cap), len_(0) {}
  void header(uint8_t type, uint32_t boot, uint32_t seq);
  void bytes(const uint8_t* p, uint8_t n);
  // Integers are copied as they sit in memory: little-endian (checked below).
  void u8(uint8_t v) { bytes(&v, 1); }
  void u16(uint16_t v) { bytes((const uint8_t*)&v, 2); }
  void u32(uint32_t v) { bytes((const uint8_t*)&v, 4); }
  // Appends the CRC and returns the raw frame length, or 0 when the frame did
  // not fit in the buffer.
  uint8_t finish();

 private:
  uint8_t* buf_;
  uint8_t cap_;
  uint8_t len_;
};

// Streaming receiver: feed it the line byte by byte. It keeps one encoded
// frame (kMaxEncoded bytes, the firmware's only receive buffer), decodes it in
// place when the delimiter arrives and applies SPEC.md's resynchronisation
// rules: errors drop input up to the next 0x00, runs of 0x00 are ignored, and
// more than kMaxEncoded bytes without a delimiter are reported once as too
// long.
class Decoder {
 public:
  Decoder() : len_(0), discard_(false), ready_(false) {}
  // Returns kFrameReady when a frame was completed (its unencoded bytes are
  // raw()[0 .. rawLen()), unchecked: pass them to checkRaw or parseRaw),
  // kOK when there is nothing to report yet, or a framing error.
  enum { kFrameReady = 0x7F };
  int push(uint8_t b);
  const uint8_t* raw() const { return buf_ + 1; }
  uint8_t rawLen() const { return len_; }
  void reset() {
    len_ = 0;
    discard_ = ready_ = false;
  }

 private:
  uint8_t buf_[kMaxEncoded];
  uint8_t len_;
  bool discard_;
  bool ready_;
};

// The firmware's receiver: like Decoder followed by checkRaw, but streaming.
// It undoes COBS and runs the CRC as the bytes arrive and keeps only the
// first kKeep bytes of a frame (the header and the start of the payload: all
// a PLC reads of the gateway's frames), so it accepts every frame up to
// kMaxFrame with 21 bytes of RAM instead of Decoder's 84. Errors are not
// reported, only dropped, with Decoder's resynchronisation rules; the host
// tests hold it to Decoder + checkRaw on every vector and on random streams.
class Receiver {
 public:
  enum { kKeep = 16 };
  // No constructor: all zero is the start state, so a Receiver inside a
  // zeroed struct costs no code. Declare one as `Receiver r = Receiver();`.
  // True when b completed a frame that passes checkRaw: length 12..kMaxFrame,
  // CRC, version. raw() then holds its first min(rawLen(), kKeep) bytes.
  bool push(uint8_t b);
  const uint8_t* raw() const { return buf_; }
  uint8_t rawLen() const { return len_; }

 private:
  uint8_t buf_[kKeep];
  uint16_t crc_;   // CRC register over the decoded bytes so far
  uint8_t len_;    // decoded bytes so far; 0xFF: too long, dropped up to the next delimiter
  uint8_t code_;   // code byte of the current COBS block, 0 before the first
  uint8_t left_;   // data bytes still due in the current block
};

// Little-endian readers; p must hold the bytes.
inline uint16_t get16(const uint8_t* p) { return (uint16_t)(p[0] | ((uint16_t)p[1] << 8)); }
inline uint32_t get32(const uint8_t* p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

// Checks length, CRC and version of an unencoded frame, in that order.
// On kOK the header and payload (raw[10 .. len-2)) can be trusted.
Error checkRaw(const uint8_t* raw, uint8_t len);

struct ActiveAlarm {
  uint16_t code;
  uint8_t severity;
};

struct Value {
  uint8_t kind;
  uint32_t bits;
};

// A decoded frame, flat and fixed-size like the Go codec's Frame. Only the
// fields of its type are meaningful. It is large (about 130 bytes); the
// firmware does not use it, the host tests and tools do.
struct Frame {
  uint8_t version;
  uint8_t type;
  uint32_t boot;
  uint32_t seq;
  uint32_t uptime;       // HELLO, EVENT, HEARTBEAT
  uint8_t resetCause;    // HELLO
  uint8_t activeTotal;   // HELLO, HEARTBEAT
  uint8_t nActive;       // HELLO
  ActiveAlarm active[kMaxActive];
  uint8_t features;      // HELLO, optional: kFeatureVia and reserved bits, as received
  uint16_t code;         // EVENT
  uint8_t event;
  uint8_t severity;
  uint8_t nValues;
  Value values[kMaxValues];
  uint8_t textLen;
  uint8_t text[kMaxText];
  uint8_t ackResult;     // ACK
  uint8_t nakReason;     // NAK
  uint8_t status;        // DELIVERY
  uint16_t smtpCode;
  uint8_t via;           // DELIVERY, optional: 0 the mail server, k >= 1 the k-th fallback channel
};

// Full parser of an unencoded frame (all types) with the same checks, in the
// same order, as the Go codec: length, CRC, version, payload layout, field
// ranges. Returns kOK or the error; for kErrVersion, kErrUnknownType and
// kErrMalformed the header fields of f are filled in (the CRC matched, so the
// frame can be NAKed by boot and seq).
Error parseRaw(const uint8_t* raw, uint8_t len, Frame* f);

// The range checks of the Go codec's Frame.Validate.
Error validate(const Frame* f);

// Full encoder of a frame (all types) into raw, which must hold kMaxFrame
// bytes. Returns the raw length, or 0 when the frame breaks a limit.
uint8_t encodeRaw(const Frame* f, uint8_t* raw);

}  // namespace plcmail

#endif  // PLCMAIL_PROTOCOL_H
