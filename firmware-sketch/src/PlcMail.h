// PlcMail: send PLC alarms to a plcmail gateway over any Arduino Stream
// (USB Serial, Serial1..3, an RS-485 transceiver on a UART).
//
//   PlcMail alarms(Serial);
//   void setup() { Serial.begin(115200); alarms.begin(); }
//   void loop()  { if (tooHot) alarms.raise(17, PLCMAIL_ALARM, temperature);
//                  alarms.poll(); }
//
// Frames follow protocol/SPEC.md of plcmail. The sender never calls delay():
// poll() does a bounded amount of work and returns (the serial driver may
// wait for room in its buffer, and with RS-485 flush() waits for the last
// byte). Events wait
// in a small queue and go out one at a time (stop-and-wait), each retransmitted
// with the same bytes until the gateway ACKs it, so the gateway can mail each
// exactly once.
//
// RAM: a streaming receiver of 21 bytes (it keeps only the first 16 bytes of
// a frame, checking COBS and CRC as bytes arrive), PLCMAIL_QUEUE_LEN compact
// event records of 11 + 5 * PLCMAIL_MAX_VALUES bytes (31 by default),
// PLCMAIL_MAX_ACTIVE table entries of 3 bytes and 5 bytes of .noinit for the
// boot id block; frames are built on the stack (83 bytes) only while they
// are written.
#ifndef PLCMAIL_H
#define PLCMAIL_H

#include <Arduino.h>

#include "plcmail_protocol.h"

// Events waiting for an ACK, including the one on the wire.
#ifndef PLCMAIL_QUEUE_LEN
#define PLCMAIL_QUEUE_LEN 4
#endif
// Alarms tracked as active for the HELLO snapshot and HEARTBEAT count.
#ifndef PLCMAIL_MAX_ACTIVE
#define PLCMAIL_MAX_ACTIVE 8
#endif
// Values one event carries at most (SPEC.md 3.2 allows 4). Each costs 5
// bytes of RAM per queued event: 1 saves 15 bytes per PLCMAIL_QUEUE_LEN.
#ifndef PLCMAIL_MAX_VALUES
#define PLCMAIL_MAX_VALUES 4
#endif
// Time between heartbeats: whole seconds of the uptime, 1000..65000.
#ifndef PLCMAIL_HEARTBEAT_MS
#define PLCMAIL_HEARTBEAT_MS 10000UL
#endif
#ifndef PLCMAIL_RETRY_MIN_MS
#define PLCMAIL_RETRY_MIN_MS 1000U
#endif
#ifndef PLCMAIL_RETRY_MAX_MS
#define PLCMAIL_RETRY_MAX_MS 30000U
#endif
// Timers count in 16 bits of milliseconds (retransmission: maximum plus 25 %
// jitter).
#if PLCMAIL_HEARTBEAT_MS > 65000UL || PLCMAIL_RETRY_MAX_MS > 52000UL
#error "PLCMAIL_HEARTBEAT_MS must be at most 65000, PLCMAIL_RETRY_MAX_MS at most 52000"
#endif
// The heartbeat counts whole seconds of the uptime.
#if PLCMAIL_HEARTBEAT_MS < 1000UL || PLCMAIL_HEARTBEAT_MS % 1000UL
#error "PLCMAIL_HEARTBEAT_MS must be a multiple of 1000"
#endif
// Where begin() keeps the 4-byte boot counter; the end of the EEPROM by
// default, away from the addresses sketches usually start at.
// (AVR only: other cores that define E2END emulate EEPROM without
// <avr/eeprom.h>; there, call begin(bootId, resetCause).)
#if !defined(PLCMAIL_EEPROM_ADDR) && defined(E2END) && (defined(__AVR__) || defined(PLCMAIL_FAKE_AVR))
#define PLCMAIL_EEPROM_ADDR (E2END - 3)
#endif

// Boot ids (SPEC.md 4: a boot id must not repeat) come from a 4-byte cell in
// EEPROM holding the first id not yet handed out. Each EEPROM write reserves
// PLCMAIL_BOOT_BLOCK ids; the rest of the block waits in RAM that survives a
// warm reset (.noinit), so only a power-on, or every PLCMAIL_BOOT_BLOCK-th
// warm reset (watchdog, reset pin, DTR, brown-out), writes the cell. An
// erased cell (new chip, chip erase, board swap) starts at a random id from
// ADC noise and the power-up state of SRAM, not at 1.
#ifndef PLCMAIL_BOOT_BLOCK
#define PLCMAIL_BOOT_BLOCK 256UL
#endif
#if PLCMAIL_BOOT_BLOCK < 2 || PLCMAIL_BOOT_BLOCK > 256
#error "PLCMAIL_BOOT_BLOCK must be 2..256"
#endif

// The part of a reserved block of boot ids not handed out yet (see
// PlcMail::takeBootId), kept in RAM that survives a warm reset.
struct PlcMailBootBlock {
  uint32_t limit;  // the EEPROM cell's value when the block was reserved
  uint8_t left;    // ids still free in the block: the next is limit - left
};

// These sizes shape the PlcMail object, so the library's own PlcMail.cpp
// must see the same values as every sketch file: set them for the whole
// build (compiler flags, e.g. build.extra_flags=-DPLCMAIL_QUEUE_LEN=8), not
// with a #define in the sketch. A mismatch is a link error naming
// plcmail_config_qN_aM_vK instead of a silently corrupted object: PlcMail.cpp
// defines the symbol for its own sizes, and every PlcMail constructor (inline,
// so compiled with the sketch's sizes) takes its address in an asm operand.
// A plain read of an unused value would not do: LTO drops it, and with it
// the undefined reference (the sketch then linked and sent nothing).
#define PLCMAIL_PASTE3_(q, a, v) plcmail_config_q##q##_a##a##_v##v
#define PLCMAIL_PASTE3(q, a, v) PLCMAIL_PASTE3_(q, a, v)
#define PLCMAIL_CONFIG_SYMBOL PLCMAIL_PASTE3(PLCMAIL_QUEUE_LEN, PLCMAIL_MAX_ACTIVE, PLCMAIL_MAX_VALUES)
extern const uint8_t PLCMAIL_CONFIG_SYMBOL;

#if PLCMAIL_QUEUE_LEN < 1 || PLCMAIL_QUEUE_LEN > 64
#error "PLCMAIL_QUEUE_LEN must be 1..64"
#endif
#if PLCMAIL_MAX_VALUES < 1 || PLCMAIL_MAX_VALUES > 4
#error "PLCMAIL_MAX_VALUES must be 1..4 (SPEC.md 3.2)"
#endif
#if PLCMAIL_MAX_ACTIVE < 1 || PLCMAIL_MAX_ACTIVE > 20
#error "PLCMAIL_MAX_ACTIVE must be 1..20 (one HELLO lists at most 20)"
#endif

// Severities (SPEC.md 3.2). Only their two low bits are sent, in events and
// in the HELLO snapshot alike.
#define PLCMAIL_INFO 0
#define PLCMAIL_WARNING 1
#define PLCMAIL_ALARM 2
#define PLCMAIL_CRITICAL 3

// What the status callback reports.
enum PlcMailStatus {
  // The gateway has durably queued the frame (detail: 0 now, 1 duplicate).
  PLCMAIL_QUEUED = 1,
  // The mail for the event was accepted upstream (detail: SMTP code).
  PLCMAIL_DELIVERED = 2,
  // The mail for the event finally failed (detail: SMTP code, 0 if none).
  PLCMAIL_FAILED = 3,
  // The gateway refused the frame for good (detail: NAK reason 2..4); the
  // sender dropped it. A firmware/gateway mismatch: worth a visible error.
  PLCMAIL_REJECTED = 4,
  // raise/clear/acknowledge found the queue full (detail: alarm code). The
  // event itself is lost, its state is not: the alarm table is updated and a
  // HELLO snapshot is sent once the queue drains, so the gateway reconciles.
  PLCMAIL_OVERFLOW = 5,
  // A fallback channel of the gateway (webhook, MQTT; its [[channel]]
  // number, from 1, is the detail) carried the alarm of the frame: someone
  // got it even if the mail server is failing. Comes besides the mail's own
  // PLCMAIL_DELIVERED or PLCMAIL_FAILED, once per channel (SPEC.md 3.6).
  PLCMAIL_VIA_CHANNEL = 6
};

// One value of an event: any integer up to 32 bits, float, double (sent as
// float) or bool; the type goes on the wire with it. Packed (as on AVR
// anyway): its 5 bytes are its wire image (SPEC.md 3.2), copied as they are.
struct __attribute__((packed)) PlcMailValue {
  uint8_t kind;
  uint32_t bits;
  PlcMailValue(int v) : kind(plcmail::kValueInt32), bits((uint32_t)(long)v) {}
  PlcMailValue(long v) : kind(plcmail::kValueInt32), bits((uint32_t)v) {}
  PlcMailValue(unsigned int v) : kind(plcmail::kValueUint32), bits(v) {}
  PlcMailValue(unsigned long v) : kind(plcmail::kValueUint32), bits(v) {}
  PlcMailValue(bool v) : kind(plcmail::kValueBool), bits(v ? 1 : 0) {}
  PlcMailValue(double v) : kind(plcmail::kValueFloat32) {
    float f = (float)v;
    memcpy(&bits, &f, 4);
  }
  PlcMailValue(float v) : kind(plcmail::kValueFloat32) { memcpy(&bits, &v, 4); }
  // A pointer (a string literal, F("...")) would silently become a bool.
  template <class T>
  PlcMailValue(T*) = delete;
};

// seq identifies the frame: raise() and friends return it.
typedef void (*PlcMailStatusCallback)(uint8_t status, uint32_t seq, uint16_t detail);
// Called with true before a frame is written and false after it has been
// flushed: drive an RS-485 transceiver's DE and /RE here.
typedef void (*PlcMailDirectionCallback)(bool transmit);

// The sender's state, plain data so that one memset starts it (cheaper in
// flash than initialising member by member). Not part of the API.
struct PlcMailState {
  // A queued event in wire order (SPEC.md 3.2: code, event, severity,
  // uptime, n_values, then kind and bits of each value), so that
  // transmitting it is a copy.
  struct Event {
    const char* text;  // first: one pointer reaches it and the wire bytes
    uint8_t wire[9 + 5 * PLCMAIL_MAX_VALUES];
  };
  struct Entry {
    uint16_t code;
    uint8_t state;  // bits 0-1 severity, 2 active, 3 in snapshot, 4-5 snapshot severity
  };

  Stream* link_;
  PlcMailStatusCallback statusCb_;
  PlcMailDirectionCallback dirCb_;                     // the sketch's, if any
  // 0: no direction control. Called with true before a frame is written,
  // with false after it was written: then it flushes the stream first.
  void (*driver_)(PlcMailState* self, bool transmit);
  uint8_t dePin_, rePin_;  // rePin_ 0xFF: none
  uint32_t boot_;
  uint32_t seq_;         // last sequence number handed out
  uint32_t uptime_;      // seconds since begin()
  // The low 16 bits of millis() suffice for the timers below (all under
  // 65 s) as long as poll() runs at least every 65 s: cheaper on AVR than
  // 32-bit arithmetic. poll() called less often delays a retransmission or
  // heartbeat by up to 65 s more, and a stall longer than 65.536 s costs the
  // uptime a multiple of 65.536 s.
  uint16_t secondMark_;  // millis() of the last uptime tick
  uint16_t lastSend_;    // millis() of the head's last transmission
  uint32_t helloUptime_;
  uint16_t retryMs_;     // current backoff
  uint16_t waitMs_;      // backoff plus jitter until the next retransmission; 0: at once
  uint16_t rng_;
  uint8_t resetCause_;
  uint8_t beatTicks_;    // uptime seconds since the last heartbeat
  uint8_t head_, count_;
  uint8_t untracked_, snapUntracked_;  // active alarms the table had no room for
  bool begun_;           // begin() was called (a byte: cheaper to test than boot_)
  bool live_;            // the boot HELLO has been transmitted: events are queued
  bool helloPending_;    // a HELLO heads the stream
  bool resync_;          // send a HELLO once the queue drains
  bool sent_;            // the head was transmitted at least once
  Event queue_[PLCMAIL_QUEUE_LEN];
  Entry table_[PLCMAIL_MAX_ACTIVE];
  plcmail::Receiver rx_;  // the one receive buffer
};

class PlcMail : private PlcMailState {
 public:
  explicit PlcMail(Stream& link) {
    // See PLCMAIL_CONFIG_SYMBOL: costs two instructions, survives LTO.
    __asm__ __volatile__("" : : "r"(&PLCMAIL_CONFIG_SYMBOL));
    init();
    link_ = &link;
  }

  // Starts the link: takes the next boot id from EEPROM (AVR) and the reset
  // cause from MCUSR, and queues the HELLO. Call once from setup(), after the
  // serial port's begin(). Only where an EEPROM exists (AVR); elsewhere use
  // begin(bootId, resetCause) with a counter the sketch persists itself.
#if defined(PLCMAIL_EEPROM_ADDR)
  void begin();
#endif
  // Same with an explicit boot id (never 0) and reset cause, for boards
  // without EEPROM or when the sketch keeps its own counter.
  void begin(uint32_t bootId, uint8_t resetCause);

  // An alarm became active. Alarms raised before the first poll() describe
  // the state at boot and travel in the HELLO snapshot instead of as events
  // (the gateway reports those it did not know). Returns the event's sequence
  // number, 0 when it went into the snapshot or the queue was full.
  // Up to PLCMAIL_MAX_VALUES values (PlcMailValue: int, long, unsigned,
  // float, double, bool) and a short text from flash, e.g.
  //   raise(17, PLCMAIL_ALARM, pressure, setpoint, F("oil pressure"));
  // At most 32 bytes of the text are sent.
  uint32_t raise(uint16_t code, uint8_t severity, const __FlashStringHelper* text = 0) {
    return raiseValues(code, severity, 0, 0, text);
  }
  uint32_t raise(uint16_t code, uint8_t severity, PlcMailValue a, const __FlashStringHelper* text = 0) {
    return raiseValues(code, severity, &a, 1, text);
  }
  uint32_t raise(uint16_t code, uint8_t severity, PlcMailValue a, PlcMailValue b,
                 const __FlashStringHelper* text = 0) {
    PlcMailValue v[] = {a, b};
    return raiseValues(code, severity, v, 2, text);
  }
  uint32_t raise(uint16_t code, uint8_t severity, PlcMailValue a, PlcMailValue b, PlcMailValue c,
                 const __FlashStringHelper* text = 0) {
    PlcMailValue v[] = {a, b, c};
    return raiseValues(code, severity, v, 3, text);
  }
  uint32_t raise(uint16_t code, uint8_t severity, PlcMailValue a, PlcMailValue b, PlcMailValue c,
                 PlcMailValue d, const __FlashStringHelper* text = 0) {
    PlcMailValue v[] = {a, b, c, d};
    return raiseValues(code, severity, v, 4, text);
  }
  // Values beyond PLCMAIL_MAX_VALUES are dropped.
  uint32_t raiseValues(uint16_t code, uint8_t severity, const PlcMailValue* values, uint8_t n,
                       const __FlashStringHelper* text);
  // A text in RAM would have to live until its frame is ACKed, and a string
  // literal would silently become a bool: use F("...").
  uint32_t raise(uint16_t code, uint8_t severity, const char* text) = delete;
  // The alarm is no longer active.
  uint32_t clear(uint16_t code);
  // An operator acknowledged the alarm on the PLC.
  uint32_t acknowledge(uint16_t code);

  // Does the work: reads replies, (re)transmits, sends heartbeats. Call from
  // loop() as often as possible; it returns quickly.
  void poll();

  void onStatus(PlcMailStatusCallback cb) { statusCb_ = cb; }
  // RS-485 half duplex: a callback, or the DE (and optionally /RE) pins,
  // driven high to transmit and low to receive.
  // The last of the two calls wins.
  void setDirectionCallback(PlcMailDirectionCallback cb);
  void setDirectionPins(uint8_t dePin, uint8_t rePin = 0xFF);

  uint32_t bootId() const { return boot_; }
  uint32_t uptime() const { return uptime_; }
  // Frames queued or on the wire (HELLO included), not yet ACKed.
  uint8_t pending() const { return (uint8_t)(count_ + (helloPending_ ? 1 : 0)); }
  // Whether the alarm is active according to raise()/clear().
  bool isActive(uint16_t code) const;
  uint8_t activeCount() const;
  // Sequence number of the oldest frame not yet ACKed (valid when pending()).
  uint32_t headSeq() const;

  // The boot id begin() takes (see PLCMAIL_BOOT_BLOCK). cell is the EEPROM
  // cell's value: the first id not yet handed out, or erased (0xFFFFFFFF,
  // and 0) for a random start from entropy. block holds the ids reserved but
  // not yet used, kept in RAM across a warm reset; it is only trusted when
  // its limit equals the cell. Both are updated. Public for the host tests.
  static uint32_t takeBootId(uint32_t* cell, PlcMailBootBlock* block, uint32_t entropy);

 private:
  void init();
  void start(uint32_t bootId, uint8_t resetCause);  // begin() with an id that is not 0
  // how: event kind (bits 0-1), severity (2-3), number of values (4-6).
  uint32_t push(uint16_t code, uint8_t how, const PlcMailValue* values, const char* text);
  uint8_t track(uint16_t code, uint8_t kind, uint8_t severity);  // returns the event's severity
  uint8_t find(uint16_t code) const;  // table index, or 0xFF
  void freezeSnapshot(uint8_t freeze);
  void transmit(uint16_t now);  // the low 16 bits of millis()
  void sendFrame(uint8_t type);
  void handleFrame();
  void finishHead(uint8_t status, uint16_t detail);
  void report(uint8_t status, uint32_t seq, uint16_t detail);

  uint32_t nextSeq();
};

#endif  // PLCMAIL_H
