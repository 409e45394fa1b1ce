"""MicroPython entry point: a Raspberry Pi Pico as a TLF-1 TIM (see README.md).

Channel 1: on-chip temperature sensor (ADC 4), kelvin.  Channel 2: the on-board LED,
an actuator (write >= 0.5 to switch it on).  UART0 on GP0 (TX) / GP1 (RX), 115200 8N1.

MicroPython only: ``import machine`` fails with ImportError under CPython, on purpose.
"""

import time

import machine
import tim_core

UART_ID = 0
TX_PIN = 0
RX_PIN = 1
BAUDRATE = 115200
STALE_MS = 100  # drop a partial frame after this much line silence (§12.2)

# Lab location, manufacturer 0, year; the serial number comes from the flash chip id.
LATITUDE_ARCSEC = 0
LONGITUDE_ARCSEC = 0
YEAR = 2026

_adc = machine.ADC(4)
try:
    _led = machine.Pin("LED", machine.Pin.OUT)  # Pico W and recent Pico firmware
except (TypeError, ValueError):
    _led = machine.Pin(25, machine.Pin.OUT)


def read_temperature():
    """RP2040 datasheet formula: 27 degC at 0.706 V, -1.721 mV/K; returned in kelvin."""
    volts = _adc.read_u16() * 3.3 / 65535
    return 27.0 - (volts - 0.706) / 0.001721 + 273.15


def read_led():
    return float(_led.value())


def write_led(value):
    _led.value(1 if value >= 0.5 else 0)


def make_core():
    serial = tim_core.crc16(machine.unique_id())
    uuid = tim_core.make_uuid(LATITUDE_ARCSEC, LONGITUDE_ARCSEC, 0, YEAR, serial)
    channels = (
        {
            "name": "pico-temperature",
            "units": {"kelvins": 1},
            "low": 233.15,
            "high": 358.15,
            "error": 2.0,
            "update_time": 0.01,
        },
        {"name": "led", "type": tim_core.CHAN_ACTUATOR, "low": 0.0, "high": 1.0},
    )
    teds = tim_core.build_teds("pico-tim", uuid, channels, baudrate=BAUDRATE)
    return tim_core.TimCore(teds, {1: read_temperature, 2: read_led}, {2: write_led})


def run():
    uart = machine.UART(
        UART_ID,
        baudrate=BAUDRATE,
        bits=8,
        parity=None,
        stop=1,
        tx=machine.Pin(TX_PIN),
        rx=machine.Pin(RX_PIN),
        rxbuf=2048,
    )
    core = make_core()
    last_rx = time.ticks_ms()
    while True:
        waiting = uart.any()
        if not waiting:
            time.sleep_ms(1)
            continue
        now = time.ticks_ms()
        if time.ticks_diff(now, last_rx) > STALE_MS:
            core.drop_partial()
        last_rx = now
        answer = core.feed(uart.read(waiting))
        if answer:
            uart.write(answer)


if __name__ == "__main__":
    run()
