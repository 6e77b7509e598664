#!/usr/bin/python3
"""A Modbus slave for the tests, made with Debian's python3-pymodbus.

usage: server.py tcp PORT | server.py rtu DEVICE

Slave ids 1 and 2 share 100 coils, discrete inputs, holding and input registers,
all 0, zero-based. Commands on stdin, one per line, each answered "ok":
  co|di|hr|ir ADDR VALUE...   set values (registers as unsigned 16 bit)
  mute | unmute               slave 1 stops / resumes answering (timeouts)
  crc N                       send the next N answers with a broken CRC (rtu)
"READY" is printed once the server answers.
"""
import asyncio
import logging
import socket
import sys
import threading

from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.server import StartAsyncSerialServer, StartAsyncTcpServer
from pymodbus.transaction import ModbusRtuFramer, ModbusSocketFramer

import os
logging.basicConfig(level=logging.DEBUG if os.environ.get("SERVER_DEBUG") else logging.CRITICAL)

store = ModbusSlaveContext(
    di=ModbusSequentialDataBlock(0, [0] * 100),
    co=ModbusSequentialDataBlock(0, [0] * 100),
    hr=ModbusSequentialDataBlock(0, [0] * 100),
    ir=ModbusSequentialDataBlock(0, [0] * 100),
    zero_mode=True,
)
context = ModbusServerContext(slaves={1: store, 2: store}, single=False)
state = {"crc": 0}
FC = {"co": 1, "di": 2, "hr": 3, "ir": 4}


def manipulate(response):
    if state["crc"] > 0 and sys.argv[1] == "rtu":
        state["crc"] -= 1
        packet = bytearray(ModbusRtuFramer(None).buildPacket(response))
        packet[-1] ^= 0xFF
        return bytes(packet), True
    return response, False


def commands():
    for line in sys.stdin:
        f = line.split()
        if not f:
            continue
        if f[0] in FC:
            store.setValues(FC[f[0]], int(f[1]), [int(x) for x in f[2:]])
        elif f[0] == "mute":
            if 1 in context:
                del context[1]
        elif f[0] == "unmute":
            context[1] = store
        elif f[0] == "crc":
            state["crc"] = int(f[1])
        print("ok", flush=True)
    # stdin closed: the test is over
    import os
    os._exit(0)


async def ready_tcp(port):
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            await asyncio.sleep(0.05)
    print("READY", flush=True)


async def main():
    threading.Thread(target=commands, daemon=True).start()
    common = dict(context=context, ignore_missing_slaves=True, response_manipulator=manipulate)
    if sys.argv[1] == "tcp":
        port = int(sys.argv[2])
        asyncio.get_running_loop().create_task(ready_tcp(port))
        await StartAsyncTcpServer(address=("127.0.0.1", port), framer=ModbusSocketFramer, **common)
    else:
        server = await StartAsyncSerialServer(port=sys.argv[2], framer=ModbusRtuFramer, baudrate=19200,
                                              bytesize=8, parity="N", stopbits=1, defer_start=True, **common)
        await server.start()
        print("READY", flush=True)
        await server.serve_forever()


asyncio.run(main())
