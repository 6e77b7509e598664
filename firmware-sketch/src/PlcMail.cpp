// PlcMail alarm sender; see PlcMail.h and protocol/SPEC.md.
#include "PlcMail.h"

#include <string.h>

#if defined(PLCMAIL_EEPROM_ADDR)
#include <avr/eeprom.h>
#endif

using namespace plcmail;

// Small helpers called from several places: LTO would inline them into each
// caller, which on AVR costs more flash than the call (about 190 bytes in
// all, measured with extras/avr/build.sh).
#define PLCMAIL_NOINLINE __attribute__((noinline))
// Not inlined, and not cloned for the sketch's one global object either: then
// `this` stays in a pointer register and members are reached with 2-byte
// ldd/std instead of 4-byte lds/sts at their absolute addresses. Only where
// it measured smaller (extras/avr/build.sh).
#define PLCMAIL_BY_POINTER __attribute__((noinline, noclone))

namespace {

enum {
  kStateSev = 0x03,
  kStateActive = 0x04,
  kStateInSnap = 0x08,
  kStateSnapSev = 0x30  // the high nibble: a nibble swap on AVR
};

// Bytes read per poll(): enough for a burst of replies, bounded so that a
// babbling line cannot starve loop().
const uint8_t kReadBudget = 2 * kMaxEncoded;

// millis() once: LTO would inline the core's millis() (about 40 bytes with
// its interrupt lock) into begin() and poll() each.
PLCMAIL_NOINLINE uint32_t clockMs() { return millis(); }

// a + b, at most 255: in 8 bits (a carry means more).
uint8_t addSat(uint8_t a, uint8_t b) {
  uint8_t s = (uint8_t)(a + b);
  return s < a ? 0xFF : s;
}

}  // namespace

// Defined only for the sizes this file was compiled with; see PlcMail.h.
// In flash: only its address is ever used.
extern const uint8_t PLCMAIL_CONFIG_SYMBOL PROGMEM = 0;

void PlcMail::init() { memset(static_cast<PlcMailState*>(this), 0, sizeof(PlcMailState)); }

uint32_t PlcMail::takeBootId(uint32_t* cell, PlcMailBootBlock* block, uint32_t entropy) {
  uint32_t id = *cell;
  uint8_t left = block->left;
  if ((uint32_t)(id - 1) >= (uint32_t)(0xFFFFFFFEUL - PLCMAIL_BOOT_BLOCK)) {
    // Erased (or never written): a random start, far from where any other
    // board's counter is, so a swapped or erased board repeats no id the
    // gateway knows. The top bit stays clear, and the cell never wraps: it
    // wears out after about 100 000 writes, 2^25 ids at most. (Tested first:
    // SRAM that powers up all ones must not pass for a block of an erased cell.)
    // 0, and a value whose block would reach 0xFFFFFFFF or wrap past it
    // (only junk is that high), count as erased too: so no id handed out is
    // ever 0 (but for SRAM that matches a hand-written cell below
    // PLCMAIL_BOOT_BLOCK by a 2^-32 chance).
    id = (entropy & 0x7FFFFFFFUL) | 1;
  } else if (block->limit == id && (uint8_t)(left - 1) < (uint8_t)(PLCMAIL_BOOT_BLOCK - 1)) {
    // The RAM block is ours only if it was reserved under what the cell
    // says (random RAM after a power-up matches that by a 2^-32 chance) and
    // ids are left in it (1 <= left < PLCMAIL_BOOT_BLOCK).
    block->left = (uint8_t)(left - 1);
    return id - left;
  }
  block->left = (uint8_t)(PLCMAIL_BOOT_BLOCK - 1);
  block->limit = *cell = id + PLCMAIL_BOOT_BLOCK;
  return id;
}

#if defined(PLCMAIL_EEPROM_ADDR)
#if defined(__AVR__)
// Not cleared by the C runtime: survives a warm reset (and holds the SRAM's
// power-up pattern after a power-on, which entropy() mixes in).
static PlcMailBootBlock bootBlock __attribute__((section(".noinit")));

// Entropy for a random first boot id: 64 ADC conversions of A0 at the
// fastest ADC clock (out of spec, so the low bits are noise, whatever is
// connected), the timer, and the SRAM left by the power-up (different on
// every chip), hashed by the CRC step the codec links anyway. 16 bits spread
// over the 31-bit id space (shifted left by 15) make a swapped board land on
// a recent id of the old one with the same odds as 31 random bits would:
// about (ids the old board used) / 2^31. The ADC registers are restored, so
// analogRead() works as before.
static uint32_t entropy() {
  uint8_t sra = ADCSRA, mux = ADMUX;
#if defined(ADCSRB)
  uint8_t srb = ADCSRB;
  ADCSRB = 0;
#endif
  const uint8_t* sram = (const uint8_t*)&bootBlock;
  uint16_t h = 0;
  ADMUX = _BV(REFS0);  // A0 against AVcc
  for (uint8_t i = 0; i < 64; i++) {
    ADCSRA = (uint8_t)(_BV(ADEN) | _BV(ADSC) | _BV(ADIF) | 1);  // prescaler 2
    while (ADCSRA & _BV(ADSC)) {
    }
    uint8_t lo = ADCL;  // ADCL first: it latches ADCH
    h = crc16Update(h ^ ADCH, (uint8_t)(lo ^ TCNT0 ^ sram[i & 3]));
  }
  ADCSRA = (uint8_t)(sra | _BV(ADIF));
  ADMUX = mux;
#if defined(ADCSRB)
  ADCSRB = srb;
#endif
  return (uint32_t)h << 15;
}
#else
// Host tests: the fake's RAM block and entropy.
#define bootBlock fakeBootBlock
static uint32_t entropy() { return fakeEntropy; }
#endif

void PlcMail::begin() {
  uint32_t* cell = (uint32_t*)(uintptr_t)(PLCMAIL_EEPROM_ADDR);
  uint32_t limit = eeprom_read_dword(cell);
  // entropy() takes about 0.1 ms: cheaper in flash to always call it than to
  // test for an erased cell twice.
  uint32_t b = takeBootId(&limit, &bootBlock, entropy());
  // Writes only bytes that changed: once per power-on or per
  // PLCMAIL_BOOT_BLOCK warm resets.
  eeprom_update_dword(cell, limit);
  uint8_t cause = 0;
#if defined(MCUSR)
  cause = MCUSR & 0x0F;
  MCUSR = 0;
#endif
  start(b, cause);
}
#endif

void PlcMail::begin(uint32_t bootId, uint8_t resetCause) { start(bootId ? bootId : 1, resetCause); }

void PlcMail::start(uint32_t bootId, uint8_t resetCause) {
  boot_ = bootId;
  resetCause_ = resetCause;
  uint32_t now = clockMs();
  secondMark_ = now;
  // The jitter's seed: boards restarted together by one power cut differ in
  // their boot ids, in the high half (random starts, from bit 15 up) or the
  // low one (counters). millis() is about the same on all of them.
  rng_ = (uint16_t)(bootId ^ (bootId >> 16));
  // The HELLO is sequence 1 and goes out at the first poll(). (Everything
  // else starts at zero from the constructor: begin() is called once.)
  nextSeq();
  helloPending_ = true;
  begun_ = true;
}

// Each only referenced by its setter, so sketches without direction control
// link neither (nor digitalWrite for it).
// The last stop bit must leave before the driver turns off.
static void drivePins(PlcMailState* s, bool transmit) {
  if (!transmit) s->link_->flush();
  digitalWrite(s->dePin_, transmit ? HIGH : LOW);
  if (s->rePin_ != 0xFF) digitalWrite(s->rePin_, transmit ? HIGH : LOW);
}
static void callSketch(PlcMailState* s, bool transmit) {
  if (!transmit) s->link_->flush();
  s->dirCb_(transmit);
}

void PlcMail::setDirectionCallback(PlcMailDirectionCallback cb) {
  dirCb_ = cb;
  driver_ = cb ? callSketch : 0;
}

void PlcMail::setDirectionPins(uint8_t dePin, uint8_t rePin) {
  dePin_ = dePin;
  rePin_ = rePin;
  driver_ = drivePins;
  pinMode(dePin, OUTPUT);
  digitalWrite(dePin, LOW);
  if (rePin != 0xFF) {
    pinMode(rePin, OUTPUT);
    digitalWrite(rePin, LOW);
  }
}

uint32_t PlcMail::raiseValues(uint16_t code, uint8_t severity, const PlcMailValue* values, uint8_t n,
                              const __FlashStringHelper* text) {
  if (n > PLCMAIL_MAX_VALUES) n = PLCMAIL_MAX_VALUES;
  return push(code, (uint8_t)(kEventRaise | (severity & 3) << 2 | n << 4), values, (const char*)text);
}
uint32_t PlcMail::clear(uint16_t code) { return push(code, kEventClear, 0, 0); }
uint32_t PlcMail::acknowledge(uint16_t code) { return push(code, kEventAcknowledge, 0, 0); }

uint8_t PlcMail::find(uint16_t code) const {
  for (uint8_t i = 0; i < PLCMAIL_MAX_ACTIVE; i++)
    if ((table_[i].state & (kStateActive | kStateInSnap)) && table_[i].code == code) return i;
  return 0xFF;
}

bool PlcMail::isActive(uint16_t code) const {
  uint8_t i = find(code);
  return i != 0xFF && (table_[i].state & kStateActive);
}

uint8_t PlcMail::activeCount() const {
  uint8_t n = 0;
  for (uint8_t i = 0; i < PLCMAIL_MAX_ACTIVE; i++)
    if (table_[i].state & kStateActive) n++;
  return n;
}

// track keeps the table of active alarms current. While a HELLO is on the
// wire its snapshot is frozen in the kStateInSnap/kStateSnapSev bits, so every
// retransmission carries the same bytes.
uint8_t PlcMail::track(uint16_t code, uint8_t kind, uint8_t severity) {
  Entry *e = 0, *spare = 0;
  for (Entry* t = table_; t < table_ + PLCMAIL_MAX_ACTIVE; t++) {
    if (t->state & (kStateActive | kStateInSnap)) {
      if (t->code == code) {
        e = t;
        break;
      }
    } else if (!spare) {
      spare = t;
    }
  }
  if (kind != kEventRaise) {
    // A clear or acknowledge carries the severity the alarm was raised with.
    if (!e) {
      if (kind == kEventClear && untracked_) untracked_--;
      return 0;
    }
    if (kind == kEventClear) e->state &= (uint8_t)~kStateActive;
    return e->state & kStateSev;
  }
  if (!e) {
    if (!spare) {
      if (untracked_ < 0xFF) untracked_++;
      return severity;
    }
    e = spare;
    e->code = code;
    e->state = 0;
  }
  e->state = (uint8_t)((e->state & ~kStateSev) | kStateActive | (severity & kStateSev));
  return severity;
}

// freeze: kStateActive to freeze the active alarms, 0 to thaw.
PLCMAIL_BY_POINTER void PlcMail::freezeSnapshot(uint8_t freeze) {
  for (uint8_t i = 0; i < PLCMAIL_MAX_ACTIVE; i++) {
    uint8_t s = table_[i].state & (kStateSev | kStateActive);
    if (s & freeze) s |= (uint8_t)(kStateInSnap | ((s & kStateSev) << 4));
    table_[i].state = s;
  }
  snapUntracked_ = untracked_;
  helloUptime_ = uptime_;
}

uint32_t PlcMail::push(uint16_t code, uint8_t how, const PlcMailValue* values, const char* text) {
  uint8_t kind = how & 3;
  uint8_t severity = how;
  severity >>= 2;  // (in 8 bits: one shift at a time, not promoted to int)
#if defined(__AVR__)
  uint8_t n = __builtin_avr_swap(how) & 7;  // how >> 4 in two instructions
#else
  uint8_t n = how >> 4;
#endif
  severity = track(code, kind, severity & 3);
  // Before the boot HELLO leaves, the table is the snapshot it will carry.
  // (One flag set by the first transmission: cheaper than testing begun_,
  // helloPending_ and sent_.)
  if (!live_) return 0;
  if (count_ == PLCMAIL_QUEUE_LEN) {
    resync_ = true;
    report(PLCMAIL_OVERFLOW, 0, code);
    return 0;
  }
  uint8_t tail = (uint8_t)((head_ + count_) % PLCMAIL_QUEUE_LEN);
  Event& ev = queue_[tail];
  ev.text = text;
  uint8_t* w = ev.wire;
  memcpy(w, &code, 2);  // little-endian on AVR and on the hosts we test on
  w[2] = kind;
  w[3] = severity;
  memcpy(w + 4, &uptime_, 4);
  w[8] = n;
  w += 9;
  static_assert(sizeof(PlcMailValue) == 5, "a PlcMailValue is its wire image");
  if (n) memcpy(w, values, (uint8_t)(5 * n));  // (clear() has no values)
  count_++;
  return nextSeq();
}

PLCMAIL_NOINLINE uint32_t PlcMail::nextSeq() { return ++seq_; }

PLCMAIL_NOINLINE void PlcMail::report(uint8_t status, uint32_t seq, uint16_t detail) {
  if (statusCb_) statusCb_(status, seq, detail);
}

void PlcMail::poll() {
  uint32_t now = clockMs();
  uint8_t ticks = 0;
  while ((uint16_t)((uint16_t)now - secondMark_) >= 1000) {
    secondMark_ += 1000;
    ticks++;
  }
  uptime_ += ticks;
  beatTicks_ += ticks;
  if (!begun_) return;

  // Stream::read() returns -1 when nothing is there: no available() call.
  for (uint8_t budget = kReadBudget; budget; budget--) {
    int c = link_->read();
    if (c < 0) break;
    // Framing errors need no answer: the gateway retransmits nothing, and
    // the sender's own timer covers a lost ACK.
    if (rx_.push((uint8_t)c)) handleFrame();
  }

  transmit((uint16_t)now);

  // The heartbeat counts the uptime's seconds: one byte instead of a timer.
  if (beatTicks_ >= PLCMAIL_HEARTBEAT_MS / 1000) {
    beatTicks_ = 0;
    sendFrame(kTypeHeartbeat);
  }
}

PLCMAIL_BY_POINTER void PlcMail::transmit(uint16_t now) {
  if (!pending()) {
    if (!resync_) return;
    // Events were lost to a full queue: tell the gateway the whole state.
    resync_ = false;
    helloPending_ = true;
    sent_ = false;
    nextSeq();
  }
  // waitMs_ 0: a NAK "bad frame" asked for the frame again at once.
  if (sent_ && (uint16_t)(now - lastSend_) < waitMs_) return;

  if (!sent_) {
    retryMs_ = PLCMAIL_RETRY_MIN_MS;
    if (helloPending_) freezeSnapshot(kStateActive);
  } else if (waitMs_) {  // (not after a NAK "bad frame")
    retryMs_ = retryMs_ >= PLCMAIL_RETRY_MAX_MS / 2 ? PLCMAIL_RETRY_MAX_MS : (uint16_t)(retryMs_ * 2);
  }

  sendFrame(helloPending_ ? kTypeHello : kTypeEvent);

  lastSend_ = now;
  // Up to 25 % jitter, so that PLCs restarted together by one power cut do
  // not retransmit in step. Halving instead of a modulo spares a division.
  // The random source is the CRC step the codec links anyway, stirred with
  // the clock: for a given clock byte it maps states one to one, so boards
  // seeded differently (see start()) never fall into step. 18 bytes less
  // on AVR than a multiplying generator.
  uint16_t jitter = rng_ = crc16Update(rng_, (uint8_t)now), limit = retryMs_ >> 2;
  while (jitter > limit) jitter >>= 1;
  waitMs_ = (uint16_t)(retryMs_ + jitter);
  sent_ = true;
  live_ = true;
}

PLCMAIL_NOINLINE uint32_t PlcMail::headSeq() const { return seq_ - pending() + 1; }

// Builds a HEARTBEAT, the HELLO or the head's EVENT and writes it to the
// line. One function for all three: one frame buffer on the stack (83 bytes,
// only while it runs) and one copy of the header, CRC and COBS code.
void PlcMail::sendFrame(uint8_t type) {
  // buf[0] is the leading delimiter, buf[1] the COBS code byte, and the
  // unencoded frame is built from buf + 2, so that cobsEncodeInPlace can
  // encode it where it is.
  uint8_t buf[kMaxFrame + 3];
  // A leading delimiter ends whatever a reset or a collision left on the line.
  buf[0] = 0;
  uint8_t* p = buf + 2;
  p[0] = kVersion;
  p[1] = type;
  memcpy(p + 2, &boot_, 4);
  uint32_t seq = headSeq();
  if (type == kTypeHeartbeat) seq = 0;
  memcpy(p + 6, &seq, 4);
  p += kHeaderLen;
  if (type != kTypeEvent) memcpy(p, type == kTypeHello ? &helloUptime_ : &uptime_, 4);
  if (type == kTypeHeartbeat) {
    p[4] = addSat(activeCount(), untracked_);
    p += 5;
  } else if (type == kTypeHello) {
    p[4] = resetCause_;
    uint8_t* counts = p + 5;  // active_total and n, known after the list
    p += 7;
    uint8_t n = 0;
    for (uint8_t i = 0; i < PLCMAIL_MAX_ACTIVE; i++) {
      const Entry& e = table_[i];
      if (e.state & kStateInSnap) {
        memcpy(p, &e.code, 2);
#if defined(__AVR__)
        p[2] = __builtin_avr_swap(e.state) & 3;  // kStateSnapSev
#else
        p[2] = (uint8_t)((e.state & kStateSnapSev) >> 4);
#endif
        p += 3;
        n++;
      }
    }
    counts[0] = addSat(n, snapUntracked_);
    counts[1] = n;
    // features (SPEC.md 3.1): this library understands DELIVERY's via, so
    // the gateway may send it the DELIVERYs of fallback channels.
    *p++ = kFeatureVia;
  } else {
    const Event& ev = queue_[head_];
    uint8_t len = (uint8_t)(9 + 5 * ev.wire[8]);
    memcpy(p, ev.wire, len);
    p += len;
    uint8_t n = 0;
    const char* t = ev.text;
    for (;;) {
      uint8_t ch;
      if (!t || n == kMaxText || !(ch = pgm_read_byte(t + n))) break;
      p[++n] = ch;
    }
    *p = n;
    p += n + 1;
  }

  // crc16() over pointers instead of a length: 24 bytes less on AVR.
  uint16_t crc = 0xFFFF;
  for (const uint8_t* q = buf + 2; q != p; q++) crc = crc16Update(crc, *q);
  crc = (uint16_t)~crc;
  memcpy(p, &crc, 2);
  p = cobsEncodeInPlace(buf + 1, p + kCrcLen);
  void (*driver)(PlcMailState*, bool) = driver_;
  if (driver) driver(this, true);
  link_->write(buf, (uint8_t)(p - buf));  // one call: delimiter, frame, delimiter
  if (driver) driver(this, false);
}

void PlcMail::handleFrame() {
  const uint8_t* raw = rx_.raw();
  uint8_t n = rx_.rawLen();
  // The receiver checked length, CRC and version. Gateway frames carry at
  // least one payload byte; shorter ones (and our own frames echoed by a
  // bus) need no look. Only the first Receiver::kKeep bytes are in raw.
  if (n < kHeaderLen + 1 + kCrcLen) return;
  uint8_t type = raw[1], arg = raw[kHeaderLen];
  if (type == kTypeNak && arg == kNakBadFrame) {
    // Whatever the header says: the gateway could not read ours.
    // Retransmit at once, without a longer backoff (see transmit()); for a
    // frame not sent yet that changes nothing.
    waitMs_ = 0;
    return;
  }
  if (memcmp(raw + 2, &boot_, 4) != 0) return;  // for another boot
  uint32_t seq;
  memcpy(&seq, raw + 6, 4);
  if (type == kTypeDelivery) {
    if (n >= kHeaderLen + 3 + kCrcLen) {
      uint16_t code;
      memcpy(&code, raw + kHeaderLen + 1, 2);
      uint8_t status = arg == kDeliveryAccepted ? PLCMAIL_DELIVERED : PLCMAIL_FAILED;
      // SPEC.md 3.6: an optional 4th byte `via` >= 1 names the fallback
      // channel that carried the alarm (absent or 0: the mail server).
      if (n >= kHeaderLen + 4 + kCrcLen && raw[kHeaderLen + 3]) {
        status = PLCMAIL_VIA_CHANNEL;
        code = raw[kHeaderLen + 3];
      }
      report(status, seq, code);
    }
    return;
  }
  // ACK and NAK: only for the frame on the wire. A late or repeated ACK for
  // a frame already done is ignored, and so is a malformed one (SPEC.md 3.4:
  // result 0 or 1, one payload byte): it does not say the gateway has the
  // frame, the timer retransmits it.
  if (!sent_ || seq != headSeq()) return;
  if (type == kTypeAck) {
    if (arg <= 1 && n == kHeaderLen + 1 + kCrcLen) finishHead(PLCMAIL_QUEUED, arg);
  } else if (type == kTypeNak && arg >= kNakVersion && arg <= kNakMalformed) {
    finishHead(PLCMAIL_REJECTED, arg);
  }
  // kNakBusy and reasons from later revisions: keep the frame, the backoff
  // timer retransmits it.
}

PLCMAIL_BY_POINTER void PlcMail::finishHead(uint8_t status, uint16_t detail) {
  uint32_t seq = headSeq();
  if (helloPending_) {
    helloPending_ = false;
    freezeSnapshot(0);
  } else {
    head_ = (uint8_t)((head_ + 1) % PLCMAIL_QUEUE_LEN);
    count_--;
  }
  sent_ = false;
  report(status, seq, detail);
}
